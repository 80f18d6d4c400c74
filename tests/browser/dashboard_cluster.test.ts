/**
 * The dashboard of a three-node cluster (assembled in process), in headless Chromium: any node's
 * page shows every node with its role and health and each partition's leader, and a node that
 * stops turns unreachable on the others' pages without a reload.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { chromium } from "playwright-core";
import { startCluster } from "../support/cluster_in_process.ts";
import { REPO_ROOT } from "../support/harness.ts";
import { tempDir } from "../support/temp_dir.ts";
import { requireChromium } from "./chromium.ts";
import { waitFor } from "../support/wait.ts";

const OUTPUT = path.join(REPO_ROOT, "tests/output");
const WAIT_MS = 10_000;
/** Topics whose partitions are held by node 1, 2 and 3 respectively (one copy each). */
const SPREAD = ["clicks", "payments", "orders"];

test(
  "every node's dashboard shows all nodes, their health and each partition's leader",
  async () => {
    const executablePath = requireChromium();
    await using temp = tempDir();
    await using cluster = await startCluster({
      dataPath: temp.path,
      configText: "[system]\nnumPartitions=2\n" + SPREAD.map((t) => `[topic=${t}]\n`).join(""),
      overrides: { replicas: "1" },
      http: true,
    });
    const nodes = cluster.nodes;
    for (const [index, topic] of SPREAD.entries()) {
      const response = await fetch(
        `http://127.0.0.1:${nodes[index].httpPort}/v1/topics/${topic}/messages`,
        {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ messages: [{ payload: "hello", partition: 0 }] }),
        },
      );
      expect(response.status).toBe(200);
    }
    await waitFor(
      "every node to know the leaders",
      () =>
        nodes.every((node) =>
          SPREAD.every((topic) => node.cluster!.leaderOf(`${topic}-0`) !== undefined)
        ),
    );

    const profile = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-chromium-"));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
      viewport: { width: 1280, height: 1000 },
    });
    try {
      const page = context.pages()[0] ?? await context.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (error) => pageErrors.push(error.message));
      await page.goto(`http://127.0.0.1:${nodes[0].httpPort}/`);
      await page.waitForSelector('.node[data-node="3"][data-healthy="true"]', { timeout: WAIT_MS });
      expect(await page.locator(".node").count()).toBe(3);
      expect(await page.locator('.node[data-role="leader"]').count()).toBe(1);
      for (const [index, topic] of SPREAD.entries()) {
        await page.click(`tr[data-topic="${topic}"]`);
        const badge = page.locator(`[data-leader="${topic}/0"]`);
        await badge.waitFor({ timeout: WAIT_MS });
        expect(await badge.getAttribute("data-value")).toBe(String(index + 1));
      }
      expect(await page.locator('[data-topic^="__"]').count()).toBe(0);
      fs.mkdirSync(OUTPUT, { recursive: true });
      await page.screenshot({ path: path.join(OUTPUT, "dashboard-cluster.png"), fullPage: true });

      await nodes[2].close();
      await page.waitForSelector('.node[data-node="3"][data-healthy="false"]', {
        timeout: WAIT_MS,
      });
      expect(await page.locator('.node[data-node="3"]').textContent()).toContain("unreachable");
      expect(await page.evaluate(() => performance.getEntriesByType("navigation").length)).toBe(1);
      expect(pageErrors).toEqual([]);
    } finally {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    }
  },
  60_000,
);

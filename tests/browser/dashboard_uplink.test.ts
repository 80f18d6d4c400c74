/**
 * An edge broker's dashboard in headless Chromium (edge and hub assembled in process, the link
 * between them through a LinkProxy): the uplink panel shows the link down and the partition
 * waiting with its backlog, then, without a reload, the link up and the partition caught up.
 * A broker without an uplink shows no such panel.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { chromium } from "playwright-core";
import { type App, assemble } from "../../lib/app/assemble.ts";
import { MetaqClient } from "../../lib/client/client.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { silentLogger } from "../../lib/log.ts";
import { cut, LinkProxy, pass } from "../cluster/link_proxy.ts";
import { Random } from "../cluster/random.ts";
import { REPO_ROOT } from "../support/harness.ts";
import { tempDir } from "../support/temp_dir.ts";
import { requireChromium } from "./chromium.ts";

const OUTPUT = path.join(REPO_ROOT, "tests/output");
const WAIT_MS = 15_000;

async function start(fileText: string): Promise<App> {
  return await assemble({
    config: buildConfig({
      fileText,
      overrides: { serverPort: "0", dashboardHttpPort: "0" },
    }),
    logger: silentLogger,
    httpEngine: "node",
  });
}

test("an edge's dashboard shows its uplink down with a backlog, then caught up", async () => {
  const executablePath = requireChromium();
  await using temp = tempDir("metaq-uplink-dash-");
  const hub = await start(`[system]\ndataPath=${temp.path}/hub\n`);
  const link = await LinkProxy.listen({
    name: "edge->hub",
    port: 0,
    targetPort: hub.port,
    random: new Random(7),
  });
  link.setMode("both", cut());
  const edge = await start(
    `[system]\ndataPath=${temp.path}/edge\n[uplink]\n` +
      `hubs=127.0.0.1:${link.port}\nsite=dash-edge\nretryMinMs=20\nretryMaxMs=200\n`,
  );
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
    viewport: { width: 1280, height: 1000 },
  });
  try {
    const client = new MetaqClient({ brokers: [`127.0.0.1:${edge.port}`] });
    for (let index = 0; index < 20; index++) {
      await client.put("sensors", 0, { payload: new TextEncoder().encode(`reading ${index}`) });
    }
    client.close();
    const page = context.pages()[0] ?? await context.newPage();
    const pageErrors: string[] = [];
    page.on("pageerror", (error) => pageErrors.push(error.message));
    await page.goto(`http://127.0.0.1:${edge.httpPort}/`);
    await page.waitForSelector('tr[data-uplink="sensors-0"][data-state="waiting"]', {
      timeout: WAIT_MS,
    });
    expect(await page.locator("#uplink-note").textContent()).toContain("site dash-edge");
    expect(await page.locator('tr[data-uplink="sensors-0"]').textContent()).toMatch(/waiting20/);
    fs.mkdirSync(OUTPUT, { recursive: true });
    await page.screenshot({ path: path.join(OUTPUT, "dashboard-uplink-down.png"), fullPage: true });

    link.setMode("both", pass());
    await page.waitForSelector('tr[data-uplink="sensors-0"][data-state="caught-up"]', {
      timeout: WAIT_MS,
    });
    expect(await page.locator("#uplink-note").textContent()).toContain(
      `connected to 127.0.0.1:${link.port}`,
    );
    expect(await page.locator('tr[data-uplink="sensors-0"]').textContent()).toContain(
      "sensors-0caught-up00 B",
    );
    await page.screenshot({ path: path.join(OUTPUT, "dashboard-uplink-up.png"), fullPage: true });

    // The hub has no uplink of its own: no panel (once a snapshot has been drawn).
    await page.goto(`http://127.0.0.1:${hub.httpPort}/`);
    await page.waitForSelector("#cluster .empty", { timeout: WAIT_MS });
    expect(await page.locator("#uplink-panel").isHidden()).toBe(true);
    expect(pageErrors).toEqual([]);
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
    await edge.close();
    await link.close();
    await hub.close();
  }
}, 60_000);

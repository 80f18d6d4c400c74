/**
 * Drives the dashboard in headless Chromium (Debian's `chromium`, driven by playwright-core)
 * against a broker on a real port: messages produced through the HTTP API and a consumer group's
 * lag show up on the page without a reload. Screenshots go to tests/output/ for review.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { chromium } from "playwright-core";
import { assemble } from "../../lib/app/assemble.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { ask, HTTP_REQUEST_CONTEXT } from "../../lib/http/wire_reply.ts";
import { silentLogger } from "../../lib/log.ts";
import { LogRing, ringLogger } from "../../lib/log_ring.ts";
import { REPO_ROOT } from "../support/harness.ts";
import { tempDir } from "../support/temp_dir.ts";
import { requireChromium } from "./chromium.ts";

const OUTPUT = path.join(REPO_ROOT, "tests/output");
const WAIT_MS = 10_000;

test("the dashboard shows produced messages and group lag live, without a reload", async () => {
  const executablePath = requireChromium();
  await using temp = tempDir();
  const recentLog = new LogRing(50);
  const logger = ringLogger(silentLogger, recentLog);
  const running = await assemble({
    config: buildConfig({
      fileText: `[system]\nnumPartitions=2\ndataPath=${temp.path}\n` +
        "[topic=orders]\nnumPartitions=3\n[topic=payments]\n[topic=audit]\n",
      overrides: { serverPort: "0", dashboardHttpPort: "0" },
    }),
    logger,
    recentLog,
  });
  /** Sets a group's committed offset through the edge, as `metaq groups reset --force` does. */
  const commit = async (group: string, topic: string, partition: number, offset: number) => {
    const answer = await ask(
      (command, respond) => running.edge.dispatch(command, HTTP_REQUEST_CONTEXT, respond),
      {
        kind: "extension",
        verb: "adjust",
        args: [group, topic, String(partition), String(offset), "force"],
        opaque: 0,
        body: new Uint8Array(0),
      },
    );
    expect(answer).toMatchObject({ kind: "result", code: 200 });
  };
  const base = `http://127.0.0.1:${running.httpPort}`;
  const produce = async (topic: string, messages: unknown[]) => {
    const response = await fetch(`${base}/v1/topics/${topic}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages }),
    });
    expect(response.status).toBe(200);
  };
  await fetch(`${base}/v1/topics`, { method: "POST", body: '{"name":"orders"}' });
  await produce("payments", [{ payload: '{"amount":12.5}', partition: 0 }]);
  await commit("billing", "orders", 0, 0);
  await commit("billing", "orders", 1, 0);
  await commit("ledger", "payments", 0, 0);

  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 1000 },
  });
  try {
    const page = context.pages()[0] ?? await context.newPage();
    const pageErrors: string[] = [];
    page.on("pageerror", (error) => pageErrors.push(error.message));
    await page.goto(`${base}/`);
    const messages = 'tr[data-topic="orders"] td[data-cell="messages"]';
    await page.waitForSelector(messages, { timeout: WAIT_MS });
    expect(await page.getAttribute(messages, "data-value")).toBe("0");
    await page.evaluate(() => ((globalThis as { marker?: number }).marker = 42));

    // Background traffic (bounded), so the rates and the chart have something to show.
    let traffic = true;
    const background = (async () => {
      for (let round = 0; traffic && round < 300; round++) {
        await produce("audit", [{ payload: `audit event ${round}`, partition: round % 2 }]);
        const fetched = await fetch(`${base}/v1/topics/orders/partitions/${round % 3}/messages`);
        await fetched.arrayBuffer();
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    for (let round = 0; round < 6; round++) {
      await produce(
        "orders",
        Array.from({ length: 20 }, (_, i) => ({
          payload: JSON.stringify({ order: round * 20 + i, item: "book", quantity: 1 + (i % 3) }),
          partition: i % 3,
          attribute: i % 5 === 0 ? "priority=high" : undefined,
        })),
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    await page.waitForFunction(
      (selector) => document.querySelector(selector)?.getAttribute("data-value") === "120",
      messages,
      { timeout: WAIT_MS },
    );
    const end = running.logs.get("orders", 0)!.endOffset;
    const lag = 'td[data-lag="billing/orders/0"]';
    await page.waitForFunction(
      ([selector, bytes]) => document.querySelector(selector)?.getAttribute("data-value") === bytes,
      [lag, String(end)] as const,
      { timeout: WAIT_MS },
    );

    // The group catches up (offsets reset to the end through the API): its lag drops to zero.
    const reset = await fetch(`${base}/v1/groups/billing/reset`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ topic: "orders", partition: 0, to: "end" }),
    });
    expect(reset.status).toBe(200);
    await page.waitForFunction(
      (selector) => document.querySelector(selector)?.getAttribute("data-value") === "0",
      lag,
      { timeout: WAIT_MS },
    );
    logger.log("warn", "Slow fsync", { partition: "orders-1", latencyMs: 812 });
    await page.waitForSelector("#errors >> text=Slow fsync", { timeout: WAIT_MS });
    await page.click('tr[data-topic="orders"]');
    await page.waitForSelector('tr[data-partition="orders/2"]', { timeout: WAIT_MS });
    expect(await page.locator("#cluster").textContent()).toContain("Single broker");
    expect(await page.locator('[data-topic^="__"]').count()).toBe(0);
    expect(await page.evaluate(() => (globalThis as { marker?: number }).marker)).toBe(42);
    fs.mkdirSync(OUTPUT, { recursive: true });
    await page.screenshot({ path: path.join(OUTPUT, "dashboard.png"), fullPage: true });
    traffic = false;
    await background;

    // Browse: pick the topic and partition, page forward and back.
    await page.click("#nav-browse");
    await page.selectOption("#b-topic", "orders");
    await page.selectOption("#b-partition", "0");
    await page.waitForSelector('#messages tr[data-offset="0"]', { timeout: WAIT_MS });
    await page.selectOption("#b-max", "10");
    await page.waitForFunction(
      () => document.querySelectorAll("#messages tbody tr").length === 10,
      null,
      { timeout: WAIT_MS },
    );
    expect(await page.locator('#messages tr[data-offset="0"] .payload').textContent())
      .toBe('{"order":0,"item":"book","quantity":1}');
    const firstPage = await page.locator("#messages tbody tr").first().getAttribute("data-offset");
    await page.click("#b-next");
    await page.waitForFunction(
      (first) =>
        document.querySelector("#messages tbody tr")?.getAttribute("data-offset") !== first,
      firstPage,
      { timeout: WAIT_MS },
    );
    await page.click("#b-prev");
    await page.waitForSelector('#messages tr[data-offset="0"]', { timeout: WAIT_MS });
    await page.screenshot({ path: path.join(OUTPUT, "dashboard-browse.png"), fullPage: true });

    await page.setViewportSize({ width: 390, height: 844 });
    await page.click("#nav-overview");
    await page.waitForSelector("#overview:not([hidden])", { timeout: WAIT_MS });
    await page.screenshot({ path: path.join(OUTPUT, "dashboard-phone.png"), fullPage: true });
    const overflow = await page.evaluate(() =>
      document.documentElement.scrollWidth - document.documentElement.clientWidth
    );
    expect(overflow).toBeLessThanOrEqual(0);
    expect(await page.evaluate(() => performance.getEntriesByType("navigation").length)).toBe(1);
    expect(pageErrors).toEqual([]);
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
    await running.close();
  }
}, 60_000);

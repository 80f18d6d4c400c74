/**
 * The dashboard's browse positions and admin forms in headless Chromium, against a broker on a
 * real port: the time column, Last and Prev from it, jump to a time, a test message produced from
 * the page, and a consumer group's offsets reset by time (previewed, then applied), each checked
 * against what the HTTP API answers. Screenshots go to tests/output/ for review.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { chromium, type Page } from "playwright-core";
import { assemble } from "../../lib/app/assemble.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { ask, HTTP_REQUEST_CONTEXT } from "../../lib/http/wire_reply.ts";
import { silentLogger } from "../../lib/log.ts";
import { REPO_ROOT } from "../support/harness.ts";
import { tempDir } from "../support/temp_dir.ts";
import { requireChromium } from "./chromium.ts";

const OUTPUT = path.join(REPO_ROOT, "tests/output");
const WAIT_MS = 10_000;
const BATCH = 10;

interface Message {
  readonly offset: number;
  readonly timestamp: string;
  readonly payload: string;
  readonly key: string | null;
}

test(
  "browse by time and from the end; produce a test message and reset a group from the page",
  async () => {
    const executablePath = requireChromium();
    await using temp = tempDir();
    const running = await assemble({
      config: buildConfig({
        fileText: `[system]\ndataPath=${temp.path}\n[topic=orders]\nnumPartitions=2\n`,
        overrides: { serverPort: "0", dashboardHttpPort: "0" },
      }),
      logger: silentLogger,
    });
    const base = `http://127.0.0.1:${running.httpPort}`;
    const messagesOf = async (partition = 0): Promise<Message[]> => {
      const response = await fetch(
        `${base}/v1/topics/orders/partitions/${partition}/messages?max=1000`,
      );
      return (await response.json()).messages;
    };
    // Three batches written at three distinct times (each waits for the clock to pass the last
    // message's millisecond), so a time picks the first message of a batch exactly.
    for (const batch of ["a", "b", "c"]) {
      const stored = await messagesOf();
      const lastMs = stored.length ? Date.parse(stored[stored.length - 1].timestamp) : 0;
      for (let round = 0; Date.now() <= lastMs && round < 100; round++) {
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      const response = await fetch(`${base}/v1/topics/orders/messages`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          messages: Array.from(
            { length: BATCH },
            (_, i) => ({ payload: `${batch}${i}`, partition: 0 }),
          ),
        }),
      });
      expect(response.status).toBe(200);
    }
    const stored = await messagesOf();
    expect(stored.map((m) => m.payload).join(" ")).toBe(
      ["a", "b", "c"].flatMap((b) => Array.from({ length: BATCH }, (_, i) => `${b}${i}`)).join(" "),
    );
    expect(stored[BATCH - 1].timestamp < stored[BATCH].timestamp).toBe(true);
    // A consumer group with an offset committed at the start of the partition.
    const committed = await ask(
      (command, respond) => running.edge.dispatch(command, HTTP_REQUEST_CONTEXT, respond),
      {
        kind: "extension",
        verb: "adjust",
        args: ["billing", "orders", "0", "0", "force"],
        opaque: 0,
        body: new Uint8Array(0),
      },
    );
    expect(committed).toMatchObject({ kind: "result", code: 200 });

    fs.mkdirSync(OUTPUT, { recursive: true });
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-chromium-"));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
      viewport: { width: 1280, height: 1000 },
      // The browser's zone is not the broker's: times are shown and typed in the browser's.
      timezoneId: "Asia/Shanghai",
    });
    try {
      const page = context.pages()[0] ?? await context.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (error) => pageErrors.push(error.message));
      await page.goto(`${base}/#/browse`);
      await page.waitForSelector("#b-topic option", { state: "attached", timeout: WAIT_MS });
      await page.selectOption("#b-max", "10");
      await page.selectOption("#b-topic", "orders");
      await page.selectOption("#b-partition", "0");
      await waitForFirstRow(page, stored[0].offset);
      // The time column shows each message's time from its id, the exact one in data-time.
      expect(await payloads(page)).toEqual(stored.slice(0, BATCH).map((m) => m.payload));
      const times = await page.$$eval(
        "#messages tbody td[data-time]",
        (cells) => cells.map((cell) => cell.getAttribute("data-time")),
      );
      expect(times).toEqual(stored.slice(0, BATCH).map((m) => m.timestamp));
      expect(await page.isDisabled("#b-prev")).toBe(true);

      // Last, then Prev back to the first page.
      await page.click("#b-last");
      await waitForFirstRow(page, stored[2 * BATCH].offset);
      expect(await payloads(page)).toEqual(stored.slice(2 * BATCH).map((m) => m.payload));
      expect(await page.isDisabled("#b-next")).toBe(true);
      await page.screenshot({
        path: path.join(OUTPUT, "dashboard-browse-last.png"),
        fullPage: true,
      });
      await page.click("#b-prev");
      await waitForFirstRow(page, stored[BATCH].offset);
      expect(await payloads(page)).toEqual(stored.slice(BATCH, 2 * BATCH).map((m) => m.payload));
      await page.click("#b-prev");
      await waitForFirstRow(page, stored[0].offset);
      expect(await page.isDisabled("#b-prev")).toBe(true);

      // Jump to the second batch's time: its first message comes first.
      await page.fill("#b-time", stored[BATCH].timestamp);
      await page.click("#b-jump");
      await waitForFirstRow(page, stored[BATCH].offset);
      // The time column is in the browser's zone (UTC+8, no daylight saving), and a time typed
      // without a zone is read in it too.
      const local = new Date(Date.parse(stored[BATCH].timestamp) + 8 * 3600_000).toISOString()
        .slice(0, 23);
      expect(
        await page.textContent(`#messages tr[data-offset="${stored[BATCH].offset}"] td[data-time]`),
      )
        .toBe(local.replace("T", " "));
      await page.click("#b-first");
      await waitForFirstRow(page, stored[0].offset);
      await page.fill("#b-time", local);
      await page.click("#b-jump");
      await waitForFirstRow(page, stored[BATCH].offset);
      // A time after every message lands at the end, with nothing to show.
      const after = new Date(Date.parse(stored[stored.length - 1].timestamp) + 1).toISOString();
      await page.fill("#b-time", after);
      await page.press("#b-time", "Enter");
      await page.waitForSelector("#messages td.empty", { timeout: WAIT_MS });
      // A time the API cannot read is reported on the page.
      await page.fill("#b-time", "soon");
      await page.click("#b-jump");
      await page.waitForSelector("#b-status .error-text", { timeout: WAIT_MS });
      expect(await page.textContent("#b-status")).toContain("fromTime 'soon'");

      // Produce a test message to the partition being browsed: it shows on the last page.
      await page.waitForSelector("#produce-panel:not([hidden])", { timeout: WAIT_MS });
      await page.fill("#p-payload", "hello from the dashboard");
      await page.click("#p-send");
      await page.waitForSelector("#p-offset", { timeout: WAIT_MS });
      const producedAt = Number(await page.textContent("#p-offset"));
      await waitForFirstRow(page, stored[2 * BATCH + 1].offset);
      const afterProduce = await messagesOf(0);
      expect(afterProduce[afterProduce.length - 1]).toMatchObject({
        offset: producedAt,
        payload: "hello from the dashboard",
        key: null,
      });
      // With a key, the key picks the partition, and the page follows it there.
      await page.fill("#p-payload", "keyed from the dashboard");
      await page.fill("#p-key", "k1");
      await page.click("#p-send");
      await page.waitForFunction(
        (offset) => {
          const shown = document.querySelector("#p-offset")?.textContent;
          return shown !== undefined && shown !== offset;
        },
        String(producedAt),
        { timeout: WAIT_MS },
      );
      const keyedPartition = Number(await page.textContent("#p-partition"));
      const keyedAt = Number(await page.textContent("#p-offset"));
      const keyed = (await messagesOf(keyedPartition)).find((m) => m.offset === keyedAt);
      expect(keyed).toMatchObject({ payload: "keyed from the dashboard", key: "k1" });
      await page.waitForSelector(`#messages tr[data-offset="${keyedAt}"]`, { timeout: WAIT_MS });
      expect(await page.inputValue("#b-partition")).toBe(String(keyedPartition));
      expect(await page.textContent(`#messages tr[data-offset="${keyedAt}"]`)).toContain("key=k1");
      await page.screenshot({ path: path.join(OUTPUT, "dashboard-produce.png"), fullPage: true });

      // Reset group billing on orders-0 to the third batch's time: preview, then apply.
      await page.click("#nav-overview");
      await page.waitForSelector("#reset-panel:not([hidden])", { timeout: WAIT_MS });
      await page.waitForSelector('#r-group option[value="billing"]', {
        state: "attached",
        timeout: WAIT_MS,
      });
      await page.selectOption("#r-group", "billing");
      await page.selectOption("#r-topic", "orders");
      await page.waitForSelector('#r-partition option[value="1"]', {
        state: "attached",
        timeout: WAIT_MS,
      });
      await page.selectOption("#r-partition", "0");
      await page.selectOption("#r-to", "time");
      await page.fill("#r-value", stored[2 * BATCH].timestamp);
      await page.click("#r-preview");
      const preview = '#r-status [data-reset="orders/0"]';
      await page.waitForSelector(preview, { timeout: WAIT_MS });
      expect(await page.getAttribute(preview, "data-value")).toBe(String(stored[2 * BATCH].offset));
      expect(await page.textContent("#r-status")).toContain("Would move billing");
      expect(await committedOffset(base)).toBe(0); // a preview changes nothing
      await page.click("#r-apply");
      await page.waitForFunction(
        () => document.querySelector("#r-status")?.textContent?.startsWith("Moved billing"),
        null,
        { timeout: WAIT_MS },
      );
      expect(await committedOffset(base)).toBe(stored[2 * BATCH].offset);
      // The groups panel follows: the lag is what is left after the reset point.
      const end = running.logs.get("orders", 0)!.endOffset;
      await page.waitForFunction(
        ([selector, lag]) => document.querySelector(selector)?.getAttribute("data-value") === lag,
        ['td[data-lag="billing/orders/0"]', String(end - stored[2 * BATCH].offset)] as const,
        { timeout: WAIT_MS },
      );
      // A refusal is shown, not swallowed: an offset inside a record.
      await page.selectOption("#r-to", "offset");
      await page.fill("#r-value", String(stored[1].offset + 3));
      await page.click("#r-preview");
      await page.waitForSelector("#r-status .error-text", { timeout: WAIT_MS });
      expect(await committedOffset(base)).toBe(stored[2 * BATCH].offset);
      await page.screenshot({ path: path.join(OUTPUT, "dashboard-reset.png"), fullPage: true });
      // Both views fit a phone's width (tables scroll inside their panels).
      await page.setViewportSize({ width: 390, height: 844 });
      for (const view of ["#nav-overview", "#nav-browse"]) {
        await page.click(view);
        const overflow = await page.evaluate(() =>
          document.documentElement.scrollWidth - document.documentElement.clientWidth
        );
        expect([view, overflow]).toEqual([view, 0]);
      }
      await page.screenshot({
        path: path.join(OUTPUT, "dashboard-browse-phone.png"),
        fullPage: true,
      });
      expect(pageErrors).toEqual([]);
    } finally {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
      await running.close();
    }
  },
  90_000,
);

async function waitForFirstRow(page: Page, offset: number): Promise<void> {
  await page.waitForFunction(
    (want) => document.querySelector("#messages tbody tr")?.getAttribute("data-offset") === want,
    String(offset),
    { timeout: WAIT_MS },
  );
}

function payloads(page: Page): Promise<string[]> {
  return page.$$eval(
    "#messages tbody .payload",
    (cells) => cells.map((cell) => cell.textContent ?? ""),
  );
}

async function committedOffset(base: string): Promise<number> {
  const response = await fetch(`${base}/v1/groups/billing`);
  const group = await response.json();
  return group.partitions.find((p: { topic: string; partition: number }) =>
    p.topic === "orders" && p.partition === 0
  ).committedOffset;
}

/**
 * The delayed-messages panel in headless Chromium (a broker assembled in process): hidden while
 * nothing was ever delayed, then pending count, next due time, deliveries and the lateness
 * histogram; a cancel shows without a reload.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { chromium } from "playwright-core";
import { assemble } from "../../lib/app/assemble.ts";
import { MetaqClient } from "../../lib/client/client.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { silentLogger } from "../../lib/log.ts";
import { REPO_ROOT } from "../support/harness.ts";
import { tempDir } from "../support/temp_dir.ts";
import { requireChromium } from "./chromium.ts";

const OUTPUT = path.join(REPO_ROOT, "tests/output");
const WAIT_MS = 15_000;

test(
  "the dashboard shows pending delayed messages, the next due, deliveries and lateness",
  async () => {
    const executablePath = requireChromium();
    await using temp = tempDir("metaq-delayed-dash-");
    const broker = await assemble({
      config: buildConfig({
        fileText: `[system]\ndataPath=${temp.path}\n[topic=reminders]\n`,
        overrides: { serverPort: "0", dashboardHttpPort: "0" },
      }),
      logger: silentLogger,
      httpEngine: "node",
    });
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-chromium-"));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
      viewport: { width: 1280, height: 1000 },
    });
    const client = new MetaqClient({ brokers: [`127.0.0.1:${broker.port}`] });
    try {
      const page = context.pages()[0] ?? await context.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (error) => pageErrors.push(error.message));
      await page.goto(`http://127.0.0.1:${broker.httpPort}/`);
      await page.waitForSelector("#cluster .empty", { timeout: WAIT_MS });
      expect(await page.locator("#delayed-panel").isHidden()).toBe(true);

      const payload = new TextEncoder().encode("call back");
      const later = await client.putDelayed("reminders", 0, { payload }, { delayMs: 3_600_000 });
      await client.putDelayed("reminders", 0, { payload }, { delayMs: 7_200_000 });
      await client.putDelayed("reminders", 0, { payload }, { delayMs: 100 });
      const pending = page.locator('[data-card="delayed-pending"] .value');
      const delivered = page.locator('[data-card="delayed-delivered"] .value');
      await page.waitForFunction(
        () =>
          document.querySelector('[data-card="delayed-pending"] .value')?.textContent === "2" &&
          document.querySelector('[data-card="delayed-delivered"] .value')?.textContent === "1",
        undefined,
        { timeout: WAIT_MS },
      );
      expect(await pending.textContent()).toBe("2");
      expect(await delivered.textContent()).toBe("1");
      expect(await page.locator('[data-card="delayed-next"] .value').textContent()).toMatch(
        /^in 60 min$/,
      );
      expect(await page.locator("#delayed-note").textContent()).toBe("delivered from this node");
      expect(await page.locator("#delayed-lateness > div").count()).toBe(15);
      fs.mkdirSync(OUTPUT, { recursive: true });
      await page.screenshot({ path: path.join(OUTPUT, "dashboard-delayed.png"), fullPage: true });

      await client.cancelDelayed(later.id);
      await page.waitForFunction(
        () => document.querySelector('[data-card="delayed-pending"] .value')?.textContent === "1",
        undefined,
        { timeout: WAIT_MS },
      );
      expect(await page.locator('[data-card="delayed-delivered"] .sub').textContent()).toContain(
        "1 cancelled",
      );
      expect(pageErrors).toEqual([]);
    } finally {
      client.close();
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
      await broker.close();
    }
  },
  60_000,
);

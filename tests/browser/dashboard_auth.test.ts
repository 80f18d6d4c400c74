/**
 * The dashboard of a broker with users, in headless Chromium: the page asks for a token, a wrong
 * one is refused, the right one (kept in the browser) brings the live view, and a reload goes
 * straight in with the kept token. Only an admin's token brings the admin forms.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { chromium } from "playwright-core";
import { assemble } from "../../lib/app/assemble.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { silentLogger } from "../../lib/log.ts";
import { tempDir } from "../support/temp_dir.ts";
import { requireChromium } from "./chromium.ts";

const WAIT_MS = 10_000;
const TOKEN = "viewer-token-0123456789";
const ADMIN_TOKEN = "admin-token-0123456789";

test("the dashboard asks for a token, refuses a wrong one, and goes live with the right one", async () => {
  const executablePath = requireChromium();
  await using temp = tempDir();
  const running = await assemble({
    config: buildConfig({
      fileText: `[system]\ndataPath=${temp.path}\n[topic=*]\n` +
        `[user=viewer]\ntoken=${TOKEN}\nconsume=*\nproduce=*\n` +
        `[user=ops]\ntoken=${ADMIN_TOKEN}\nadmin=true\n`,
      overrides: { serverPort: "0", dashboardHttpPort: "0" },
    }),
    logger: silentLogger,
  });
  const base = `http://127.0.0.1:${running.httpPort}`;
  const produced = await fetch(`${base}/v1/topics/orders/messages`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ messages: [{ payload: "one" }, { payload: "two" }] }),
  });
  expect(produced.status).toBe(200);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
  });
  try {
    const page = context.pages()[0] ?? await context.newPage();
    const pageErrors: string[] = [];
    page.on("pageerror", (error) => pageErrors.push(error.message));
    await page.goto(`${base}/`);
    await page.waitForSelector("#login:not([hidden])", { timeout: WAIT_MS });
    await page.fill("#login-token", "not-the-token-000000");
    await page.click("#login-go");
    await page.waitForFunction(
      () => document.querySelector("#login-status")?.textContent === "That token was refused.",
      undefined,
      { timeout: WAIT_MS },
    );
    await page.fill("#login-token", TOKEN);
    await page.click("#login-go");
    const messages = 'tr[data-topic="orders"] td[data-cell="messages"]';
    await page.waitForFunction(
      (selector) => Number(document.querySelector(selector)?.getAttribute("data-value")) > 0,
      messages,
      { timeout: WAIT_MS },
    );
    expect(await page.isHidden("#login")).toBe(true);
    await page.waitForFunction(() => document.querySelector("#live-text")?.textContent === "live");
    expect(await page.evaluate(() => localStorage.getItem("metaq.token"))).toBe(TOKEN);
    // A user who is not an admin does not get the admin forms.
    await page.waitForSelector('body[data-role="user"]', { timeout: WAIT_MS });
    expect(await page.isHidden("#reset-panel")).toBe(true);
    expect(await page.isHidden("#produce-panel")).toBe(true);
    await page.reload();
    await page.waitForSelector(messages, { timeout: WAIT_MS });
    expect(await page.isHidden("#login")).toBe(true);
    // An admin's token does.
    await page.evaluate((token) => localStorage.setItem("metaq.token", token), ADMIN_TOKEN);
    await page.reload();
    await page.waitForSelector('body[data-role="admin"]', { timeout: WAIT_MS });
    expect(await page.isVisible("#reset-panel")).toBe(true);
    expect(pageErrors).toEqual([]);
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
    await running.close();
  }
});

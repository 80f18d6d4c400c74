import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ManualClock } from "../../../lib/clock.ts";
import {
  CLOCK_FILE_RECHECK_MS,
  clockFromEnv,
  offsetClock,
  readOffsetMs,
} from "../../../lib/clock_offset.ts";
import { systemClock } from "../../../lib/clock.ts";

describe("test-build clock skew (METAQ_TEST_CLOCK_FILE)", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-clock-"));
  const file = path.join(dir, "clock-offset");

  test("without the variable the broker gets the system clock itself", () => {
    expect(clockFromEnv({})).toBe(systemClock);
  });

  test("the offset file moves wall time only, and a rewrite takes effect after the recheck", () => {
    fs.writeFileSync(file, "+300000\n");
    const base = new ManualClock(1_000_000);
    const clock = offsetClock(base, () => readOffsetMs(file));
    expect(clock.wallMs()).toBe(1_300_000);
    expect(clock.monotonicMs()).toBe(0);
    fs.writeFileSync(file, "-604800000");
    base.advance(CLOCK_FILE_RECHECK_MS - 1);
    expect(clock.wallMs()).toBe(1_000_000 + CLOCK_FILE_RECHECK_MS - 1 + 300_000);
    base.advance(1);
    expect(clock.wallMs()).toBe(1_000_000 + CLOCK_FILE_RECHECK_MS - 604_800_000);
    expect(clock.monotonicMs()).toBe(CLOCK_FILE_RECHECK_MS);
  });

  test("a missing, empty or malformed file means no offset", () => {
    expect(readOffsetMs(path.join(dir, "absent"))).toBe(0);
    fs.writeFileSync(file, "");
    expect(readOffsetMs(file)).toBe(0);
    fs.writeFileSync(file, "7 days");
    expect(readOffsetMs(file)).toBe(0);
    fs.writeFileSync(file, "1.5");
    expect(readOffsetMs(file)).toBe(0);
  });

  test("a real file through the environment skews Date.now() by its offset", () => {
    fs.writeFileSync(file, "86400000");
    const clock = clockFromEnv({ METAQ_TEST_CLOCK_FILE: file });
    const skew = clock.wallMs() - Date.now();
    expect(skew).toBeGreaterThan(86_400_000 - 1000);
    expect(skew).toBeLessThanOrEqual(86_400_000);
  });
});

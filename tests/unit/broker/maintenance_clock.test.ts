/**
 * Time-based retention distrusts a wall clock that jumped (T11): a step of days ahead would
 * delete segments days early, and deleting cannot be undone. Slewing never counts; a jump that
 * is undone makes retention resume, from schedules computed again.
 */
import { expect, test } from "bun:test";
import type { Broker } from "../../../lib/broker/broker.ts";
import { CLOCK_JUMP_TOLERANCE_MS, Maintenance } from "../../../lib/broker/maintenance.ts";
import { ManualClock } from "../../../lib/clock.ts";
import { parseCron } from "../../../lib/config/cron.ts";
import { parseDeletePolicy } from "../../../lib/config/retention_policy.ts";
import type { Logs } from "../../../lib/store/log.ts";

const WEEK_MS = 7 * 24 * 3600 * 1000;

function setup() {
  const clock = new ManualClock(Date.UTC(2026, 5, 1, 12));
  const runs: number[] = [];
  const warnings: string[] = [];
  const settings = {
    deletePolicy: parseDeletePolicy("delete,1h"),
    deleteWhen: parseCron("*/2 * * * * ?"),
  };
  const log = {
    applyRetention: (_policy: unknown, nowMs: number) => {
      runs.push(nowMs);
      return Promise.resolve();
    },
  };
  const maintenance = new Maintenance({
    broker: { topicSettings: () => settings } as unknown as Broker,
    logs: { list: () => [{ topic: "retained", partition: 0, log }] } as unknown as Logs,
    syncs: { syncIfDue: () => Promise.resolve() },
    clock,
    logger: { log: (level: string, message: string) => level === "warn" && warnings.push(message) },
  });
  /** Advances both clocks by `seconds` one second at a time, running a round each second. */
  const run = async (seconds: number) => {
    for (let i = 0; i < seconds; i++) {
      clock.advance(1000);
      await maintenance.tick();
    }
  };
  return { clock, runs, warnings, maintenance, run };
}

test("retention runs on its schedule while the clock only slews", async () => {
  const { clock, runs, maintenance, run } = setup();
  await run(10);
  clock.jumpWall(500); // well under a jump: NTP-sized corrections
  await run(10);
  expect(runs.length).toBeGreaterThanOrEqual(8);
  expect(maintenance.clockTrusted).toBe(true);
});

test("a jump of a week ahead suspends retention until the clock is back", async () => {
  const { clock, runs, warnings, maintenance, run } = setup();
  await run(6);
  const before = runs.length;
  clock.jumpWall(WEEK_MS);
  await run(10);
  expect(runs.length).toBe(before);
  expect(maintenance.clockTrusted).toBe(false);
  expect(warnings).toEqual(["Wall clock jumped: time-based retention waits until it is back"]);
  clock.jumpWall(-WEEK_MS);
  await run(10);
  expect(maintenance.clockTrusted).toBe(true);
  // Schedules are computed again from the restored time: retention resumes at once.
  expect(runs.length).toBeGreaterThanOrEqual(before + 4);
  expect(Math.max(...runs)).toBeLessThan(clock.wallMs() + CLOCK_JUMP_TOLERANCE_MS);
});

test("jumps back in time count too", async () => {
  const { clock, runs, maintenance, run } = setup();
  await run(4);
  const before = runs.length;
  clock.jumpWall(-2 * CLOCK_JUMP_TOLERANCE_MS);
  await run(6);
  expect(maintenance.clockTrusted).toBe(false);
  expect(runs.length).toBe(before);
});

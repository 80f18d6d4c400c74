import { beforeAll, describe, expect, test } from "bun:test";
import { runSeeds, type SeedOutcome } from "./pool.ts";
import { driverBudgetMs, SIM_DRIVER_FRESH, SIM_DRIVER_MS, SIM_DRIVER_SEEDS } from "./settings.ts";
import { driverReplayCommand } from "./shrink.ts";
import { runDriverSimulation } from "./driver_world.ts";

// The real cluster driver (ClusterNode, Replica, ReplicatedLog and the segment logs) run in
// virtual time over an in-memory disk that loses unsynced writes and a faulty network, while
// the cluster's members and placements change through its metadata group's leader.
const fixed = Array.from({ length: SIM_DRIVER_SEEDS }, (_, index) => index + 1);
const fresh = Array.from(
  crypto.getRandomValues(new Uint32Array(SIM_DRIVER_FRESH)),
  (value) => value,
);
let outcomes: SeedOutcome[] = [];

function explain(failed: readonly SeedOutcome[]): string {
  return failed.map((outcome) =>
    `seed ${outcome.seed} (${outcome.failure!.kind} ${outcome.failure!.check} at ` +
    `${outcome.failure!.atTick} ms): ${outcome.failure!.message.split("\n")[0]}\n` +
    `  replay: ${driverReplayCommand(outcome.seed, { durationMs: SIM_DRIVER_MS })}\n` +
    outcome.recent.map((line) => `    ${line}`).join("\n")
  ).join("\n");
}

describe(
  `driver simulator: ${SIM_DRIVER_SEEDS} fixed and ${SIM_DRIVER_FRESH} fresh seeds of ` +
    `${SIM_DRIVER_MS} ms`,
  () => {
    beforeAll(async () => {
      if (fresh.length > 0) console.log(`fresh driver simulator seeds: ${fresh.join(" ")}`);
      const jobs = [...fixed, ...fresh].map((seed) => ({
        mode: "driver" as const,
        seed,
        durationMs: SIM_DRIVER_MS,
      }));
      const started = performance.now();
      outcomes = await runSeeds(jobs);
      const total = (key: string) =>
        outcomes.reduce((sum, each) => sum + (each.stats[key] ?? 0), 0);
      console.log(
        `driver simulator: ${outcomes.length} seeds in ${
          Math.round(performance.now() - started)
        } ms: ` +
          ["events", "elections", "commits", "acked", "restarts", "sleeps", "reconfigurations"].map(
            (key) => `${total(key)} ${key}`,
          )
            .join(", "),
      );
    }, driverBudgetMs(fixed.length + fresh.length));

    test("no seed breaks a driver invariant (S1, S4-S7, S9-S12) or an assertion", () => {
      const failed = outcomes.filter((outcome) =>
        outcome.failure && outcome.failure.kind !== "liveness"
      );
      if (failed.length > 0) console.error(explain(failed));
      expect(failed.map((outcome) => outcome.seed)).toEqual([]);
      expect(outcomes.length).toBe(fixed.length + fresh.length);
    });

    test("every seed settles after heal: one leader per group, voters as placed, copies caught up, puts go through", () => {
      const failed = outcomes.filter((outcome) => outcome.failure?.kind === "liveness");
      if (failed.length > 0) console.error(explain(failed));
      expect(failed.map((outcome) => outcome.seed)).toEqual([]);
    });

    test("the seeds exercised elections, commits, puts, restarts, sleeps and reconfigurations", () => {
      const total = (key: string) =>
        outcomes.reduce((sum, outcome) => sum + (outcome.stats[key] ?? 0), 0);
      expect(total("elections")).toBeGreaterThan(outcomes.length * 3);
      expect(total("commits")).toBeGreaterThan(outcomes.length * 50);
      expect(total("acked")).toBeGreaterThan(outcomes.length * 20);
      expect(total("restarts")).toBeGreaterThan(outcomes.length);
      // Idle groups go to sleep (quiescence) and must wake correctly under the same faults.
      expect(total("sleeps")).toBeGreaterThan(outcomes.length);
      // Membership and placement records accepted by the metadata leader (moves, removals, adds).
      expect(total("reconfigurations")).toBeGreaterThan(outcomes.length / 10);
    });
  },
);

test("a driver seed replays exactly: the same seed gives the same run", async () => {
  const first = await runDriverSimulation({ seed: 7, durationMs: SIM_DRIVER_MS });
  const second = await runDriverSimulation({ seed: 7, durationMs: SIM_DRIVER_MS });
  expect(second.stats).toEqual(first.stats);
  expect(second.recent).toEqual(first.recent);
  expect(first.stats.events).toBeGreaterThan(1000);
});

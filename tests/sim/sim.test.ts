import { beforeAll, describe, expect, test } from "bun:test";
import { runSeeds, type SeedOutcome } from "./pool.ts";
import { budgetMs, SIM_FRESH, SIM_SEEDS, SIM_TICKS } from "./settings.ts";
import { replayCommand } from "./shrink.ts";

const fixed = Array.from({ length: SIM_SEEDS }, (_, index) => index + 1);
const fresh = Array.from(crypto.getRandomValues(new Uint32Array(SIM_FRESH)), (value) => value);
let outcomes: SeedOutcome[] = [];

function explain(failed: readonly SeedOutcome[]): string {
  return failed.map((outcome) =>
    `seed ${outcome.seed} (${outcome.failure!.kind} at tick ${outcome.failure!.atTick}): ` +
    `${outcome.failure!.message.split("\n")[0]}\n` +
    `  replay: ${replayCommand(outcome.seed, { ticks: SIM_TICKS })}`
  ).join("\n");
}

describe(`simulator: ${SIM_SEEDS} fixed and ${SIM_FRESH} fresh seeds of ${SIM_TICKS} ticks`, () => {
  beforeAll(async () => {
    if (fresh.length > 0) console.log(`fresh simulator seeds: ${fresh.join(" ")}`);
    const jobs = [...fixed, ...fresh].map((seed) => ({ seed, ticks: SIM_TICKS }));
    outcomes = await runSeeds(jobs);
  }, budgetMs(fixed.length + fresh.length));

  test("no seed breaks a safety rule (S1-S9) or a core assertion", () => {
    const failed = outcomes.filter((outcome) =>
      outcome.failure && outcome.failure.kind !== "liveness"
    );
    if (failed.length > 0) console.error(explain(failed));
    expect(failed.map((outcome) => outcome.seed)).toEqual([]);
    expect(outcomes.length).toBe(fixed.length + fresh.length);
  });

  test("every seed settles after heal: one leader, every node caught up, retries commit", () => {
    const failed = outcomes.filter((outcome) => outcome.failure?.kind === "liveness");
    if (failed.length > 0) console.error(explain(failed));
    expect(failed.map((outcome) => outcome.seed)).toEqual([]);
  });

  test("the seeds exercised elections, commits and acknowledged writes", () => {
    const total = (key: "elections" | "commits" | "acked") =>
      outcomes.reduce((sum, outcome) => sum + outcome.stats[key], 0);
    expect(total("elections")).toBeGreaterThan(outcomes.length * 2);
    expect(total("commits")).toBeGreaterThan(outcomes.length * 100);
    expect(total("acked")).toBeGreaterThan(outcomes.length * 50);
  });
});

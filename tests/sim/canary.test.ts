import { describe, expect, test } from "bun:test";
import type { Canary } from "../../lib/cluster/raft.ts";
import type { DriverCanary } from "../../lib/cluster/replica.ts";
import { runSeeds, type SeedJob, type SeedOutcome, workerCount } from "./pool.ts";
import {
  budgetMs,
  driverBudgetMs,
  SIM_CANARY_SEEDS,
  SIM_DRIVER_MS,
  SIM_TICKS,
} from "./settings.ts";

// Each canary is a deliberate bug (RaftOptions.canary in the core, ReplicaOptions.canary in the
// driver). It counts as caught only when a seed fails with the named invariant the bug breaks:
// a liveness stall, an assertion or another invariant does not count, so the checker is shown
// to see the rule itself, not just some trouble downstream.
const CORE_CANARIES: readonly { canary: Canary; invariant: string }[] = [
  { canary: "skipVotePersist", invariant: "S7" }, // a vote sent before it is durable
  { canary: "commitOldTerms", invariant: "S6" }, // a leader commits an older term's entry
  { canary: "noPrevCheck", invariant: "S3" }, // logs that match at a position differ before it
  { canary: "truncateBelowCommit", invariant: "S6" }, // a commit no durable quorum holds
  { canary: "noUpToDateCheck", invariant: "S4" }, // a leader without every committed entry
  { canary: "ackBeforeLeaderPersist", invariant: "S6" }, // a commit no durable quorum holds
  { canary: "repairVotes", invariant: "S8" }, // a replica in repair mode votes
];

const DRIVER_CANARIES: readonly { canary: DriverCanary; invariant: string }[] = [
  { canary: "sendBeforeHardState", invariant: "S7" }, // a message before its hard state
  { canary: "applyAboveCommit", invariant: "S10" }, // readers see uncommitted records
  { canary: "persistedBeforeSync", invariant: "S6" }, // a commit no durable quorum holds
  { canary: "removedNodeVotes", invariant: "S11" }, // a copy its own log leaves out votes
];

/** Runs seeds 1..SIM_CANARY_SEEDS until one fails with `invariant`; returns that outcome. */
async function hunt(
  job: (seed: number) => SeedJob,
  invariant: string,
): Promise<{ caught?: SeedOutcome; others: Record<string, number>; seeds: number }> {
  const jobs = Array.from({ length: SIM_CANARY_SEEDS }, (_, index) => job(index + 1));
  const outcomes = await runSeeds(
    jobs,
    (done) => done.some((outcome) => outcome.failure?.check === invariant),
  );
  const others: Record<string, number> = {};
  for (const outcome of outcomes) {
    const check = outcome.failure?.check;
    if (check && check !== invariant) others[check] = (others[check] ?? 0) + 1;
  }
  const caught = outcomes.find((outcome) => outcome.failure?.check === invariant);
  return { caught, others, seeds: outcomes.length };
}

function describeHunt(name: string, result: Awaited<ReturnType<typeof hunt>>): string {
  const others = Object.keys(result.others).length > 0
    ? ` (other failures: ${JSON.stringify(result.others)})`
    : "";
  return result.caught
    ? `${name}: caught by seed ${result.caught.seed} (${result.caught.failure!.check}): ` +
      `${result.caught.failure!.message.split("\n")[0]}${others}`
    : `${name}: missed in ${result.seeds} seeds${others}`;
}

describe("mutation canaries of the Raft core", () => {
  for (const { canary, invariant } of CORE_CANARIES) {
    test(
      `the core simulator reports ${invariant} for the ${canary} canary within ` +
        `${SIM_CANARY_SEEDS} seeds`,
      async () => {
        const result = await hunt((seed) => ({ seed, ticks: SIM_TICKS, canary }), invariant);
        console.log(describeHunt(canary, result));
        expect(result.caught?.failure?.check).toBe(invariant);
      },
      budgetMs(workerCount() * 40),
    );
  }
});

describe("mutation canaries of the cluster driver", () => {
  for (const { canary, invariant } of DRIVER_CANARIES) {
    test(
      `the driver simulator reports ${invariant} for the ${canary} canary within ` +
        `${SIM_CANARY_SEEDS} seeds`,
      async () => {
        const result = await hunt(
          (seed) => ({ mode: "driver", seed, durationMs: SIM_DRIVER_MS, canary }),
          invariant,
        );
        console.log(describeHunt(canary, result));
        expect(result.caught?.failure?.check).toBe(invariant);
      },
      driverBudgetMs(workerCount() * 40),
    );
  }
});

import { describe, expect, test } from "bun:test";
import type { Canary } from "../../lib/cluster/raft.ts";
import { runSeeds, workerCount } from "./pool.ts";
import { budgetMs, SIM_CANARY_SEEDS, SIM_TICKS } from "./settings.ts";

// Each canary is a deliberate bug in the core (RaftOptions.canary). The simulator must catch
// every one within SIM_CANARY_SEEDS seeds, or its fault mix is too gentle to trust.
const CANARIES: readonly Canary[] = [
  "skipVotePersist",
  "commitOldTerms",
  "noPrevCheck",
  "truncateBelowCommit",
  "noUpToDateCheck",
  "ackBeforeLeaderPersist",
  "repairVotes",
];

describe("mutation canaries", () => {
  for (const canary of CANARIES) {
    test(
      `the simulator catches the ${canary} canary within ${SIM_CANARY_SEEDS} seeds`,
      async () => {
        const jobs = Array.from(
          { length: SIM_CANARY_SEEDS },
          (_, index) => ({ seed: index + 1, ticks: SIM_TICKS, canary }),
        );
        const outcomes = await runSeeds(jobs, (done) => done.some((outcome) => outcome.failure));
        const caught = outcomes.find((outcome) => outcome.failure);
        console.log(
          caught
            ? `${canary}: caught by seed ${caught.seed} (${caught.failure!.check}): ` +
              caught.failure!.message.split("\n")[0]
            : `${canary}: missed in ${outcomes.length} seeds`,
        );
        expect(caught).toBeDefined();
      },
      budgetMs(workerCount() * 40),
    );
  }
});

import { expect, test } from "bun:test";
import type { DriverFault } from "./driver_world.ts";
import { runDriverSimulation } from "./driver_world.ts";

// A transaction's batch for one partition is one Raft entry of several records. A power cut
// can leave a whole-record prefix of it on a disk; the copy that keeps it must not lead with
// it, or the records that complete the batch later land behind other puts (found by T05: a
// transaction split by two plain puts). Clients here put mostly atomic batches and send each
// again until it is in, as a coordinator completes a journalled commit; S12 checks every log.
const SEEDS = Array.from({ length: 30 }, (_, index) => index + 1);

const CUT: Omit<DriverFault, "index" | "atMs"> = {
  kind: "powerCut",
  node: 1,
  durationMs: 100,
  targetLeader: false,
  shape: "isolate",
  mode: "reset",
  salt: 0,
};

test("an atomic batch stays one run in every log through repeated power cuts", async () => {
  const outcomes = await Promise.all(SEEDS.map(async (seed) => {
    // Six cuts a second apart: time enough between them to elect and put.
    const result = await runDriverSimulation({
      seed,
      durationMs: 8000,
      batchShare: 0.8,
      scenario: {
        nodes: 3,
        faults: Array.from({ length: 6 }, (_, index) => ({ ...CUT, atMs: 1200 + index * 1000 })),
      },
    });
    const failure = result.failure;
    return failure ? `seed ${seed}: ${failure.check}: ${failure.message.split("\n")[0]}` : "ok";
  }));
  expect(outcomes.filter((outcome) => outcome !== "ok")).toEqual([]);
}, 240_000);

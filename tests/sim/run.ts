/**
 * @module Command line for the Raft simulator: run one seed (or a range), replay a failure with
 * its full trace, or shrink its fault schedule.
 *
 *   bun tests/sim/run.ts --seed 42 [--ticks 20000] [--canary commitOldTerms] [--trace]
 *   bun tests/sim/run.ts --seeds 1-500 [--ticks 20000]
 *   bun tests/sim/run.ts --seed 42 --shrink
 *   bun tests/sim/run.ts --seed 42 --disable 3,7 --trace
 */
import { parseArgs } from "node:util";
import type { Canary } from "../../lib/cluster/raft.ts";
import { replayCommand, shrink } from "./shrink.ts";
import { runSimulation, type SimResult } from "./world.ts";

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    seeds: { type: "string" },
    ticks: { type: "string" },
    canary: { type: "string" },
    disable: { type: "string" },
    trace: { type: "boolean", default: false },
    shrink: { type: "boolean", default: false },
    "end-to-end": { type: "boolean", default: false },
  },
});

const ticks = values.ticks ? Number(values.ticks) : undefined;
const canary = values.canary as Canary | undefined;
const endToEndOnly = values["end-to-end"];
const disabledFaults = new Set(
  (values.disable ?? "").split(",").filter((part) => part !== "").map(Number),
);

function report(result: SimResult): void {
  const { stats } = result;
  const head = `seed ${result.seed}: ${stats.nodes} nodes, ${stats.ticks} ticks, ` +
    `${stats.elections} elections, ${stats.commits} commits, ${stats.acked} acked`;
  if (!result.failure) {
    console.log(`${head}: ok`);
    return;
  }
  console.log(`${head}: FAILED at tick ${result.failure.atTick}`);
  console.log(`  ${result.failure.kind} ${result.failure.message}`);
  console.log(`  replay: ${replayCommand(result.seed, { ticks, canary, disabledFaults })}`);
}

if (values.seeds) {
  const [first, last] = values.seeds.split("-").map(Number);
  let failed = 0;
  for (let seed = first; seed <= last; seed++) {
    const result = runSimulation({ seed, ticks, canary, endToEndOnly });
    if (result.failure) {
      failed++;
      report(result);
    }
  }
  console.log(`${last - first + 1 - failed} passed, ${failed} failed`);
} else {
  const seed = Number(values.seed ?? process.env.SIM_SEED ?? 1);
  const trace = values.trace ? (line: string) => console.log(line) : undefined;
  const result = runSimulation({ seed, ticks, canary, disabledFaults, trace, endToEndOnly });
  report(result);
  if (result.failure && !values.trace) {
    console.log("  last events:");
    for (const line of result.recent.slice(-40)) console.log(`    ${line}`);
  }
  if (result.failure && values.shrink) {
    const shrunk = shrink(result, { ticks, canary });
    console.log(`shrunk to ${shrunk.enabled.length} of ${result.faults.length} faults:`);
    console.log(
      `  replay: ${replayCommand(seed, { ticks, canary, disabledFaults: shrunk.disabled })}`,
    );
  }
}

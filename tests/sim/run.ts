/**
 * @module Command line for the simulators: run one seed (or a range), replay a failure with its
 * full trace, or shrink its fault schedule. Without `--driver` it runs the Raft core's
 * simulator (world.ts); with it, the real cluster driver (driver_world.ts).
 *
 *   bun tests/sim/run.ts --seed 42 [--ticks 20000] [--canary commitOldTerms] [--trace]
 *   bun tests/sim/run.ts --seeds 1-500 [--ticks 20000]
 *   bun tests/sim/run.ts --seed 42 --shrink
 *   bun tests/sim/run.ts --seed 42 --disable 3,7 --trace
 *   bun tests/sim/run.ts --driver --seed 42 [--ms 5000] [--canary sendBeforeHardState] [--trace]
 *   bun tests/sim/run.ts --driver --seeds 1-500
 */
import { parseArgs } from "node:util";
import type { Canary } from "../../lib/cluster/raft.ts";
import type { DriverCanary } from "../../lib/cluster/replica.ts";
import { type DriverSimResult, runDriverSimulation } from "./driver_world.ts";
import { driverReplayCommand, replayCommand, shrink, shrinkDriver } from "./shrink.ts";
import { runSimulation, type SimResult } from "./world.ts";

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    seeds: { type: "string" },
    ticks: { type: "string" },
    ms: { type: "string" },
    canary: { type: "string" },
    disable: { type: "string" },
    trace: { type: "boolean", default: false },
    shrink: { type: "boolean", default: false },
    driver: { type: "boolean", default: false },
    "end-to-end": { type: "boolean", default: false },
  },
});

const ticks = values.ticks ? Number(values.ticks) : undefined;
const durationMs = values.ms ? Number(values.ms) : undefined;
const endToEndOnly = values["end-to-end"];
const disabledFaults = new Set(
  (values.disable ?? "").split(",").filter((part) => part !== "").map(Number),
);
const seedRange = values.seeds?.split("-").map(Number);
const seed = Number(values.seed ?? process.env.SIM_SEED ?? 1);
const trace = values.trace ? (line: string) => console.log(line) : undefined;

function report(result: SimResult | DriverSimResult, replay: string): void {
  const { stats } = result;
  const head = `seed ${result.seed}: ${
    Object.entries(stats).map(([k, v]) => `${v} ${k}`).join(", ")
  }`;
  if (!result.failure) {
    console.log(`${head}: ok`);
    return;
  }
  console.log(`${head}: FAILED at ${result.failure.atTick}`);
  console.log(`  ${result.failure.kind} ${result.failure.message}`);
  console.log(`  replay: ${replay}`);
}

if (values.driver) await runDriver(values.canary as DriverCanary | undefined);
else runCore(values.canary as Canary | undefined);

function runCore(canary: Canary | undefined): void {
  const replay = (seed: number, disabled = disabledFaults) =>
    replayCommand(seed, { ticks, canary, disabledFaults: disabled });
  if (seedRange) {
    const [first, last] = seedRange;
    let failed = 0;
    for (let each = first; each <= last; each++) {
      const result = runSimulation({ seed: each, ticks, canary, endToEndOnly });
      if (result.failure) {
        failed++;
        report(result, replay(each));
      }
    }
    console.log(`${last - first + 1 - failed} passed, ${failed} failed`);
    return;
  }
  const result = runSimulation({ seed, ticks, canary, disabledFaults, trace, endToEndOnly });
  report(result, replay(seed));
  if (result.failure && !values.trace) printRecent(result.recent);
  if (result.failure && values.shrink) {
    const shrunk = shrink(result, { ticks, canary });
    console.log(`shrunk to ${shrunk.enabled.length} of ${result.faults.length} faults:`);
    console.log(`  replay: ${replay(seed, shrunk.disabled)}`);
  }
}

async function runDriver(canary: DriverCanary | undefined): Promise<void> {
  const replay = (seed: number, disabled = disabledFaults) =>
    driverReplayCommand(seed, { durationMs, canary, disabledFaults: disabled });
  if (seedRange) {
    const [first, last] = seedRange;
    let failed = 0;
    for (let each = first; each <= last; each++) {
      const result = await runDriverSimulation({ seed: each, durationMs, canary });
      if (result.failure) {
        failed++;
        report(result, replay(each));
      }
    }
    console.log(`${last - first + 1 - failed} passed, ${failed} failed`);
    return;
  }
  const result = await runDriverSimulation({ seed, durationMs, canary, disabledFaults, trace });
  report(result, replay(seed));
  if (result.failure && !values.trace) printRecent(result.recent);
  if (result.failure && values.shrink) {
    const shrunk = await shrinkDriver(result, { durationMs, canary });
    console.log(`shrunk to ${shrunk.enabled.length} of ${result.faults.length} faults:`);
    console.log(`  replay: ${replay(seed, shrunk.disabled)}`);
  }
}

function printRecent(recent: readonly string[]): void {
  console.log("  last events:");
  for (const line of recent.slice(-40)) console.log(`    ${line}`);
}

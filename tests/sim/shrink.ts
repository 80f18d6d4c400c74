/**
 * @module Shrinking a failing simulator run (of the core or of the driver): replay the seed with
 * fault events removed one at a time, keeping each removal after which the same check still
 * fails. The result is a shorter fault schedule and a replay command for it.
 */
import type { Canary } from "../../lib/cluster/raft.ts";
import type { DriverCanary } from "../../lib/cluster/replica.ts";
import { type DriverFault, type DriverSimResult, runDriverSimulation } from "./driver_world.ts";
import { type Fault, runSimulation, type SimResult } from "./world.ts";

/** Runs the shrinker may spend on one failure. */
const SHRINK_RUNS_MAX = 200;

export interface ShrinkOptions {
  readonly ticks?: number;
  readonly canary?: Canary;
}

export function shrink(
  failed: SimResult,
  options: ShrinkOptions,
): { disabled: Set<number>; enabled: Fault[] } {
  const check = failed.failure?.check;
  const disabled = new Set<number>();
  let runs = 0;
  for (const fault of failed.faults) {
    if (runs >= SHRINK_RUNS_MAX) break;
    disabled.add(fault.index);
    runs++;
    const result = runSimulation({ seed: failed.seed, ...options, disabledFaults: disabled });
    if (result.failure?.check !== check) disabled.delete(fault.index);
  }
  return { disabled, enabled: failed.faults.filter((fault) => !disabled.has(fault.index)) };
}

export function replayCommand(
  seed: number,
  options: { ticks?: number; canary?: Canary; disabledFaults?: ReadonlySet<number> },
): string {
  const parts = [`bun tests/sim/run.ts --seed ${seed}`];
  if (options.ticks !== undefined) parts.push(`--ticks ${options.ticks}`);
  if (options.canary) parts.push(`--canary ${options.canary}`);
  if (options.disabledFaults && options.disabledFaults.size > 0) {
    parts.push(`--disable ${[...options.disabledFaults].sort((a, b) => a - b).join(",")}`);
  }
  parts.push("--trace");
  return parts.join(" ");
}

/** Shrinks a failing driver run the same way (each replay is a whole async run). */
export async function shrinkDriver(
  failed: DriverSimResult,
  options: { durationMs?: number; canary?: DriverCanary },
): Promise<{ disabled: Set<number>; enabled: DriverFault[] }> {
  const check = failed.failure?.check;
  const disabled = new Set<number>();
  let runs = 0;
  for (const fault of failed.faults) {
    if (runs >= SHRINK_RUNS_MAX) break;
    disabled.add(fault.index);
    runs++;
    const result = await runDriverSimulation({
      seed: failed.seed,
      ...options,
      disabledFaults: disabled,
    });
    if (result.failure?.check !== check) disabled.delete(fault.index);
  }
  return { disabled, enabled: failed.faults.filter((fault) => !disabled.has(fault.index)) };
}

export function driverReplayCommand(
  seed: number,
  options: { durationMs?: number; canary?: DriverCanary; disabledFaults?: ReadonlySet<number> },
): string {
  const parts = [`bun tests/sim/run.ts --driver --seed ${seed}`];
  if (options.durationMs !== undefined) parts.push(`--ms ${options.durationMs}`);
  if (options.canary) parts.push(`--canary ${options.canary}`);
  if (options.disabledFaults && options.disabledFaults.size > 0) {
    parts.push(`--disable ${[...options.disabledFaults].sort((a, b) => a - b).join(",")}`);
  }
  parts.push("--trace");
  return parts.join(" ");
}

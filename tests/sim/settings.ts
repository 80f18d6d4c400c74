/**
 * @module How much the simulator tests run. The defaults are the CI tier; environment variables
 * scale it up for a chaos run, e.g. `SIM_SEEDS=5000 SIM_FRESH=1000 SIM_TICKS=50000`.
 *
 * - SIM_SEEDS: fixed seeds 1..N of the Raft core's simulator (default 300)
 * - SIM_FRESH: extra random seeds, printed so a failure can be replayed (default 50)
 * - SIM_TICKS: ticks of fault phase per core seed (default 12000; the liveness phase follows)
 * - SIM_CANARY_SEEDS: seeds a canary may need before it counts as missed (default 200)
 * - SIM_DRIVER_SEEDS: fixed seeds 1..N of the driver simulator (default 2000)
 * - SIM_DRIVER_FRESH: extra random driver seeds, printed (default 50)
 * - SIM_DRIVER_MS: virtual milliseconds of fault phase per driver seed (default 3500)
 */
import process from "node:process";

function count(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a count, got ${raw}`);
  return value;
}

export const SIM_SEEDS = count("SIM_SEEDS", 300);
export const SIM_FRESH = count("SIM_FRESH", 50);
export const SIM_TICKS = count("SIM_TICKS", 12_000);
export const SIM_CANARY_SEEDS = count("SIM_CANARY_SEEDS", 200);
export const SIM_DRIVER_SEEDS = count("SIM_DRIVER_SEEDS", 2000);
export const SIM_DRIVER_FRESH = count("SIM_DRIVER_FRESH", 50);
export const SIM_DRIVER_MS = count("SIM_DRIVER_MS", 3500);

/** A generous wall-clock budget for `seeds` runs of the core (bun:test needs one per test). */
export function budgetMs(seeds: number): number {
  return 60_000 + seeds * (SIM_TICKS / 1000) * 100;
}

/** The same for the driver simulator, whose seeds cost more per simulated second. */
export function driverBudgetMs(seeds: number): number {
  return 60_000 + seeds * (SIM_DRIVER_MS / 1000) * 200;
}

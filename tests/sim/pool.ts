/**
 * @module Runs simulator seeds on worker threads, one per core (at most WORKERS_MAX), so a CI
 * run uses the whole machine. Results come back in seed order whatever the threads' timing,
 * so what a test reports does not depend on scheduling. A job runs either the Raft core's
 * simulator (world.ts) or the driver simulator (driver_world.ts).
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { Canary } from "../../lib/cluster/raft.ts";
import type { DriverCanary } from "../../lib/cluster/replica.ts";
import type { SimFailure } from "./world.ts";

const WORKERS_MAX = 4;

export type SeedJob =
  | {
    readonly mode?: "core";
    readonly seed: number;
    readonly ticks?: number;
    readonly canary?: Canary;
  }
  | {
    readonly mode: "driver";
    readonly seed: number;
    /** Virtual milliseconds of the fault phase. */
    readonly durationMs?: number;
    readonly canary?: DriverCanary;
  };

export interface SeedOutcome {
  readonly seed: number;
  readonly failure?: SimFailure;
  /** Counts of what the run did (elections, commits, acked, ...). */
  readonly stats: Readonly<Record<string, number>>;
  readonly recent: readonly string[];
}

export function workerCount(): number {
  return Math.max(1, Math.min(WORKERS_MAX, availableParallelism()));
}

/**
 * Runs `jobs` in batches of one job per worker; after each batch, stops early when
 * `stop(outcomes so far)` says so. Returns the outcomes of every job run, in job order.
 */
export async function runSeeds(
  jobs: readonly SeedJob[],
  stop: (outcomes: readonly SeedOutcome[]) => boolean = () => false,
): Promise<SeedOutcome[]> {
  const workers = Array.from(
    { length: Math.min(workerCount(), Math.max(1, jobs.length)) },
    () => new Worker(new URL("./worker.ts", import.meta.url)),
  );
  const outcomes: SeedOutcome[] = [];
  try {
    for (let start = 0; start < jobs.length; start += workers.length) {
      const batch = jobs.slice(start, start + workers.length);
      outcomes.push(...await Promise.all(batch.map((job, index) => ask(workers[index], job))));
      if (stop(outcomes)) break;
    }
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()));
  }
  return outcomes;
}

function ask(worker: Worker, job: SeedJob): Promise<SeedOutcome> {
  return new Promise((resolve, reject) => {
    const onMessage = (outcome: SeedOutcome) => {
      worker.off("error", onError);
      resolve(outcome);
    };
    const onError = (error: Error) => {
      worker.off("message", onMessage);
      reject(error);
    };
    worker.once("message", onMessage);
    worker.once("error", onError);
    worker.postMessage(job);
  });
}

/** @module Worker thread body for pool.ts: runs one simulator seed per message. */
import { parentPort } from "node:worker_threads";
import { runDriverSimulation } from "./driver_world.ts";
import type { SeedJob, SeedOutcome } from "./pool.ts";
import { runSimulation } from "./world.ts";

parentPort!.on("message", async (job: SeedJob) => {
  const result = job.mode === "driver" ? await runDriverSimulation(job) : runSimulation(job);
  const outcome: SeedOutcome = {
    seed: result.seed,
    ...(result.failure ? { failure: result.failure } : {}),
    stats: result.stats,
    recent: result.failure ? result.recent.slice(-40) : [],
  };
  parentPort!.postMessage(outcome);
});

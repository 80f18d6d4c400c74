/**
 * @module What a 3-node cluster costs as its partition count grows (issue 14): idle CPU of the
 * whole cluster with N partition groups (one message put in each, then nothing), and how long a
 * new topic's first put takes to be acknowledged. Three `dist/metaq serve` processes on one
 * machine with default Raft timing; CPU from /proc/<pid>/stat over an idle window.
 *
 *   bun bench/cluster_scale.ts [--groups 1,300,1500,3000] [--idle-seconds 10] [--topics 50]
 *                              [--binary dist/metaq]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { MetaqClient } from "../lib/client/client.ts";
import { killAllNow, startMetaqCluster, stopAll } from "./servers.ts";

const { values } = parseArgs({
  options: {
    groups: { type: "string", default: "1,300,1500,3000" },
    "idle-seconds": { type: "string", default: "10" },
    topics: { type: "string", default: "50" },
    binary: { type: "string", default: "dist/metaq" },
  },
});
const groupCounts = values.groups!.split(",").map(Number);
const idleSeconds = Number(values["idle-seconds"]);
const topicCount = Number(values.topics);
const binary = path.resolve(values.binary!);
/** Topics of up to this many partitions carry the groups (few topics, so few config lookups). */
const PARTITIONS_PER_TOPIC = 500;
const CLOCK_TICKS = 100; // USER_HZ on Linux

process.on("exit", killAllNow);
process.on("SIGINT", () => process.exit(130));

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

/**
 * One put, sent again while the group is still electing its first leader: creating thousands
 * of groups at once keeps elections busy for a while.
 */
async function putRetrying(client: MetaqClient, topic: string, partition: number): Promise<void> {
  for (let attempt = 1;; attempt++) {
    try {
      await client.put(topic, partition, { payload: new TextEncoder().encode("x") });
      return;
    } catch (error) {
      const status = (error as { status?: number }).status;
      // 503: no leader yet; 500: the leader changed under the put (its outcome unknown; a
      // second copy of "x" does not matter here, the group exists either way).
      if ((status !== 503 && status !== 500) || attempt >= 50) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

async function measure(groups: number): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-scale-"));
  const partitions = Math.min(groups, PARTITIONS_PER_TOPIC);
  const cluster = await startMetaqCluster({
    binary,
    dir,
    args: ["--partitions", String(partitions)],
  });
  try {
    const client = new MetaqClient({
      brokers: cluster.ports.map((port) => `127.0.0.1:${port}`),
      requestTimeoutMs: 30_000,
    });
    const started = performance.now();
    // Creates the groups: one put in each partition of ceil(groups / partitions) topics.
    const puts: Promise<unknown>[] = [];
    for (let n = 0; n < groups; n++) {
      const topic = `load${Math.floor(n / partitions)}`;
      puts.push(putRetrying(client, topic, n % partitions));
      if (puts.length >= 64) await Promise.all(puts.splice(0));
    }
    await Promise.all(puts);
    const createSeconds = (performance.now() - started) / 1000;
    // Let elections and catch-up finish, then measure a quiet window.
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const before = cluster.pids.map(cpuSeconds);
    const windowStart = performance.now();
    await new Promise((resolve) => setTimeout(resolve, idleSeconds * 1000));
    const elapsed = (performance.now() - windowStart) / 1000;
    const used = cluster.pids.map((pid, index) => cpuSeconds(pid) - before[index]);
    const percent = (used.reduce((a, b) => a + b, 0) / elapsed) * 100;
    // Printed at once: the first puts below can take long on a build that struggles.
    console.error(`${groups} groups: idle ${Math.round(percent * 10) / 10}% of one core`);

    // New topics: the first put of each, one at a time.
    const latencies: number[] = [];
    // Each timed until acknowledged, answers "no leader yet" included (an older build under
    // thousands of groups gave some of them).
    for (let index = 0; index < topicCount; index++) {
      const t0 = performance.now();
      await putRetrying(client, `fresh${index}`, 0);
      latencies.push(performance.now() - t0);
    }
    latencies.sort((a, b) => a - b);
    client.close();
    console.log(
      JSON.stringify({
        groups,
        createSeconds: Math.round(createSeconds * 10) / 10,
        idleCpuPercentOfOneCore: Math.round(percent * 10) / 10,
        perNodeCpuPercent: used.map((seconds) => Math.round((seconds / elapsed) * 1000) / 10),
        firstPutMs: {
          p50: Math.round(percentile(latencies, 0.5) * 10) / 10,
          p99: Math.round(percentile(latencies, 0.99) * 10) / 10,
          max: Math.round(latencies[latencies.length - 1] * 10) / 10,
        },
      }),
    );
  } finally {
    await cluster.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

try {
  for (const groups of groupCounts) await measure(groups);
} finally {
  await stopAll();
}

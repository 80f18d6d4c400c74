/**
 * @module Side by side (issues #8 and #20): the same workloads against `dist/metaq`, NATS
 * JetStream 2.10, Redis Streams and the original MetaQ broker (Java, when
 * bench/install_metaq_java.sh built it) on this machine, one table with absolute figures, each row's
 * durability, the best peer and the ratio metaq/best per row. Each workload runs in its own client process (bench/client.ts) against a fresh server
 * in a temp dir; every run has a message cap and a time cap, and the whole comparison has a
 * global timeout. Only processes started here are stopped, by PID. `bench/run.sh` installs the
 * peers and builds metaq first; this file expects them.
 *
 *   bun bench/compare.ts [--quick] [--only metaq,nats,redis,metaq-java] [--sizes 100,1024] [--repeat N]
 *                        [--timeout SECONDS] [--out FILE.md] [--json FILE.json]
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { connect as natsConnect, StorageType } from "nats";
import { makePayload } from "../lib/bench/load.ts";
import { MetaqClient } from "../lib/client/client.ts";
import { BrokerConnection } from "../lib/client/connection.ts";
import { metaqChecksum } from "../lib/crc32.ts";
import { describeError } from "../lib/errors.ts";
import { encodePut } from "../lib/protocol/encoder.ts";
import type { LatencySummary } from "../lib/bench/histogram.ts";
import type { System, Workload, WorkloadResult } from "./client.ts";
import {
  busyPercent,
  cpuTicks,
  fileBytes,
  loadAverage,
  machineFacts,
  memoryOf,
  processCpuMicros,
} from "./machine.ts";
import {
  freePort,
  killAllNow,
  metaqHasReplication,
  metaqJavaHome,
  natsBinary,
  type ServerHandle,
  spawnMetaqJava,
  spawnTracked,
  startMetaq,
  startMetaqCluster,
  startMetaqJava,
  startNats,
  startNatsCluster,
  startRedis,
  startZooKeeper,
  stopAll,
  stopChild,
  track,
  versionOf,
  waitForPort,
} from "./servers.ts";

const ROOT = path.resolve(import.meta.dirname ?? ".", "..");
const CLIENT = path.join(ROOT, "bench", "client.ts");

interface Plan {
  readonly quick: boolean;
  readonly systems: readonly System[];
  readonly sizes: readonly number[];
  /** Messages per produce run (and its time cap). */
  readonly messages: number;
  readonly produceMs: number;
  /** Backlog consumed, and the consume time cap. */
  readonly backlog: number;
  readonly consumeMs: number;
  readonly latencyMs: number;
  /** Time cap of each one-at-a-time (window 1) durable produce run. */
  readonly oneAtATimeMs: number;
  readonly rate: number;
  readonly window: number;
  readonly repeat: number;
  readonly startupRuns: number;
  readonly timeoutS: number;
  readonly binary: string;
  readonly work: string;
  /** Only rows 7, 7b, 7p and 7c/7cp (the 3-node runs and the R=1 broker beside them). */
  readonly replicatedOnly: boolean;
}

/** One measured cell: the number the ratio uses, and the text shown. */
interface Cell {
  readonly value?: number;
  readonly text: string;
}

type Cells = Map<string, Cell>;
const key = (row: string, size: number | string, system: System) => `${row}|${size}|${system}`;

/** What "durable" means in a row, the same words for every system (see DURABILITY). */
type Durability = "fast" | "fsync" | "fastR3" | "fsyncR3" | "defaults" | "none";

interface Row {
  readonly id: string;
  readonly label: string;
  /** "higher" when more is better (throughput); "lower" for latency, memory and time. */
  readonly better: "higher" | "lower";
  readonly perSize: boolean;
  readonly durability: Durability;
  /** A metaq-only variant of another row: the peers' cells are that row's (same runs). */
  readonly peersFrom?: string;
}

const ROWS: readonly Row[] = [
  {
    id: "produce",
    label: "1. acked produce, fastest mode, msgs/s",
    better: "higher",
    perSize: true,
    durability: "fast",
  },
  {
    id: "produceBatched",
    label: "1p. the same, metaq through its Producer (batched put); peers as in row 1",
    better: "higher",
    perSize: true,
    durability: "fast",
    peersFrom: "produce",
  },
  {
    id: "durable",
    label: "2. produce, fsync before every ack, msgs/s",
    better: "higher",
    perSize: true,
    durability: "fsync",
  },
  {
    id: "durableBatched",
    label: "2p. the same, metaq through its Producer (batched put); peers as in row 2",
    better: "higher",
    perSize: true,
    durability: "fsync",
    peersFrom: "durable",
  },
  {
    id: "oneAtATime",
    label: "2w. produce, fsync before every ack, one at a time (window 1), msgs/s",
    better: "higher",
    perSize: true,
    durability: "fsync",
  },
  {
    id: "consume",
    label: "3. consume a backlog, msgs/s",
    better: "higher",
    perSize: true,
    durability: "fast",
  },
  {
    id: "consumeCpu",
    label: "3c. server CPU per consumed message",
    better: "lower",
    perSize: true,
    durability: "fast",
  },
  {
    id: "latency",
    label: "4. end-to-end latency at 5k msgs/s, p50 / p99 / p99.9 (ratio on p99)",
    better: "lower",
    perSize: true,
    durability: "fast",
  },
  {
    id: "ackLatency",
    label: "4a. ack latency at 5k msgs/s, p50 / p99 / p99.9",
    better: "lower",
    perSize: true,
    durability: "fast",
  },
  {
    id: "latencyDurable",
    label: "4b. end-to-end latency at 5k msgs/s, p50 / p99 / p99.9",
    better: "lower",
    perSize: true,
    durability: "fsync",
  },
  {
    id: "ackLatencyDurable",
    label: "4c. ack latency at 5k msgs/s, p50 / p99 / p99.9",
    better: "lower",
    perSize: true,
    durability: "fsync",
  },
  {
    id: "idleRss",
    label: "5a. idle server RSS",
    better: "lower",
    perSize: false,
    durability: "fast",
  },
  {
    id: "rss",
    label: "5b. peak server RSS during the consume",
    better: "lower",
    perSize: true,
    durability: "fast",
  },
  {
    id: "startup",
    label: "6. start to first acked put (median)",
    better: "lower",
    perSize: false,
    durability: "defaults",
  },
  {
    id: "binary",
    label: "6b. server binary size",
    better: "lower",
    perSize: false,
    durability: "none",
  },
  {
    id: "replicated",
    label: "7. acked produce, 3 nodes R=3, fastest mode, msgs/s",
    better: "higher",
    perSize: true,
    durability: "fastR3",
  },
  {
    id: "replicatedDurable",
    label: "7b. acked produce, 3 nodes R=3, fsync before ack, msgs/s",
    better: "higher",
    perSize: true,
    durability: "fsyncR3",
  },
  {
    id: "replicatedBatched",
    label: "7p. the same, metaq through its Producer (batched put); peers as in row 7b",
    better: "higher",
    perSize: true,
    durability: "fsyncR3",
    peersFrom: "replicatedDurable",
  },
  {
    id: "replicationCost",
    label: "7c. metaq R=3 / R=1, fsync before ack, plain puts (7b / an R=1 broker taking turns)",
    better: "higher",
    perSize: true,
    durability: "fsyncR3",
  },
  {
    id: "replicationCostBatched",
    label: "7cp. metaq R=3 / R=1, fsync before ack, through the Producer (7p / R=1 taking turns)",
    better: "higher",
    perSize: true,
    durability: "fsyncR3",
  },
];

/** The durability each row's servers run with, per system. */
const DURABILITY: Record<Durability, string> = {
  fast:
    "ack before fsync: metaq and MetaQ (Java) fsync every 1 s, NATS default sync (2 min), Redis everysec",
  fsync:
    "fsync before ack: metaq and MetaQ (Java) group commit, NATS sync_interval always, Redis always",
  fastR3: "R=3, ack before fsync: metaq ack=quorum + fsync every 1 s, NATS default sync",
  fsyncR3: "R=3, fsync before ack: metaq ack=quorum + fsync=always, NATS sync_interval always",
  defaults:
    "each server's defaults: metaq and MetaQ (Java) fsync before ack, NATS default sync, Redis everysec",
  none: "-",
};

const SYSTEM_NAMES: Record<System, string> = {
  metaq: "metaq",
  nats: "NATS JetStream",
  redis: "Redis Streams",
  "metaq-java": "original MetaQ (Java)",
};

const log = (line: string) => process.stderr.write(`[bench ${clock()}] ${line}\n`);
const clock = () => new Date().toISOString().slice(11, 19);

async function main(): Promise<number> {
  const plan = readPlan();
  fs.mkdirSync(plan.work, { recursive: true });
  const stopTimer = setTimeout(() => {
    log(`global timeout of ${plan.timeoutS} s reached: stopping everything this run started`);
    killAllNow();
    removeWork(plan);
    process.exit(124);
  }, plan.timeoutS * 1000);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      killAllNow();
      removeWork(plan);
      process.exit(130);
    });
  }
  const cells: Cells = new Map();
  const conditions: string[] = [];
  const started = new Date();
  const commit = commitOf(); // at the start: the tree may change while the run goes on
  const loadBefore = loadAverage();
  try {
    if (!plan.replicatedOnly) {
      for (const size of plan.sizes) await runSize(plan, size, cells, conditions);
      for (const system of plan.systems) await runStartup(plan, system, cells);
      recordBinarySizes(plan, cells);
    }
    await runReplicated(plan, cells, conditions);
  } finally {
    clearTimeout(stopTimer);
    await stopAll();
    removeWork(plan);
  }
  const report = renderReport(plan, {
    cells,
    conditions,
    started,
    commit,
    loadBefore,
    loadAfter: loadAverage(),
  });
  console.log(report);
  const { values } = parseArgs({ args: process.argv.slice(2), options: OPTIONS });
  if (values.out) fs.writeFileSync(values.out, `${report}\n`);
  if (values.json) {
    fs.writeFileSync(values.json, JSON.stringify(Object.fromEntries(cells), null, 2));
  }
  return 0;
}

/** Deletes the run's temp dir (servers' data), unless METAQ_BENCH_KEEP is set. */
function removeWork(plan: Plan): void {
  if (!process.env.METAQ_BENCH_KEEP) fs.rmSync(plan.work, { recursive: true, force: true });
}

const OPTIONS = {
  quick: { type: "boolean" },
  only: { type: "string" },
  sizes: { type: "string" },
  repeat: { type: "string" },
  timeout: { type: "string" },
  out: { type: "string" },
  json: { type: "string" },
  binary: { type: "string" },
  messages: { type: "string" },
  "replicated-only": { type: "boolean" },
} as const;

function readPlan(): Plan {
  const { values } = parseArgs({ args: process.argv.slice(2), options: OPTIONS });
  const quick = values.quick === true;
  const messages = values.messages ? Number(values.messages) : quick ? 200_000 : 1_000_000;
  const everyone = `metaq,nats,redis${metaqJavaHome() ? ",metaq-java" : ""}`;
  const systems = (values.only ?? everyone).split(",") as System[];
  for (const system of systems) {
    if (!(system in SYSTEM_NAMES)) throw new Error(`Cannot bench unknown system '${system}'`);
  }
  if (systems.includes("metaq-java") && !metaqJavaHome()) {
    throw new Error(
      "Cannot bench metaq-java: METAQ_JAVA_HOME does not name a build of " +
        "bench/install_metaq_java.sh (bench/run.sh sets it)",
    );
  }
  return {
    quick,
    systems,
    sizes: (values.sizes ?? "100,1024").split(",").map(Number),
    messages,
    produceMs: quick ? 6_000 : 30_000,
    backlog: messages,
    consumeMs: quick ? 20_000 : 60_000,
    latencyMs: quick ? 3_000 : 10_000,
    oneAtATimeMs: quick ? 3_000 : 10_000,
    rate: 5000,
    window: 1024,
    repeat: Number(values.repeat ?? 3),
    startupRuns: 3,
    timeoutS: Number(values.timeout ?? (quick ? 1500 : 5400)),
    binary: values.binary ?? path.join(ROOT, "dist", "metaq"),
    replicatedOnly: values["replicated-only"] === true,
    work: fs.mkdtempSync(path.join(os.tmpdir(), "metaq-compare-")),
  };
}

// ---------------------------------------------------------------- one size, every system

/**
 * One size: every system's server runs at once (idle ones cost nothing), and each workload runs
 * on the systems in turn, repeat after repeat with the order rotated, so a burst of load from
 * other processes lands on all of them rather than on one. The median run is kept.
 */
async function runSize(
  plan: Plan,
  size: number,
  cells: Cells,
  conditions: string[],
): Promise<void> {
  const others = await othersBusyPercent();
  log(`${size} B: fastest modes (load average ${loadAverage()}, others ${others}% busy)`);
  conditions.push(
    `${size} B: load average ${loadAverage()} at start; other processes kept ${others}% of the ` +
      "CPUs busy in the second before",
  );
  const fast = await startServers(
    plan,
    plan.systems,
    (system, dir) => startFastest(plan, system, dir),
    `fast-${size}`,
  );
  try {
    if (size === plan.sizes[0]) await recordIdleMemory(fast, cells);
    await warmUp(fast, size);
    const produced = await interleaved(plan, fast, "produce", (_system, attempt) => ({
      target: attempt === 0 ? `backlog${size}` : `produce${size}r${attempt}`,
      size,
      messages: plan.messages,
      capMs: plan.produceMs,
    }));
    for (const [system, runs] of produced) {
      cells.set(key("produce", size, system), throughputCell(median(runs)));
      await topUp(plan, fast.get(system)!, system, {
        target: `backlog${size}`,
        size,
        have: runs.find((run) => run.attempt === 0)?.messages ?? 0, // attempt 0 wrote the backlog
      });
    }
    await metaqBatchedRow(plan, fast, size, cells, "produceBatched");
    await consumeWithMemory(plan, fast, size, cells);
    await latencyRows(plan, fast, size, cells, { e2e: "latency", ack: "ackLatency" });
  } finally {
    await Promise.all([...fast.values()].map((server) => server.stop()));
    removeServerData(plan, `fast-${size}`);
  }
  await runDurable(plan, size, cells);
}

/** Rows 4 and 4a (or 4b and 4c): one open-loop run per repeat gives both e2e and ack latency. */
async function latencyRows(
  plan: Plan,
  servers: Map<System, ServerHandle>,
  size: number,
  cells: Cells,
  rows: { e2e: string; ack: string },
): Promise<void> {
  const latency = await interleaved(plan, servers, "latency", (_system, attempt) => ({
    target: `latency${size}r${attempt}`,
    size,
    capMs: plan.latencyMs,
  }));
  for (const [system, runs] of latency) {
    // The median by the row's own figure (p99), not by rate: every run sends at the same rate.
    cells.set(key(rows.e2e, size, system), latencyCell(medianBy(runs, (run) => run.latency)));
    const acked = runs.filter((run) => run.ackLatency !== undefined);
    cells.set(
      key(rows.ack, size, system),
      latencyCell(medianBy(acked, (run) => run.ackLatency!), (run) => run.ackLatency!),
    );
  }
}

/**
 * Rows 1p and 2p: metaq's produce through MetaqClient + Producer (puts queued in one turn leave as
 * one batched put), to topics of its own that are not kept (the backlog is row 1's).
 */
async function metaqBatchedRow(
  plan: Plan,
  servers: Map<System, ServerHandle>,
  size: number,
  cells: Cells,
  row: string,
): Promise<void> {
  const metaq = servers.get("metaq");
  if (!metaq) return;
  const runs = await interleaved(
    plan,
    new Map([["metaq" as System, metaq]]),
    "produce",
    (_system, attempt) => ({
      target: `${row}${size}r${attempt}`,
      size,
      messages: plan.messages,
      capMs: plan.produceMs,
      metaqApi: "producer",
    }),
  );
  cells.set(key(row, size, "metaq"), throughputCell(median(runs.get("metaq"))));
}

/** Row 5a: each server's resident memory a second after it started, before any load. */
async function recordIdleMemory(servers: Map<System, ServerHandle>, cells: Cells): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 1000));
  for (const [system, server] of servers) {
    const rssKiB = memoryOf(server.pid).rssKiB;
    cells.set(key("idleRss", "-", system), { value: rssKiB, text: mebibytes(rssKiB) });
  }
}

async function startServers(
  plan: Plan,
  systems: readonly System[],
  start: (system: System, dir: string) => Promise<ServerHandle>,
  label: string,
): Promise<Map<System, ServerHandle>> {
  const servers = new Map<System, ServerHandle>();
  try {
    for (const system of systems) {
      servers.set(system, await start(system, path.join(plan.work, `${label}-${system}`)));
    }
  } catch (error) {
    await Promise.all([...servers.values()].map((server) => server.stop()));
    throw error;
  }
  return servers;
}

/**
 * Deletes the data of servers that have stopped: directories named `label` or `label-...` under
 * the run's work dir. A full run writes ~50 GB otherwise (1M messages per run, three copies at
 * R=3), and a disk that fills fails the last rows (it did once, 2026-12-07). METAQ_BENCH_KEEP=1
 * keeps everything, as it keeps the work dir.
 */
function removeServerData(plan: Plan, label: string): void {
  if (process.env.METAQ_BENCH_KEEP) return;
  for (const entry of fs.readdirSync(plan.work)) {
    if (entry === label || entry.startsWith(`${label}-`)) {
      fs.rmSync(path.join(plan.work, entry), { recursive: true, force: true });
    }
  }
}

/** Share of the CPUs busy during one second in which this run does nothing: the others' load. */
async function othersBusyPercent(): Promise<number> {
  const from = cpuTicks();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  return busyPercent(from);
}

function startFastest(plan: Plan, system: System, dir: string): Promise<ServerHandle> {
  if (system === "metaq") return startMetaq({ binary: plan.binary, dir, flush: "threshold" });
  if (system === "metaq-java") return startMetaqJava({ home: javaHome(), dir, flush: "threshold" });
  if (system === "nats") return startNats({ dir, sync: "default" });
  return startRedis({ dir, fsync: "everysec" });
}

function startDurable(plan: Plan, system: System, dir: string): Promise<ServerHandle> {
  if (system === "metaq") return startMetaq({ binary: plan.binary, dir, flush: "group" });
  if (system === "metaq-java") return startMetaqJava({ home: javaHome(), dir, flush: "group" });
  if (system === "nats") return startNats({ dir, sync: "always" });
  return startRedis({ dir, fsync: "always" });
}

/**
 * Rows 2, 2w, 4b and 4c: every system fsyncs before it acknowledges (metaq group commit, NATS
 * `sync_interval: always`, Redis `appendfsync always`). Row 2w (one put at a time) runs at the
 * first size only.
 */
async function runDurable(plan: Plan, size: number, cells: Cells): Promise<void> {
  log(`${size} B: fsync before ack`);
  const servers = await startServers(
    plan,
    plan.systems,
    (system, dir) => startDurable(plan, system, dir),
    `durable-${size}`,
  );
  try {
    await warmUp(servers, size);
    const produced = await interleaved(plan, servers, "produce", (_system, attempt) => ({
      target: `durable${size}r${attempt}`,
      size,
      messages: plan.messages,
      capMs: plan.produceMs,
    }));
    for (const [system, runs] of produced) {
      cells.set(key("durable", size, system), throughputCell(median(runs)));
    }
    await metaqBatchedRow(plan, servers, size, cells, "durableBatched");
    if (size === plan.sizes[0]) {
      // The window-1 path (one small batch per sync, synced on the event loop) is not the one the
      // pipelined warm-up compiled: without its own warm-up the first measured run pays Bun's JIT
      // (~0.4 s of compiler threads in the first seconds) and the Java broker's HotSpot alone.
      await warmUp(servers, size, {
        messages: 1_000_000,
        capMs: plan.quick ? 1_000 : 3_000,
        window: 1,
      });
      const single = await interleaved(plan, servers, "produce", (_system, attempt) => ({
        target: `single${size}r${attempt}`,
        size,
        messages: plan.messages,
        capMs: plan.oneAtATimeMs,
        window: 1,
      }));
      for (const [system, runs] of single) {
        cells.set(key("oneAtATime", size, system), throughputCell(median(runs)));
      }
    }
    await latencyRows(plan, servers, size, cells, {
      e2e: "latencyDurable",
      ack: "ackLatencyDurable",
    });
  } finally {
    await Promise.all([...servers.values()].map((server) => server.stop()));
    removeServerData(plan, `durable-${size}`);
  }
}

/** Messages (and time cap) of the unmeasured produce each fresh server gets before its rows. */
const WARM_UP = { messages: 50_000, capMs: 5_000 };

/**
 * Puts `load` (`WARM_UP` unless a row warms its own path) to a topic of their own on every
 * server, unmeasured, then drops it: a server that has just started runs its put path
 * interpreted (the Java broker until HotSpot's compilers have seen ~10k calls; Bun's
 * JavaScriptCore tiers up too), which the first measured run would otherwise pay alone.
 * Failures are logged; the rows run anyway.
 */
async function warmUp(
  servers: Map<System, ServerHandle>,
  size: number,
  load: { messages: number; capMs: number; window?: number } = WARM_UP,
): Promise<void> {
  for (const [system, server] of servers) {
    const flags = { target: `warmup${size}${load.window === 1 ? "w1" : ""}`, size, ...load };
    try {
      await runClient(system, "produce", server.ports, flags);
      await runClient(system, "drop", server.ports, { ...flags, capMs: 10_000 });
    } catch (error) {
      log(`  ${system} warm-up ${size} B failed: ${describeError(error)}`);
    }
  }
}

/** Fills the backlog to `plan.backlog` messages (not measured: the produce row already was). */
async function topUp(
  plan: Plan,
  server: ServerHandle,
  system: System,
  backlog: { target: string; size: number; have: number },
): Promise<void> {
  const missing = plan.backlog - backlog.have;
  if (missing <= 0) return;
  log(`${system}: filling the backlog with ${missing} more messages`);
  const filled = await runClient(system, "produce", server.ports, {
    target: backlog.target,
    size: backlog.size,
    messages: missing,
    capMs: plan.consumeMs * 2,
  });
  if (filled.messages < missing) {
    throw new Error(`Cannot fill ${system}'s backlog: ${filled.messages} of ${missing} sent`);
  }
}

/** Row 3 and 5: read the backlog (median of the repeats) while sampling the server's RSS. */
async function consumeWithMemory(
  plan: Plan,
  servers: Map<System, ServerHandle>,
  size: number,
  cells: Cells,
): Promise<void> {
  const memory = new Map<System, { peakRssKiB: number; hwmKiB: number }>();
  const consumed = await interleaved(
    plan,
    servers,
    "consume",
    () => ({
      target: `backlog${size}`,
      size,
      messages: plan.backlog,
      capMs: plan.consumeMs,
    }),
    plan.repeat,
    async (system, run) => {
      const pid = servers.get(system)!.pid;
      const sampler = sampleMemory(pid);
      const cpuBefore = processCpuMicros(pid);
      try {
        const result = await run();
        const cpuAfter = processCpuMicros(pid);
        const serverCpuUs = cpuBefore === undefined || cpuAfter === undefined
          ? undefined
          : cpuAfter - cpuBefore;
        return { ...result, serverCpuUs };
      } finally {
        const sample = sampler.stop();
        const before = memory.get(system);
        memory.set(system, {
          peakRssKiB: Math.max(before?.peakRssKiB ?? 0, sample.peakRssKiB),
          hwmKiB: sample.hwmKiB,
        });
      }
    },
  );
  for (const [system, runs] of consumed) {
    const result = median(runs);
    const cell = throughputCell(result);
    cells.set(key("consume", size, system), {
      ...cell,
      text: `${cell.text}${result ? ` (${Math.round(result.megabytesPerSecond)} MB/s)` : ""}`,
    });
    const cpuUs = result?.serverCpuUs;
    cells.set(
      key("consumeCpu", size, system),
      cpuUs === undefined || !result || result.messages === 0 ? { text: "-" } : {
        value: cpuUs / result.messages,
        text: `${(cpuUs / result.messages).toFixed(2)} us (${(cpuUs / 1000).toFixed(0)} ms)`,
      },
    );
    const sample = memory.get(system)!;
    cells.set(key("rss", size, system), {
      value: sample.peakRssKiB,
      text: `${mebibytes(sample.peakRssKiB)} (VmHWM ${mebibytes(sample.hwmKiB)})`,
    });
  }
}

/**
 * Runs `workload` `runs` times on every system, rotating the order each round; returns each
 * system's successful runs in the order they ran (take `median` of them for the table).
 */
async function interleaved(
  plan: Plan,
  servers: Map<System, ServerHandle>,
  workload: Workload,
  flagsFor: (system: System, attempt: number) => ClientFlags,
  runs = plan.repeat,
  wrap: Wrap = (_system, run) => run(),
): Promise<Map<System, Run[]>> {
  const systems = [...servers.keys()];
  const results = new Map<System, Run[]>(systems.map((system) => [system, []]));
  for (let attempt = 0; attempt < runs; attempt++) {
    const order = systems.map((_, index) => systems[(index + attempt) % systems.length]);
    for (const system of order) {
      const flags = { ...flagsFor(system, attempt), consumer: `bench${attempt}` };
      try {
        const result = await wrap(
          system,
          (ports) => runClient(system, workload, ports ?? servers.get(system)!.ports, flags),
          flags,
        );
        log(`  ${system} ${workload} ${flags.size} B: ${summary(workload, result)}`);
        results.get(system)!.push({ ...result, attempt });
        if (workload === "produce" && attempt > 0) {
          // Repeats write to their own stream; drop it so the memory row sees one backlog.
          await runClient(system, "drop", servers.get(system)!.ports, { ...flags, capMs: 10_000 });
        }
      } catch (error) {
        log(`  ${system} ${workload} ${flags.size} B failed: ${describeError(error)}`);
      }
    }
  }
  return results;
}

/** Runs around one client run (sampling memory, choosing the ports it talks to). */
type Wrap = (
  system: System,
  run: (ports?: number[]) => Promise<WorkloadResult>,
  flags: ClientFlags,
) => Promise<MeasuredResult>;

/** A client's result plus what was measured around it. */
type MeasuredResult = WorkloadResult & {
  /** Server CPU (user + system) used during the run, in microseconds. */
  readonly serverCpuUs?: number;
};

/** One workload run, numbered in the order of the repeats. */
type Run = MeasuredResult & { readonly attempt: number };

/** The run with the median rate (undefined when every run failed). */
function median(results: readonly Run[] | undefined): Run | undefined {
  if (!results) return undefined;
  const sorted = [...results].sort((a, b) => a.messagesPerSecond - b.messagesPerSecond);
  return sorted[Math.floor(sorted.length / 2)];
}

/** The run with the median p99 of the chosen latency (undefined when every run failed). */
function medianBy(
  results: readonly Run[] | undefined,
  latencyOf: (run: Run) => LatencySummary,
): Run | undefined {
  if (!results || results.length === 0) return undefined;
  const sorted = [...results].sort((a, b) => latencyOf(a).p99Us - latencyOf(b).p99Us);
  return sorted[Math.floor(sorted.length / 2)];
}

function summary(workload: Workload, result: WorkloadResult): string {
  const rate = `${Math.round(result.messagesPerSecond).toLocaleString("en-US")} msgs/s`;
  const latency = `p50 ${micros(result.latency.p50Us)} p99 ${micros(result.latency.p99Us)}`;
  const failures = result.failures > 0 ? `, ${result.failures} failed (${result.firstError})` : "";
  return `${result.messages} msgs, ${rate}${
    workload === "consume" ? "" : `, ${latency}`
  }${failures}`;
}

// ---------------------------------------------------------------- client processes

export interface ClientFlags {
  readonly target: string;
  readonly size: number;
  readonly messages?: number;
  readonly capMs: number;
  readonly replicas?: number;
  readonly consumer?: string;
  /** Sends in flight (default: the plan's window of 1024). */
  readonly window?: number;
  /** metaq's produce path (default `connection`: plain pipelined puts). */
  readonly metaqApi?: "connection" | "producer";
}

/** Runs bench/client.ts in its own process (Bun), killed if it outlives its cap by 60 s. */
export function runClient(
  system: System,
  workload: Workload,
  ports: number[],
  flags: ClientFlags,
): Promise<WorkloadResult> {
  const args = [
    CLIENT,
    system,
    workload,
    ...ports.flatMap((port) => ["--port", String(port)]),
    "--target",
    flags.target,
    "--size",
    String(flags.size),
    "--messages",
    String(flags.messages ?? 0),
    "--duration-ms",
    String(flags.capMs),
    "--replicas",
    String(flags.replicas ?? 1),
    "--consumer",
    flags.consumer ?? "bench",
    "--window",
    String(flags.window ?? 1024),
    "--metaq-api",
    flags.metaqApi ?? "connection",
  ];
  return new Promise((resolve, reject) => {
    const child = track(spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] }));
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (chunk) => (stdout += chunk));
    child.stderr!.on("data", (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), flags.capMs + 60_000);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      const line = stdout.trim().split("\n").pop() ?? "";
      if (code === 0 && line.startsWith("{")) return resolve(JSON.parse(line));
      reject(new Error(`client exited ${code ?? signal}: ${stderr.trim().slice(-500)}`));
    });
  });
}

function sampleMemory(pid: number): { stop(): { peakRssKiB: number; hwmKiB: number } } {
  let peakRssKiB = memoryOf(pid).rssKiB;
  const timer = setInterval(() => {
    peakRssKiB = Math.max(peakRssKiB, memoryOf(pid).rssKiB);
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      const last = memoryOf(pid);
      return { peakRssKiB: Math.max(peakRssKiB, last.rssKiB), hwmKiB: last.peakKiB };
    },
  };
}

// ---------------------------------------------------------------- startup

/** Time from spawning a server on an empty data dir to the ack of its first message. */
async function runStartup(plan: Plan, system: System, cells: Cells): Promise<void> {
  const times: number[] = [];
  for (let attempt = 0; attempt < plan.startupRuns; attempt++) {
    const dir = path.join(plan.work, `startup-${system}-${attempt}`);
    try {
      times.push(await startOnce(plan.binary, system, dir));
    } catch (error) {
      log(`startup of ${system} failed: ${describeError(error)}`);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  log(`startup ${system}: ${times.map((ms) => `${ms.toFixed(1)} ms`).join(", ")}`);
  cells.set(
    key("startup", "-", system),
    median === undefined ? { text: "failed" } : {
      value: median,
      text: `${median.toFixed(0)} ms${
        system === "metaq-java" ? " (its ZooKeeper started before, not timed)" : ""
      }`,
    },
  );
}

/**
 * Milliseconds from spawning `system` on the empty directory `dir` to the acknowledgement of its
 * first 100 B message (row 6; bench/startup.ts runs it alone). `binary` is metaq's.
 */
export async function startOnce(
  binary: string,
  system: System,
  dir: string,
  metaqArgs: readonly string[] = [],
): Promise<number> {
  fs.mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const logPath = path.join(dir, "server.log");
  const body = makePayload(100);
  // The Java broker needs a ZooKeeper before it starts: one is started first and not timed (a
  // MetaQ deployment has its ZooKeeper running already).
  const zk = system === "metaq-java"
    ? await startZooKeeper(path.join(dir, "zookeeper"))
    : undefined;
  const t0 = performance.now();
  const child = system === "metaq-java"
    ? spawnMetaqJava({ home: javaHome(), dir, port, zkPort: zk!.port, flush: "group" })
    : system === "metaq"
    ? spawnTracked(binary, [
      "serve",
      "--port",
      String(port),
      "--data",
      path.join(dir, "data"),
      "--no-http",
      ...metaqArgs,
    ], logPath)
    : system === "nats"
    ? spawnTracked(
      natsBinary(),
      ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir],
      logPath,
    )
    : spawnTracked("redis-server", [
      "--bind",
      "127.0.0.1",
      "--port",
      String(port),
      "--dir",
      dir,
      "--appendonly",
      "yes",
      "--save",
      "",
    ], logPath);
  try {
    await waitForPort(port, system === "metaq-java" ? 60_000 : 20_000);
    await firstMessage(system, port, body);
    return performance.now() - t0;
  } finally {
    await stopChild(child);
    if (zk) await stopChild(zk.child);
  }
}

async function firstMessage(
  system: System,
  port: number,
  body: Uint8Array,
  topic = "startup",
): Promise<void> {
  if (system === "metaq" || system === "metaq-java") {
    const connection = await BrokerConnection.connect({ host: "127.0.0.1", port });
    try {
      const opaque = connection.nextOpaque();
      const reply = await connection.request(
        encodePut({
          topic,
          partition: 0,
          flag: 0,
          checksum: metaqChecksum(body),
          opaque,
          body,
        }),
        opaque,
      );
      if (reply.kind !== "result" || reply.code !== 200) throw new Error("put refused");
    } finally {
      connection.close();
    }
  } else if (system === "nats") {
    const connection = await natsConnect({ servers: `127.0.0.1:${port}` });
    try {
      const manager = await connection.jetstreamManager();
      await manager.streams.add({
        name: "startup",
        subjects: ["startup"],
        storage: StorageType.File,
      });
      await connection.jetstream().publish("startup", body);
    } finally {
      await connection.close();
    }
  } else {
    const redis = new Redis({
      host: "127.0.0.1",
      port,
      lazyConnect: true,
      maxRetriesPerRequest: 1,
    });
    try {
      await redis.connect();
      await redis.xadd("startup", "*", "d", Buffer.from(body));
    } finally {
      redis.disconnect();
    }
  }
}

// ---------------------------------------------------------------- replication

/**
 * Rows 7, 7b and 7p: JetStream R=3 on a 3-node loopback cluster (default sync, then
 * `sync_interval: always`), metaq R=3 (`--fsync interval:1000`, then its defaults; 7p through
 * the Producer). Rows 7c and 7cp are metaq's R=3 fsync-before-ack rates over those of an R=1
 * broker measured in turn with the cluster (plain puts, then the Producer).
 */
async function runReplicated(plan: Plan, cells: Cells, conditions: string[]): Promise<void> {
  if (plan.systems.includes("nats")) {
    const natsModes = [
      { row: "replicated", sync: "default" as const },
      { row: "replicatedDurable", sync: "always" as const },
    ];
    for (const mode of natsModes) {
      log(`nats R=3, sync ${mode.sync}`);
      const cluster = await startNatsCluster({
        dir: path.join(plan.work, `nats-r3-${mode.sync}`),
        sync: mode.sync,
      });
      try {
        // The first stream waits out the cluster's JetStream meta-leader election.
        await natsReplicatedStream(cluster.ports, "replicated", 30_000);
        for (const size of replicatedSizes(plan)) {
          const results = await interleaved(
            plan,
            new Map([["nats" as System, cluster]]),
            "produce",
            (_system, attempt) => ({
              target: `replicated${size}r${attempt}`,
              size,
              messages: plan.messages,
              capMs: plan.produceMs,
              replicas: 3,
            }),
          );
          cells.set(key(mode.row, size, "nats"), throughputCell(median(results.get("nats"))));
        }
      } catch (error) {
        log(`nats R=3 (sync ${mode.sync}) failed: ${describeError(error)}`);
      } finally {
        await cluster.stop();
        removeServerData(plan, `nats-r3-${mode.sync}`);
      }
    }
  }
  if (!plan.systems.includes("metaq")) return;
  if (!metaqHasReplication(plan.binary)) {
    const text = "not yet available";
    for (const size of plan.sizes) {
      cells.set(key("replicated", size, "metaq"), { text });
      cells.set(key("replicatedDurable", size, "metaq"), { text });
    }
    conditions.push(
      "metaq R=3: this build has no `serve --node-id N --peers ...` yet; row 7 is NATS only",
    );
    return;
  }
  // Row 7 in the fastest mode (fsync once a second, as JetStream acks without fsync).
  await metaqReplicatedRows(plan, cells, {
    label: "replicated",
    args: ["--fsync", "interval:1000"],
    r3: { connection: "replicated" },
  });
  // Rows 7b and 7p with the defaults (a quorum has fsynced before the ack), and beside the
  // cluster an R=1 broker that fsyncs before its acks (row 2's), taking turns with it: 7c and
  // 7cp compare like with like, plain puts with plain puts and batches with batches, measured
  // under the same load.
  const r1 = await metaqReplicatedRows(plan, cells, {
    label: "replicatedDurable",
    args: [],
    r3: { connection: "replicatedDurable", producer: "replicatedBatched" },
    withR1: true,
  });
  for (const size of replicatedSizes(plan)) {
    const costs = [
      { row: "replicationCost", r3: "replicatedDurable", r1: r1.get(`connection|${size}`) },
      { row: "replicationCostBatched", r3: "replicatedBatched", r1: r1.get(`producer|${size}`) },
    ];
    for (const cost of costs) {
      const r3 = cells.get(key(cost.r3, size, "metaq"))?.value;
      if (r3 === undefined || cost.r1 === undefined || cost.r1 === 0) continue;
      cells.set(key(cost.row, size, "metaq"), {
        value: r3 / cost.r1,
        text: `${(r3 / cost.r1).toFixed(2)}x (${rateText(r3)} / ${rateText(cost.r1)})`,
      });
    }
  }
}

/**
 * One metaq 3-node cluster (`args` added to each node's command line) and, with `withR1`, a
 * single broker that fsyncs before its acks; every produce variant (plain puts, the Producer)
 * runs on each of them in turn, the order rotated each repeat. The R=3 medians go to the rows
 * named in `r3`; the R=1 medians are returned, keyed `api|size`.
 */
async function metaqReplicatedRows(
  plan: Plan,
  cells: Cells,
  mode: {
    label: string;
    args: readonly string[];
    r3: { connection: string; producer?: string };
    withR1?: boolean;
  },
): Promise<Map<string, number>> {
  const r1Rates = new Map<string, number>();
  let cluster: ServerHandle | undefined;
  let single: ServerHandle | undefined;
  try {
    cluster = await startMetaqCluster({
      binary: plan.binary,
      dir: path.join(plan.work, `mq-r3-${mode.label}`),
      args: mode.args,
    });
    if (mode.withR1) {
      single = await startMetaq({
        binary: plan.binary,
        dir: path.join(plan.work, `mq-r1-${mode.label}`),
        flush: "group",
      });
    }
    const apis = (mode.r3.producer ? ["connection", "producer"] : ["connection"]) as (
      | "connection"
      | "producer"
    )[];
    const variants = apis.flatMap((api) => [
      { api, replicas: 3, server: cluster! },
      ...(single ? [{ api, replicas: 1, server: single }] : []),
    ]);
    for (const size of replicatedSizes(plan)) {
      const runs = new Map<string, Run[]>(variants.map((v) => [`${v.api}|${v.replicas}`, []]));
      for (let attempt = 0; attempt < plan.repeat; attempt++) {
        for (let index = 0; index < variants.length; index++) {
          const variant = variants[(index + attempt) % variants.length];
          const name = `${variant.api}|${variant.replicas}`;
          const flags: ClientFlags = {
            target: `r${variant.replicas}${variant.api}${size}r${attempt}`,
            size,
            messages: plan.messages,
            capMs: plan.produceMs,
            metaqApi: variant.api,
          };
          try {
            // Puts to a follower are forwarded: send straight to the partition's leader instead.
            const ports = variant.replicas === 3
              ? [await metaqLeaderPort(variant.server.ports, flags.target)]
              : variant.server.ports;
            const result = await runClient("metaq", "produce", ports, flags);
            log(
              `  metaq R=${variant.replicas} ${variant.api} ${size} B: ${
                summary("produce", result)
              }`,
            );
            runs.get(name)!.push({ ...result, attempt });
          } catch (error) {
            log(
              `  metaq R=${variant.replicas} ${variant.api} ${size} B failed: ${
                describeError(error)
              }`,
            );
          }
        }
      }
      for (const api of apis) {
        const row = api === "producer" ? mode.r3.producer! : mode.r3.connection;
        cells.set(key(row, size, "metaq"), throughputCell(median(runs.get(`${api}|3`))));
        const r1 = median(runs.get(`${api}|1`));
        if (r1) r1Rates.set(`${api}|${size}`, r1.messagesPerSecond);
      }
    }
  } catch (error) {
    log(`metaq R=3 (${mode.label}) failed: ${describeError(error)}`);
  } finally {
    await Promise.all([cluster?.stop(), single?.stop()]);
    removeServerData(plan, `mq-r3-${mode.label}`);
    removeServerData(plan, `mq-r1-${mode.label}`);
  }
  return r1Rates;
}

/** The sizes rows 7, 7b and 7p run at: all of them, or the first one with --quick (time). */
function replicatedSizes(plan: Plan): readonly number[] {
  return plan.quick ? plan.sizes.slice(0, 1) : plan.sizes;
}

/** Creates the R=3 stream, retrying while the cluster elects its JetStream meta leader. */
async function natsReplicatedStream(ports: number[], name: string, timeoutMs: number) {
  const deadline = performance.now() + timeoutMs;
  const connection = await natsConnect({ servers: ports.map((port) => `127.0.0.1:${port}`) });
  try {
    while (true) {
      try {
        const manager = await connection.jetstreamManager();
        await manager.streams.add({
          name,
          subjects: [`${name}.data`],
          storage: StorageType.File,
          num_replicas: 3,
        });
        return;
      } catch (error) {
        if (performance.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
  } finally {
    await connection.close();
  }
}

/**
 * The client port of the leader of `topic`'s partition 0: one put (any node takes it and
 * forwards it; retried while the group elects a leader), then the leaders in `meta`'s answer.
 */
async function metaqLeaderPort(ports: number[], topic: string): Promise<number> {
  const deadline = performance.now() + 30_000;
  const body = makePayload(100);
  while (true) {
    try {
      await firstMessage("metaq", ports[0], body, topic);
      const client = new MetaqClient({ brokers: [`127.0.0.1:${ports[0]}`] });
      try {
        const meta = await client.topicMetadata(topic);
        const leader = (meta.leaders as Record<string, string> | undefined)?.["0"];
        const port = Number(leader?.split(":").pop());
        return ports.includes(port) ? port : ports[0];
      } finally {
        client.close();
      }
    } catch (error) {
      if (performance.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

// ---------------------------------------------------------------- cells and the report

function throughputCell(result: WorkloadResult | undefined): Cell {
  if (!result) return { text: "failed" };
  const rate = result.messagesPerSecond;
  const partial = result.failures > 0 ? ` (${result.failures} failed)` : "";
  return { value: rate, text: `${rateText(rate)}${partial}` };
}

function rateText(rate: number): string {
  if (rate >= 1_000_000) return `${(rate / 1_000_000).toFixed(2)}M`;
  if (rate >= 10_000) return `${(rate / 1000).toFixed(0)}k`;
  if (rate >= 1_000) return `${(rate / 1000).toFixed(1)}k`;
  return Math.round(rate).toString();
}

/** p50 / p99 / p99.9 of e2e latency (or of another summary of the run); the ratio uses p99. */
function latencyCell(
  result: Run | undefined,
  summaryOf: (run: Run) => LatencySummary = (run) => run.latency,
): Cell {
  if (!result) return { text: "failed" };
  const { p50Us, p99Us, p999Us } = summaryOf(result);
  const lost = result.sent !== undefined && result.messages < result.sent
    ? ` (${result.sent - result.messages} of ${result.sent} not seen${
      result.failures > 0
        ? `, ${result.failures} sends failed: ${result.firstError?.slice(0, 60)}`
        : ""
    })`
    : "";
  // A run that lost track of more than 1 % of what it sent did not hold the rate: its figures
  // are shown but enter no ratio.
  const held = result.sent === undefined || result.messages >= result.sent * 0.99;
  return {
    value: held ? p99Us : undefined,
    text: `${micros(p50Us)} / ${micros(p99Us)} / ${micros(p999Us)}${lost}`,
  };
}

function micros(us: number): string {
  if (us < 1000) return `${Math.round(us)} us`;
  return `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)} ms`;
}

function mebibytes(kib: number, digits = 0): string {
  return `${(kib / 1024).toFixed(digits)} MiB`;
}

/**
 * How far ahead metaq is of `peer` on this row: metaq/peer where higher is better, peer/metaq
 * where lower is better, so above 1.00x always means metaq leads.
 */
function lead(row: Row, metaq: Cell | undefined, peer: Cell | undefined): number | undefined {
  if (metaq?.value === undefined || peer?.value === undefined) return undefined;
  if (metaq.value === 0 || peer.value === 0) return undefined;
  return row.better === "higher" ? metaq.value / peer.value : peer.value / metaq.value;
}

/** The peer with the best figure on this row, if any peer has one. */
function bestPeer(
  row: Row,
  peers: readonly System[],
  cellOf: (system: System) => Cell | undefined,
) {
  let best: { system: System; cell: Cell } | undefined;
  for (const system of peers) {
    const cell = cellOf(system);
    if (cell?.value === undefined) continue;
    const better = best === undefined ||
      (row.better === "higher" ? cell.value > best.cell.value! : cell.value < best.cell.value!);
    if (better) best = { system, cell };
  }
  return best;
}

function renderTable(plan: Plan, cells: Cells): string {
  const peers = plan.systems.filter((system) => system !== "metaq");
  const withMetaq = plan.systems.includes("metaq");
  const header = [
    "workload",
    "size",
    "durability",
    ...plan.systems.map((system) => systemTitle(system)),
    ...(withMetaq && peers.length > 0 ? ["best peer", "metaq / best"] : []),
  ];
  const lines = [`| ${header.join(" | ")} |`, `|${header.map(() => " --- ").join("|")}|`];
  for (const row of ROWS) {
    const sizes: (number | string)[] = row.perSize ? [...plan.sizes] : ["-"];
    for (const size of sizes) {
      const cellOf = (system: System) =>
        cells.get(key(system !== "metaq" && row.peersFrom ? row.peersFrom : row.id, size, system));
      if (plan.systems.every((system) => !cellOf(system))) continue;
      const values = plan.systems.map((system) => cellOf(system)?.text ?? "-");
      const extra: string[] = [];
      if (withMetaq && peers.length > 0) {
        const best = bestPeer(row, peers, cellOf);
        const value = lead(row, cellOf("metaq"), best?.cell);
        extra.push(
          best ? SYSTEM_NAMES[best.system] : "-",
          value === undefined
            ? "-"
            : value >= 1
            ? `${value.toFixed(2)}x`
            : `**${value.toFixed(2)}x**`,
        );
      }
      const label = `${row.label} (${row.better} is better)`;
      const sizeText = typeof size === "number"
        ? (size >= 1024 ? `${size / 1024} KiB` : `${size} B`)
        : size;
      lines.push(
        `| ${[label, sizeText, DURABILITY[row.durability], ...values, ...extra].join(" | ")} |`,
      );
    }
  }
  return lines.join("\n");
}

function systemTitle(system: System): string {
  if (system === "nats") return `NATS JetStream ${shortVersion(natsBinary())}`;
  if (system === "redis") return `Redis ${shortVersion("redis-server")} Streams`;
  if (system === "metaq-java") return "original MetaQ 1.4.6 (Java)";
  return "metaq";
}

/** The directory bench/install_metaq_java.sh built (readPlan checked it is there). */
function javaHome(): string {
  const home = metaqJavaHome();
  if (!home) throw new Error("METAQ_JAVA_HOME names no build of bench/install_metaq_java.sh");
  return home;
}

/** "2.10.27" from `nats-server: v2.10.27`, "7.0.15" from `Redis server v=7.0.15 ...`. */
function shortVersion(command: string): string {
  return /v=?(\d+\.\d+(?:\.\d+)?)/.exec(versionOf(command))?.[1] ?? "?";
}

/**
 * Row 6b: the size of each server's executable (metaq's is the whole runtime, compiled in; the
 * Java broker's is its classpath, the broker's jar and Debian's jars, without the JVM).
 */
function recordBinarySizes(plan: Plan, cells: Cells): void {
  for (const system of plan.systems) {
    const bytes = system === "metaq-java"
      ? classpathBytes()
      : fileBytes(executableOf(plan, system));
    const note = system === "metaq-java" ? " (jars; the JVM not counted)" : "";
    cells.set(
      key("binary", "-", system),
      bytes === undefined
        ? { text: "?" }
        : { value: bytes, text: `${mebibytes(bytes / 1024, 1)}${note}` },
    );
  }
}

function executableOf(plan: Plan, system: System): string {
  if (system === "nats") return commandPath(natsBinary());
  if (system === "redis") return commandPath("redis-server");
  return plan.binary;
}

/** The bytes of every jar on the Java broker's classpath (symbolic links followed). */
function classpathBytes(): number | undefined {
  const entries = fs.readFileSync(path.join(javaHome(), "classpath"), "utf8").trim().split(":");
  let total = 0;
  for (const entry of entries) {
    const bytes = fileBytes(entry);
    if (bytes === undefined) return undefined;
    total += bytes;
  }
  return total;
}

function commandPath(command: string): string {
  if (command.includes("/")) return command;
  for (const dir of (process.env.PATH ?? "").split(":")) {
    const candidate = path.join(dir, command);
    if (fileBytes(candidate) !== undefined) return fs.realpathSync(candidate);
  }
  return command;
}

/** The versions line of the original MetaQ broker, or why it did not run. */
function javaMetaqNote(plan: Plan): string {
  const home = metaqJavaHome();
  if (home && plan.systems.includes("metaq-java")) {
    const version = fs.readFileSync(path.join(home, "VERSION"), "utf8").trim();
    return `original MetaQ (Java): ${version}; built from source by bench/install_metaq_java.sh, ` +
      "run with MetaQ's JVM flags (-Xmx512m -Xms512m), a ZooKeeper 3.8 (Debian) of its own per " +
      "broker; client lib/client with MetaQ's verbs only (put, get)";
  }
  if (home) return "original MetaQ (Java): built, but not in --only";
  const why = process.env.METAQ_JAVA_SKIPPED;
  return `original MetaQ (Java): skipped: ${
    why || "METAQ_JAVA_HOME not set (bench/run.sh builds it with bench/install_metaq_java.sh)"
  }`;
}

function renderReport(
  plan: Plan,
  facts: {
    cells: Cells;
    conditions: string[];
    started: Date;
    commit: string;
    loadBefore: string;
    loadAfter: string;
  },
): string {
  const machine = machineFacts(os.tmpdir());
  const versions = [
    `metaq: ${versionOf(plan.binary, ["--version"])} (${facts.commit}), client lib/client on bun ${
      process.versions.bun ?? "?"
    }`,
    `NATS: ${versionOf(natsBinary())} (${
      natsBinary() === "nats-server"
        ? "from PATH"
        : "Debian trixie package, unpacked by bench/install_peers.sh"
    }), client nats (npm) ${packageVersion("nats")}`,
    `Redis: ${versionOf("redis-server")}, client ioredis (npm) ${packageVersion("ioredis")}`,
    javaMetaqNote(plan),
  ];
  return [
    `## Comparison run ${facts.started.toISOString()}${plan.quick ? " (--quick)" : ""}`,
    "",
    `Command: \`bun bench/compare.ts ${process.argv.slice(2).join(" ")}\``,
    "",
    `Machine: ${machine.cores} x ${machine.cpu}, ${machine.memoryGiB} GiB, ${machine.kernel}; data on ${machine.filesystem}.`,
    ...versions.map((line) => `- ${line}`),
    "",
    `Load average (1, 5, 15 min): ${facts.loadBefore} before, ${facts.loadAfter} after.`,
    ...facts.conditions.map((line) => `- ${line}`),
    "",
    `Per run: produce ${plan.messages.toLocaleString("en-US")} msgs (cap ${
      plan.produceMs / 1000
    } s), window ${plan.window}, 1 connection, 1 partition/stream; one at a time: window 1, cap ${
      plan.oneAtATimeMs / 1000
    } s; backlog ${plan.backlog.toLocaleString("en-US")} msgs (cap ${
      plan.consumeMs / 1000
    } s); latency ${plan.rate} msgs/s for ${
      plan.latencyMs / 1000
    } s; every figure the median of ${plan.repeat} runs, the systems taking turns run by run.`,
    "",
    renderTable(plan, facts.cells),
    "",
    "metaq / best: above 1.00x metaq leads the best peer on that row (metaq/peer for rates,",
    "peer/metaq for latency, CPU, memory, time and size); **bold** where it trails. Latency cells are",
    "p50 / p99 / p99.9, the ratio on p99. Durability per row (fastest mode): metaq",
    "unflushThreshold=1000000, unflushInterval=1000 ms; NATS JetStream file store with its default",
    "sync_interval (2 min); Redis AOF appendfsync everysec. Fsync before ack: metaq group commit (its",
    "default), NATS `sync_interval: always`, Redis `appendfsync always`. R=3: metaq ack=quorum with",
    "`--fsync interval:1000` (7) or its default fsync=always (7b, 7p); NATS R=3 stream with the same",
    "two sync settings; 7c/7cp divide by an R=1 broker (fsync before ack) run in turn with the",
    "cluster. The original MetaQ (Java): unflushThreshold=1000000, unflushInterval=1000 ms (fastest)",
    "or unflushThreshold=0, its group commit (fsync before ack; its shipped server.ini); its latency",
    "follower polls with `get` (no long poll). RSS is sampled every 50 ms during the consume; server",
    "CPU per message is the server's user+system time over the consume (/proc/PID/stat, 10 ms ticks)",
    "divided by the messages.",
  ].join("\n");
}

/** The commit the bench ran from (with `+dirty` when the tree has changes), or "?". */
function commitOf(): string {
  const head = spawnSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8" });
  if (head.status !== 0) return "commit ?";
  const dirty = spawnSync("git", ["status", "--porcelain", "--untracked-files=no"], {
    cwd: ROOT,
    encoding: "utf8",
  });
  return `commit ${head.stdout.trim()}${dirty.stdout.trim() ? "+dirty" : ""}`;
}

function packageVersion(name: string): string {
  try {
    const text = fs.readFileSync(path.join(ROOT, "node_modules", name, "package.json"), "utf8");
    return JSON.parse(text).version;
  } catch {
    return "?";
  }
}

if (import.meta.main) {
  main().then((code) => process.exit(code), async (error) => {
    console.error(`bench: ${describeError(error)}`);
    await stopAll();
    process.exit(1);
  });
}

/**
 * @module Store benchmark (issue #2): the segment log store on its own, on real files in a temp
 * dir, beside the disk's own limits measured in the same run. Group-commit append throughput
 * and fsyncs per second (100 B and 1 KiB records, one partition and several), one-at-a-time
 * durable appends, and sequential reads; then raw sequential write + fdatasync every MiB,
 * one small append + fdatasync, and fsyncs per second. Every case is capped in bytes and time.
 *
 *   bun bench/store_bench.ts [--quick] [--dir DIR] [--json]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { setImmediate } from "node:timers";
import { parseArgs } from "node:util";
import { Histogram } from "../lib/bench/histogram.ts";
import { makePayload } from "../lib/bench/load.ts";
import { walkRecords } from "../lib/protocol/record.ts";
import { systemClock } from "../lib/clock.ts";
import { MESSAGE_BYTES_LIMIT_MAX, RECORD_HEADER_BYTES } from "../lib/limits.ts";
import { silentLogger } from "../lib/log.ts";
import { metaqChecksum } from "../lib/crc32.ts";
import { type AppendTicket, PartitionLog } from "../lib/store/partition_log.ts";
import { FileStorage } from "../lib/store/storage_file.ts";
import { busyPercent, cpuTicks, loadAverage, machineFacts } from "./machine.ts";

const MIB = 1024 * 1024;

interface Plan {
  /** Record bytes appended per append case. */
  readonly appendBytes: number;
  /** Time cap per case. */
  readonly caseMs: number;
  /** Bytes of the raw sequential-write case. */
  readonly rawBytes: number;
  /** Appends in flight in the throughput cases (a busy broker's queue). */
  readonly window: number;
}

const FULL: Plan = { appendBytes: 512 * MIB, caseMs: 20_000, rawBytes: 512 * MIB, window: 8192 };
const QUICK: Plan = { appendBytes: 64 * MIB, caseMs: 5_000, rawBytes: 128 * MIB, window: 8192 };

export interface AppendFigures {
  readonly sizeBytes: number;
  readonly partitions: number;
  readonly records: number;
  readonly seconds: number;
  readonly recordsPerSecond: number;
  /** Record bytes (header included) per second, 10^6 bytes. */
  readonly megabytesPerSecond: number;
  readonly fsyncs: number;
  readonly fsyncsPerSecond: number;
  readonly recordsPerFsync: number;
  /** Append→acknowledged latency. */
  readonly ackP50Us: number;
  readonly ackP99Us: number;
  readonly cpuBusyPercent: number;
}

export interface DiskFigures {
  /** Sequential 1 MiB writes, fdatasync after each. */
  readonly rawWriteMegabytesPerSecond: number;
  /** One 100-byte append then fdatasync, repeated. */
  readonly smallSyncP50Us: number;
  readonly smallSyncP99Us: number;
  readonly fsyncsPerSecond: number;
}

export interface StoreBenchResult {
  readonly date: string;
  readonly runtime: string;
  readonly loadBefore: string;
  readonly loadAfter: string;
  readonly machine: ReturnType<typeof machineFacts>;
  readonly disk: DiskFigures;
  readonly appends: AppendFigures[];
  readonly oneAtATime: { sizeBytes: number; p50Us: number; p99Us: number; perSecond: number };
  readonly read: { sizeBytes: number; megabytesPerSecond: number; recordsPerSecond: number };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      quick: { type: "boolean" },
      dir: { type: "string" },
      json: { type: "boolean" },
    },
  });
  const plan = values.quick ? QUICK : FULL;
  const base = fs.mkdtempSync(path.join(values.dir ?? os.tmpdir(), "metaq-store-bench-"));
  try {
    const result = await runAll(plan, base);
    console.log(values.json ? JSON.stringify(result, null, 2) : renderStoreBench(result));
    return 0;
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
}

export async function runAll(plan: Plan, base: string): Promise<StoreBenchResult> {
  const loadBefore = loadAverage();
  const disk = measureDisk(plan, path.join(base, "raw"));
  const appends: AppendFigures[] = [];
  let caseIndex = 0;
  for (const sizeBytes of [100, 1024]) {
    for (const partitions of [1, 4]) {
      const dir = path.join(base, `append-${caseIndex++}`);
      appends.push(await measureAppends(plan, { dir, sizeBytes, partitions }));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  const oneAtATime = await measureOneAtATime(plan, path.join(base, "single"));
  const read = await measureRead(plan, path.join(base, "read"));
  return {
    date: new Date().toISOString(),
    runtime: runtimeName(),
    loadBefore,
    loadAfter: loadAverage(),
    machine: machineFacts(base),
    disk,
    appends,
    oneAtATime,
    read,
  };
}

/** The disk's own limits, with plain synchronous node:fs calls and no store in the way. */
function measureDisk(plan: Plan, dir: string): DiskFigures {
  fs.mkdirSync(dir, { recursive: true });
  const chunk = makePayload(MIB);
  const bigPath = path.join(dir, "sequential");
  const fd = fs.openSync(bigPath, "w");
  const started = performance.now();
  let written = 0;
  while (written < plan.rawBytes && performance.now() - started < plan.caseMs) {
    written += fs.writeSync(fd, chunk, 0, chunk.length, written);
    fs.fdatasyncSync(fd);
  }
  const rawSeconds = (performance.now() - started) / 1000;
  fs.closeSync(fd);
  fs.rmSync(bigPath);

  const small = makePayload(100);
  const smallFd = fs.openSync(path.join(dir, "small"), "w");
  const histogram = new Histogram();
  const smallStarted = performance.now();
  let position = 0;
  for (let count = 0; count < 20_000 && performance.now() - smallStarted < 3000; count++) {
    const before = performance.now();
    position += fs.writeSync(smallFd, small, 0, small.length, position);
    fs.fdatasyncSync(smallFd);
    histogram.recordMs(performance.now() - before);
  }
  const smallSeconds = (performance.now() - smallStarted) / 1000;
  fs.closeSync(smallFd);
  return {
    rawWriteMegabytesPerSecond: written / 1e6 / rawSeconds,
    smallSyncP50Us: histogram.percentileUs(50),
    smallSyncP99Us: histogram.percentileUs(99),
    fsyncsPerSecond: histogram.count / smallSeconds,
  };
}

async function openLog(dir: string, name: string): Promise<PartitionLog> {
  return await PartitionLog.open({
    storage: new FileStorage(),
    dir,
    name,
    segmentBytesMax: 1024 * MIB,
    recordDataBytesMax: MESSAGE_BYTES_LIMIT_MAX,
    flush: { kind: "group" },
    clock: systemClock,
    logger: silentLogger,
  }, { verifyAll: false, repair: false });
}

/**
 * Group-commit appends with `window` records in flight, appended 256 per event-loop turn (as a
 * connection's pipelined puts arrive), across `partitions` logs round robin.
 */
async function measureAppends(
  plan: Plan,
  options: { dir: string; sizeBytes: number; partitions: number },
): Promise<AppendFigures> {
  const logs = await Promise.all(
    Array.from(
      { length: options.partitions },
      (_, index) => openLog(path.join(options.dir, `bench-${index}`), `bench-${index}`),
    ),
  );
  const data = makePayload(options.sizeBytes);
  const checksum = metaqChecksum(data);
  const recordBytes = RECORD_HEADER_BYTES + options.sizeBytes;
  const recordsMax = Math.floor(plan.appendBytes / recordBytes);
  const latency = new Histogram();
  const turns: { done: Promise<unknown>; at: number; count: number }[] = [];
  let queued = 0;
  const cpu = cpuTicks();
  const started = performance.now();
  let appended = 0;
  let id = 1n;
  while (appended < recordsMax && performance.now() - started < plan.caseMs) {
    const at = performance.now();
    const count = Math.min(256, recordsMax - appended);
    const last = new Map<PartitionLog, AppendTicket>();
    for (let index = 0; index < count; index++) {
      const log = logs[(appended + index) % logs.length];
      last.set(log, log.appendRecord({ id: id++, flag: 0, data, checksum }));
    }
    turns.push({ done: Promise.all([...last.values()].map((ticket) => ticket.done)), at, count });
    appended += count;
    queued += count;
    while (queued >= plan.window) queued -= await settle(turns.shift()!, latency);
    await new Promise((resolve) => setImmediate(resolve));
  }
  while (turns.length > 0) await settle(turns.shift()!, latency);
  const seconds = (performance.now() - started) / 1000;
  const fsyncs = logs.reduce((sum, log) => sum + log.syncCount, 0);
  await Promise.all(logs.map((log) => log.close()));
  return {
    sizeBytes: options.sizeBytes,
    partitions: options.partitions,
    records: appended,
    seconds,
    recordsPerSecond: appended / seconds,
    megabytesPerSecond: (appended * recordBytes) / 1e6 / seconds,
    fsyncs,
    fsyncsPerSecond: fsyncs / seconds,
    recordsPerFsync: appended / Math.max(1, fsyncs),
    ackP50Us: latency.percentileUs(50),
    ackP99Us: latency.percentileUs(99),
    cpuBusyPercent: busyPercent(cpu),
  };
}

/** Waits for one turn's appends; records their append→ack latency; returns their count. */
async function settle(
  turn: { done: Promise<unknown>; at: number; count: number },
  latency: Histogram,
): Promise<number> {
  await turn.done;
  const ms = performance.now() - turn.at;
  for (let index = 0; index < turn.count; index++) latency.recordMs(ms);
  return turn.count;
}

/** One append, wait for its fsync, the next: what a producer waiting for each ack gets. */
async function measureOneAtATime(
  plan: Plan,
  dir: string,
): Promise<{ sizeBytes: number; p50Us: number; p99Us: number; perSecond: number }> {
  const log = await openLog(dir, "single-0");
  const data = makePayload(100);
  const latency = new Histogram();
  const started = performance.now();
  for (let id = 1n; id < 20_000n && performance.now() - started < plan.caseMs / 4; id++) {
    const at = performance.now();
    await log.appendRecord({ id, flag: 0, data }).done;
    latency.recordMs(performance.now() - at);
  }
  const seconds = (performance.now() - started) / 1000;
  await log.close();
  return {
    sizeBytes: 100,
    p50Us: latency.percentileUs(50),
    p99Us: latency.percentileUs(99),
    perSecond: latency.count / seconds,
  };
}

/**
 * Sequential read of a freshly written log in 1 MiB `read`s (what `get` does per request),
 * walking record headers. The data was just written, so this reads the page cache.
 */
async function measureRead(
  plan: Plan,
  dir: string,
): Promise<{ sizeBytes: number; megabytesPerSecond: number; recordsPerSecond: number }> {
  const log = await openLog(dir, "read-0");
  const data = makePayload(100);
  const checksum = metaqChecksum(data);
  const records = Math.floor(plan.appendBytes / (RECORD_HEADER_BYTES + data.length));
  let last: AppendTicket | undefined;
  for (let id = 1; id <= records; id++) {
    last = log.appendRecord({ id: BigInt(id), flag: 0, data, checksum });
    if (id % 65536 === 0) await last.done;
  }
  await last?.done;
  const started = performance.now();
  let offset = log.startOffset;
  let seen = 0;
  while (offset < log.ackedEnd && performance.now() - started < plan.caseMs) {
    const bytes = log.read(offset, MIB);
    const walk = walkRecords(bytes, MESSAGE_BYTES_LIMIT_MAX);
    offset += walk.bytes;
    seen += walk.records;
  }
  const seconds = (performance.now() - started) / 1000;
  const readBytes = offset - log.startOffset;
  await log.close();
  return {
    sizeBytes: 100,
    megabytesPerSecond: readBytes / 1e6 / seconds,
    recordsPerSecond: seen / seconds,
  };
}

function runtimeName(): string {
  const versions = process.versions as Record<string, string | undefined>;
  if (versions.bun) return `bun ${versions.bun}`;
  if (versions.deno) return `deno ${versions.deno}`;
  return `node ${process.version}`;
}

export function renderStoreBench(result: StoreBenchResult): string {
  const { disk } = result;
  const number = (value: number) => Math.round(value).toLocaleString("en-US");
  const lines = [
    `Store benchmark, ${result.date}, ${result.runtime}; load average before ${result.loadBefore}, after ${result.loadAfter}`,
    `Machine: ${result.machine.cores} x ${result.machine.cpu}, ${result.machine.memoryGiB} GiB, ${result.machine.kernel}, ${result.machine.filesystem}`,
    "",
    "| disk limit (same run) | figure |",
    "| --- | --- |",
    `| sequential write, fdatasync every MiB | ${number(disk.rawWriteMegabytesPerSecond)} MB/s |`,
    `| one 100 B append + fdatasync, p50 / p99 | ${number(disk.smallSyncP50Us)} us / ${
      number(disk.smallSyncP99Us)
    } us |`,
    `| fsyncs per second (one at a time) | ${number(disk.fsyncsPerSecond)} |`,
    "",
    "| group-commit append | records/s | MB/s | vs raw write | fsyncs/s | records/fsync | ack p50 / p99 | CPU busy |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ...result.appends.map((figures) =>
      `| ${figures.sizeBytes} B, ${figures.partitions} partition(s) | ${
        number(figures.recordsPerSecond)
      } | ${number(figures.megabytesPerSecond)} | ${
        (figures.megabytesPerSecond / disk.rawWriteMegabytesPerSecond).toFixed(2)
      }x | ${number(figures.fsyncsPerSecond)} | ${number(figures.recordsPerFsync)} | ${
        number(figures.ackP50Us)
      } us / ${number(figures.ackP99Us)} us | ${figures.cpuBusyPercent}% |`
    ),
    "",
    `| other | figure |`,
    "| --- | --- |",
    `| durable append one at a time (100 B), p50 / p99 | ${number(result.oneAtATime.p50Us)} us / ${
      number(result.oneAtATime.p99Us)
    } us (${number(result.oneAtATime.perSecond)}/s) |`,
    `| sequential read, 1 MiB reads, page cache (100 B records) | ${
      number(result.read.megabytesPerSecond)
    } MB/s, ${number(result.read.recordsPerSecond)} records/s |`,
  ];
  return lines.join("\n");
}

if (import.meta.main) process.exit(await main());

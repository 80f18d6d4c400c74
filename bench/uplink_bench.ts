/**
 * @module Uplink benchmark (issue #16): how fast an edge drains a backlog to its hub over
 * loopback, and the edge's memory while it does. An edge (`dist/metaq serve --uplink`) takes
 * `--gib` GiB of `--size`-byte messages while its hub is down; then the hub starts and the run
 * times the drain (from the hub listening to the edge reporting every partition caught up),
 * sampling the edge's RSS. For scale, the same hub's acknowledged produce rate from a client over
 * the same loopback is measured afterwards (the "link" the drain is compared with), and the hub
 * is read back to check every message arrived. Both brokers fsync before every ack (the default).
 *
 *   bun bench/uplink_bench.ts [--gib 1] [--size 1024] [--partitions 4] [--dir DIR] [--json]
 */
import { type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { MetaqClient } from "../lib/client/client.ts";
import { runConsume, runProduce } from "../lib/bench/load.ts";
import { loadAverage, machineFacts } from "./machine.ts";
import { freePort, spawnTracked, stopAll, stopChild, waitForPort } from "./servers.ts";

const MIB = 1024 * 1024;
const TOPIC = "backlog";
const BINARY = process.env.METAQ_BINARY ??
  path.resolve(import.meta.dirname ?? ".", "../dist/metaq");
/** The drain and each load phase stop after this long, whatever happened. */
const PHASE_MS = 20 * 60 * 1000;

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      gib: { type: "string", default: "1" },
      size: { type: "string", default: "1024" },
      partitions: { type: "string", default: "4" },
      "batch-kib": { type: "string" },
      "hub-ini": { type: "string" },
      dir: { type: "string" },
      json: { type: "boolean" },
    },
  });
  const sizeBytes = Number(values.size);
  const partitions = Number(values.partitions);
  const messages = Math.round(Number(values.gib) * 1024 * MIB / sizeBytes);
  const dir = fs.mkdtempSync(path.join(values.dir ?? os.tmpdir(), "metaq-uplink-bench-"));
  const log = (line: string) => !values.json && console.log(line);
  try {
    const [hubPort, edgePort] = await twoPorts();
    const edgeIni = path.join(dir, "edge.ini");
    fs.writeFileSync(
      edgeIni,
      values["batch-kib"] ? `[uplink]\nbatchBytes=${Number(values["batch-kib"]) * 1024}\n` : "",
    );
    const edge = await startBroker(dir, "edge", partitions, [
      "--config",
      edgeIni,
      "--uplink",
      `127.0.0.1:${hubPort}`,
    ], edgePort);
    log(`edge ${edge.port} (pid ${edge.child.pid}), hub port ${hubPort} not started yet`);
    const loaded = await runProduce({
      broker: `127.0.0.1:${edge.port}`,
      topic: TOPIC,
      partitions: range(partitions),
      messages,
      sizeBytes,
      connections: 4,
      pipeline: 256,
      durationMs: PHASE_MS,
      api: "connection",
    });
    log(
      `backlog: ${loaded.messages} messages at the edge in ${loaded.seconds.toFixed(1)} s ` +
        `(${rate(loaded.messages, loaded.seconds)} msgs/s while the hub was down)`,
    );
    const idleRss = rssBytes(edge.child.pid!);
    const backlogBytes = (await uplinkLines(edge.port)).lagBytes;

    const hub = await startBroker(
      dir,
      "hub",
      partitions,
      values["hub-ini"] ? ["--config", values["hub-ini"]] : [],
      hubPort,
    );
    const started = performance.now();
    let peakRss = idleRss;
    let samples = 0;
    // Bounded by PHASE_MS; one sample every 200 ms.
    while (performance.now() - started < PHASE_MS) {
      peakRss = Math.max(peakRss, rssBytes(edge.child.pid!));
      samples += 1;
      const status = await uplinkLines(edge.port);
      if (status.caughtUp) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const drainSeconds = (performance.now() - started) / 1000;
    log(`drained ${fmtMiB(backlogBytes)} in ${drainSeconds.toFixed(1)} s`);

    const check = await runConsume({
      broker: `127.0.0.1:${hub.port}`,
      topic: TOPIC,
      group: "check",
      partitions: range(partitions),
      messages: loaded.messages,
      connections: 1,
      maxSizeBytes: MIB,
      durationMs: PHASE_MS,
    });
    const reference = await runProduce({
      broker: `127.0.0.1:${hub.port}`,
      topic: "direct",
      partitions: range(partitions),
      messages: Math.min(messages, Math.round(256 * MIB / sizeBytes)),
      sizeBytes,
      connections: 4,
      pipeline: 256,
      durationMs: PHASE_MS,
      api: "connection",
    });
    await stopChild(hub.child);
    await stopChild(edge.child);
    const result = {
      machine: machineFacts(dir),
      loadAverage: loadAverage(),
      sizeBytes,
      partitions,
      backlogMessages: loaded.messages,
      backlogBytes,
      drainSeconds,
      drainMessagesPerSecond: loaded.messages / drainSeconds,
      drainMegabytesPerSecond: backlogBytes / drainSeconds / 1e6,
      hubMessagesReadBack: check.messages,
      edgeRssIdleMiB: idleRss / MIB,
      edgeRssPeakMiB: peakRss / MIB,
      rssSamples: samples,
      linkMessagesPerSecond: reference.messages / reference.seconds,
      linkMegabytesPerSecond: reference.bytes / reference.seconds / 1e6,
    };
    if (values.json) console.log(JSON.stringify(result, null, 2));
    else {
      log(
        `drain: ${rate(loaded.messages, drainSeconds)} msgs/s, ` +
          `${result.drainMegabytesPerSecond.toFixed(1)} MB/s of edge log; hub read back ` +
          `${check.messages}/${loaded.messages} messages`,
      );
      log(
        `client -> hub acked produce, same size (the link): ` +
          `${rate(reference.messages, reference.seconds)} msgs/s, ` +
          `${result.linkMegabytesPerSecond.toFixed(1)} MB/s payload; drain/link ` +
          `${(result.drainMessagesPerSecond / result.linkMessagesPerSecond).toFixed(2)}x`,
      );
      log(
        `edge RSS: ${result.edgeRssIdleMiB.toFixed(0)} MiB with the backlog, peak ` +
          `${
            result.edgeRssPeakMiB.toFixed(0)
          } MiB while draining; load average ${result.loadAverage}`,
      );
    }
  } finally {
    await stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

interface Broker {
  readonly port: number;
  readonly child: ChildProcess;
}

async function startBroker(
  dir: string,
  name: string,
  partitions: number,
  extra: string[],
  fixedPort?: number,
): Promise<Broker> {
  const port = fixedPort ?? await freePort();
  const child = spawnTracked(BINARY, [
    "serve",
    "--port",
    String(port),
    "--data",
    path.join(dir, name),
    "--partitions",
    String(partitions),
    "--no-http",
    "--log-level",
    "warn",
    ...extra,
  ], path.join(dir, `${name}.log`));
  await waitForPort(port, 20_000);
  return { port, child };
}

/** The edge's `stats uplink`: bytes not yet at the hub, and whether every partition caught up. */
async function uplinkLines(port: number): Promise<{ lagBytes: number; caughtUp: boolean }> {
  const client = new MetaqClient({ brokers: [`127.0.0.1:${port}`] });
  try {
    const lines = (await client.stats("uplink")).split("\r\n").filter((line) =>
      line.startsWith(`${TOPIC}-`)
    );
    const lagBytes = lines.reduce(
      (sum, line) => sum + Number(/ lag_bytes (\d+)/.exec(line)?.[1] ?? 0),
      0,
    );
    const caughtUp = lines.length > 0 && lines.every((line) => / state caught-up /.test(line)) &&
      lagBytes === 0;
    return { lagBytes, caughtUp };
  } finally {
    client.close();
  }
}

/** Two different free ports (one taken while the other is asked for). */
async function twoPorts(): Promise<[number, number]> {
  const first = await freePort();
  // Bounded: a free port equal to the first is rare, and each try asks the kernel again.
  for (let attempt = 0; attempt < 100; attempt++) {
    const second = await freePort();
    if (second !== first) return [first, second];
  }
  throw new Error("Cannot find two free ports");
}

function rssBytes(pid: number): number {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    return Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

function range(count: number): number[] {
  return Array.from({ length: count }, (_, index) => index);
}

function rate(count: number, seconds: number): string {
  return Math.round(count / seconds).toLocaleString("en-US");
}

function fmtMiB(bytes: number): string {
  return `${(bytes / MIB).toFixed(0)} MiB`;
}

process.once("SIGINT", () => void stopAll().then(() => process.exit(130)));
await main();

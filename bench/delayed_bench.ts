/**
 * @module Delayed-message benchmark (issue #17): a broker (`dist/metaq serve`) takes
 * `1,000,000 × scale` delayed messages due uniformly across `600 s × scale`, all sent before the
 * first is due (so they are all pending at once), then delivers them. The run measures how late
 * each message became readable, as a consumer sees it (polling `get` on every partition) and as
 * the broker measures it (`stats delayed`), the broker's RSS idle, with every message pending,
 * and at its peak, and checks that every message arrived exactly once.
 *
 *   bun bench/delayed_bench.ts [--scale 1] [--partitions 4] [--size 100] [--lead-s S] [--json]
 *
 * `--lead-s` is how long after the start the first message is due (default: enough for the
 * sends at 2,500 msgs/s, at least 5 s); a message sent after its time counts as "sent late"
 * and is left out of the lateness figures.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { MetaqClient } from "../lib/client/client.ts";
import type { BrokerConnection } from "../lib/client/connection.ts";
import { metaqChecksum } from "../lib/crc32.ts";
import { DELAY_VERB, parseScheduledAttribute } from "../lib/protocol/delayed.ts";
import { encodeExtension, encodeGet } from "../lib/protocol/encoder.ts";
import { decodeRecords, splitAttribute } from "../lib/protocol/record.ts";
import { loadAverage, machineFacts, memoryOf } from "./machine.ts";
import { freePort, spawnTracked, stopAll, stopChild, waitForPort } from "./servers.ts";

const TOPIC = "later";
const BINARY = process.env.METAQ_BINARY ??
  path.resolve(import.meta.dirname ?? ".", "../dist/metaq");
const MIB = 1024 * 1024;
/** Requests in flight per producing connection. */
const PIPELINE = 512;
const CONNECTIONS = 4;
/** The delivery phase ends this long after the last message was due, whatever happened. */
const GRACE_MS = 60_000;

interface Options {
  readonly scale: number;
  readonly partitions: number;
  readonly sizeBytes: number;
  readonly leadMs?: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      scale: { type: "string", default: "1" },
      partitions: { type: "string", default: "4" },
      size: { type: "string", default: "100" },
      "lead-s": { type: "string" },
      dir: { type: "string" },
      json: { type: "boolean" },
    },
  });
  const options: Options = {
    scale: Number(values.scale),
    partitions: Number(values.partitions),
    sizeBytes: Number(values.size),
    leadMs: values["lead-s"] === undefined ? undefined : Number(values["lead-s"]) * 1000,
  };
  if (!(options.scale > 0) || !(options.partitions >= 1) || !(options.sizeBytes >= 1)) {
    throw new Error("Cannot run: --scale, --partitions and --size must be positive");
  }
  const dir = fs.mkdtempSync(path.join(values.dir ?? os.tmpdir(), "metaq-delayed-bench-"));
  const log = (line: string) => !values.json && console.error(line);
  try {
    const result = await run(dir, options, log);
    if (values.json) console.log(JSON.stringify(result, null, 2));
    else report(result);
    if (result.delivered !== result.messages || result.duplicates > 0) process.exitCode = 1;
  } finally {
    await stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function run(dir: string, options: Options, log: (line: string) => void) {
  const messages = Math.max(1, Math.round(1_000_000 * options.scale));
  const spanMs = Math.max(1000, Math.round(600_000 * options.scale));
  const leadMs = options.leadMs ?? Math.max(5000, Math.round(messages / 2500 * 1000));
  const port = await freePort();
  const child = spawnTracked(BINARY, [
    "serve",
    "--port",
    String(port),
    "--data",
    path.join(dir, "data"),
    "--partitions",
    String(options.partitions),
    "--no-http",
    "--log-level",
    "warn",
  ], path.join(dir, "broker.log"));
  await waitForPort(port, 20_000);
  const pid = child.pid!;
  const idleRssKiB = memoryOf(pid).rssKiB;
  const client = new MetaqClient({ brokers: [`127.0.0.1:${port}`], requestTimeoutMs: 60_000 });
  const startMs = Date.now();
  const firstDueMs = startMs + leadMs;
  log(
    `${messages} messages due from +${leadMs / 1000} s across ${spanMs / 1000} s ` +
      `(${options.partitions} partitions, ${options.sizeBytes} B)`,
  );

  const sent = await sendAll(port, { messages, firstDueMs, spanMs, ...options });
  const sendSeconds = (Date.now() - startMs) / 1000;
  const pendingRssKiB = memoryOf(pid).rssKiB;
  const statsPending = await delayedStats(client);
  log(
    `sent in ${sendSeconds.toFixed(1)} s (${Math.round(messages / sendSeconds)} msgs/s); ` +
      `pending ${statsPending.pending}, RSS ${(pendingRssKiB / 1024).toFixed(0)} MiB, index ` +
      `${(statsPending.index_bytes / MIB).toFixed(1)} MiB, ${sent.late} sent after their time`,
  );

  const lateness: number[] = [];
  const seen = new Set<string>();
  let duplicates = 0;
  let early = 0;
  let peakRssKiB = pendingRssKiB;
  const deadline = firstDueMs + spanMs + GRACE_MS;
  const sampler = setInterval(() => {
    peakRssKiB = Math.max(peakRssKiB, memoryOf(pid).rssKiB);
  }, 500);
  let lastLog = Date.now();
  try {
    await Promise.all(Array.from({ length: options.partitions }, async (_, partition) => {
      const connection = await connectTo(port);
      let offset = 0;
      // Bounded by the deadline and by the message count.
      while (seen.size < messages && Date.now() < deadline) {
        const opaque = connection.nextOpaque();
        const reply = await connection.request(
          encodeGet({ topic: TOPIC, group: "bench", partition, offset, maxSize: MIB, opaque }),
          opaque,
        );
        const nowMs = Date.now();
        if (reply.kind !== "value") {
          await new Promise((resolve) => setTimeout(resolve, 5));
          continue;
        }
        const records = decodeRecords(reply.body, offset);
        for (const record of records) {
          const key = String(record.id);
          if (seen.has(key)) duplicates += 1;
          seen.add(key);
          const { attribute } = splitAttribute(record.flag, record.data);
          const due = parseScheduledAttribute(attribute ?? "")?.scheduled.scheduledAtMs ?? 0;
          if (nowMs < due) early += 1;
          if (!sent.lateIds.has(key)) lateness.push(nowMs - due);
        }
        if (records.length === 0) continue;
        const last = records[records.length - 1];
        offset = last.offset + 20 + last.length;
        if (partition === 0 && nowMs - lastLog > 10_000) {
          lastLog = nowMs;
          log(`  ${seen.size} delivered, ${((nowMs - firstDueMs) / 1000).toFixed(0)} s in`);
        }
      }
      connection.done();
    }));
  } finally {
    clearInterval(sampler);
  }
  const broker = await delayedStats(client);
  client.close();
  await stopChild(child);
  lateness.sort((a, b) => a - b);
  const quantile = (q: number) =>
    lateness.length === 0
      ? 0
      : lateness[Math.min(lateness.length - 1, Math.floor(q * lateness.length))];
  return {
    machine: machineFacts(dir),
    loadAverage: loadAverage(),
    scale: options.scale,
    messages,
    spanSeconds: spanMs / 1000,
    partitions: options.partitions,
    sizeBytes: options.sizeBytes,
    sendSeconds,
    sendMessagesPerSecond: messages / sendSeconds,
    sentLate: sent.late,
    delivered: seen.size,
    duplicates,
    early,
    latenessMs: { p50: quantile(0.5), p99: quantile(0.99), max: lateness.at(-1) ?? 0 },
    brokerLatenessMs: {
      p50: broker.lateness_p50_ms,
      p99: broker.lateness_p99_ms,
      max: broker.lateness_max_ms,
    },
    indexMiB: statsPending.index_bytes / MIB,
    pendingAtPeak: statsPending.pending,
    rssMiB: {
      idle: idleRssKiB / 1024,
      allPending: pendingRssKiB / 1024,
      peak: peakRssKiB / 1024,
    },
  };
}

/** Sends every message over CONNECTIONS pipelined connections; notes those sent after due. */
async function sendAll(
  port: number,
  plan: Options & { messages: number; firstDueMs: number; spanMs: number },
): Promise<{ late: number; lateIds: Set<string> }> {
  const payload = new Uint8Array(plan.sizeBytes).fill(120);
  const checksum = metaqChecksum(payload);
  const lateIds = new Set<string>();
  let next = 0;
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    const connection = await connectTo(port);
    const inFlight = new Set<Promise<void>>();
    // Bounded by the message count.
    while (next < plan.messages) {
      const i = next++;
      // A permutation of the indices spreads due times over the whole span in send order.
      const slot = (i * 7_919) % plan.messages;
      const due = plan.firstDueMs + Math.floor(slot / plan.messages * plan.spanMs);
      const opaque = connection.nextOpaque();
      const bytes = encodeExtension(
        DELAY_VERB,
        [
          TOPIC,
          i % plan.partitions,
          payload.length,
          0,
          checksum,
          due,
        ],
        opaque,
        payload,
      );
      const request = connection.request(bytes, opaque).then((reply) => {
        const text = new TextDecoder().decode(reply.body);
        if (reply.kind !== "result" || reply.code !== 200) {
          throw new Error(`Cannot send delayed message ${i}: ${text}`);
        }
        if (Date.now() > due) lateIds.add(text.split(" ")[0]);
      });
      const tracked = request.finally(() => inFlight.delete(tracked));
      inFlight.add(tracked);
      if (inFlight.size >= PIPELINE) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    connection.done();
  }));
  return { late: lateIds.size, lateIds };
}

/** A connection of its own (a client per connection: requests pipelined on it alone). */
async function connectTo(port: number): Promise<BrokerConnection & { done(): void }> {
  const client = new MetaqClient({ brokers: [`127.0.0.1:${port}`], requestTimeoutMs: 60_000 });
  const connection = await client.connection();
  return Object.assign(connection, { done: () => client.close() });
}

async function delayedStats(client: MetaqClient): Promise<Record<string, number>> {
  const text = await client.stats("delayed");
  return Object.fromEntries(
    text.split("\r\n").filter((line) => line.includes(" ")).map((line) => {
      const [name, value] = line.split(" ");
      return [name, Number(value)];
    }),
  );
}

function report(result: Awaited<ReturnType<typeof run>>): void {
  const l = result.latenessMs;
  const b = result.brokerLatenessMs;
  console.log(
    [
      `delayed messages: ${result.delivered}/${result.messages} delivered, ` +
      `${result.duplicates} twice, ${result.early} early, ${result.sentLate} sent after their time`,
      `sends: ${result.sendSeconds.toFixed(1)} s, ${
        Math.round(result.sendMessagesPerSecond)
      } msgs/s`,
      `lateness seen by a consumer: p50 ${l.p50} ms, p99 ${l.p99} ms, max ${l.max} ms`,
      `lateness measured by the broker (recent 16384): p50 ${b.p50} ms, p99 ${b.p99} ms, ` +
      `max ${b.max} ms`,
      `RSS: idle ${result.rssMiB.idle.toFixed(0)} MiB, ${result.pendingAtPeak} pending ` +
      `${result.rssMiB.allPending.toFixed(0)} MiB (index ${result.indexMiB.toFixed(1)} MiB), ` +
      `peak ${result.rssMiB.peak.toFixed(0)} MiB; load average ${result.loadAverage}`,
    ].join("\n"),
  );
}

await main();

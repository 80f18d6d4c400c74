/**
 * @module One workload against one system, run as its own process by bench/compare.ts, printing
 * one JSON line. The same shapes for every system: a windowed acknowledged produce, a backlog
 * consume, and a fixed-rate end-to-end latency run. Clients: `nats` (JetStream), `ioredis`
 * (Streams) and the project's own lib/client (metaq, and the original MetaQ broker with MetaQ's
 * own verbs only: `put`, `get`), each used as its documentation shows.
 *
 *   bun bench/client.ts SYSTEM WORKLOAD --port P --target NAME [--size B --messages N ...]
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import {
  AckPolicy,
  connect as natsConnect,
  createInbox,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
  StorageType,
} from "nats";
import { Histogram, type LatencySummary } from "../lib/bench/histogram.ts";
import { makePayload, runConsume, runLatency, runProduce, split } from "../lib/bench/load.ts";
import { describeError } from "../lib/errors.ts";

/** `metaq-java`: the original MetaQ broker, driven by metaq's own client (plain MetaQ verbs). */
export const SYSTEMS = ["metaq", "nats", "redis", "metaq-java"] as const;
export type System = typeof SYSTEMS[number];
export const WORKLOADS = ["produce", "consume", "latency", "drop"] as const;
export type Workload = typeof WORKLOADS[number];

export interface WorkloadOptions {
  readonly system: System;
  readonly workload: Workload;
  /** Server addresses `host:port`; the first is used unless the client takes a list. */
  readonly servers: string[];
  /** Topic, stream or key. */
  readonly target: string;
  readonly sizeBytes: number;
  readonly messages: number;
  readonly window: number;
  readonly connections: number;
  readonly durationMs: number;
  readonly rate: number;
  /** JetStream stream replicas (3-node runs). */
  readonly replicas: number;
  /**
   * NATS produce path: `async` publishes with a reply subject per message and one wildcard
   * subscription for the PubAcks (what the Go client's PublishAsync does); `jetstream` awaits
   * `js.publish()` per message (a request, an inbox entry and a timer each).
   */
  readonly natsApi: "async" | "jetstream";
  /**
   * metaq produce path: `connection` pipelines plain `put`s on a BrokerConnection; `producer`
   * goes through MetaqClient + Producer.send, which sends the puts queued in one event-loop turn
   * as one batched put (`bput`) per partition.
   */
  readonly metaqApi: "connection" | "producer";
  /** JetStream durable consumer name (a new one per repeated consume). */
  readonly consumer: string;
}

/** What every workload prints. */
export interface WorkloadResult {
  readonly messages: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly messagesPerSecond: number;
  readonly megabytesPerSecond: number;
  readonly failures: number;
  readonly firstError?: string;
  readonly latency: LatencySummary;
  readonly sent?: number;
  readonly ackLatency?: LatencySummary;
}

interface Tally {
  messages: number;
  bytes: number;
  failures: number;
  firstError?: string;
  readonly latency: Histogram;
}

const NATS_BATCH = 10_000;
const REDIS_BATCH = 10_000;
const LATENCY_GRACE_MS = 3000;

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    options: {
      port: { type: "string", multiple: true },
      target: { type: "string" },
      size: { type: "string" },
      messages: { type: "string" },
      window: { type: "string" },
      connections: { type: "string" },
      "duration-ms": { type: "string" },
      rate: { type: "string" },
      replicas: { type: "string" },
      "nats-api": { type: "string" },
      "metaq-api": { type: "string" },
      consumer: { type: "string" },
    },
  });
  const [system, workload] = positionals as [System, Workload];
  if (!SYSTEMS.includes(system) || !WORKLOADS.includes(workload)) {
    console.error(
      "usage: bench/client.ts metaq|nats|redis|metaq-java produce|consume|latency|drop --port P ...",
    );
    return 2;
  }
  const options: WorkloadOptions = {
    system,
    workload,
    servers: (values.port ?? []).map((port) => `127.0.0.1:${port}`),
    target: values.target ?? "bench",
    sizeBytes: Number(values.size ?? 100),
    messages: Number(values.messages ?? 100_000),
    window: Number(values.window ?? 1024),
    connections: Number(values.connections ?? 1),
    durationMs: Number(values["duration-ms"] ?? 30_000),
    rate: Number(values.rate ?? 5000),
    replicas: Number(values.replicas ?? 1),
    natsApi: values["nats-api"] === "jetstream" ? "jetstream" : "async",
    metaqApi: values["metaq-api"] === "producer" ? "producer" : "connection",
    consumer: values.consumer ?? "bench",
  };
  const result = await runWorkload(options);
  console.log(JSON.stringify(result));
  return 0;
}

export function runWorkload(options: WorkloadOptions): Promise<WorkloadResult> {
  switch (options.system) {
    case "metaq":
    case "metaq-java":
      return metaqWorkload(options);
    case "nats":
      return natsWorkload(options);
    case "redis":
      return redisWorkload(options);
  }
}

// ---------------------------------------------------------------- metaq (lib/client)

async function metaqWorkload(options: WorkloadOptions): Promise<WorkloadResult> {
  if (options.workload === "drop") return resultOf(newTally(), 0); // on disk only: nothing held
  // The Java broker knows neither metaq's batched put (`bput`) nor its long poll (`fetch`).
  const original = options.system === "metaq-java";
  if (original && options.metaqApi === "producer") {
    throw new Error("The original MetaQ broker has no batched put: use --metaq-api connection");
  }
  const common = {
    broker: options.servers[0],
    topic: options.target,
    durationMs: options.durationMs,
  };
  if (options.workload === "produce") {
    const result = await runProduce({
      ...common,
      partitions: [0],
      messages: options.messages,
      sizeBytes: options.sizeBytes,
      connections: options.connections,
      pipeline: options.window,
      api: options.metaqApi,
    });
    return resultOf(result, result.seconds);
  }
  if (options.workload === "consume") {
    const result = await runConsume({
      ...common,
      group: "bench",
      partitions: [0],
      messages: options.messages,
      connections: 1,
      maxSizeBytes: 1024 * 1024,
    });
    return resultOf(result, result.seconds);
  }
  const result = await runLatency({
    ...common,
    partition: 0,
    rate: options.rate,
    sizeBytes: options.sizeBytes,
    pollDelayMs: 0,
    // metaq's fetch: the follower hears of each message without polling. MetaQ's client polls
    // with `get`, asking again at once after an empty answer.
    longPollMs: original ? 0 : 1000,
  });
  return {
    ...resultOf(result, result.seconds),
    sent: result.sent,
    ackLatency: result.ackLatency.summary(),
  };
}

// ---------------------------------------------------------------- NATS JetStream (nats)

/** How long a stream's creation is retried (an R=3 cluster may be placing peers again). */
const NATS_STREAM_WAIT_MS = 30_000;

/**
 * The run's stream, created when missing. On three nodes the creation is retried for a bounded
 * time: a node that missed heartbeats during the previous run (two cores, three servers) counts as
 * offline for a moment, and the stream then fails with "no suitable peers for placement".
 */
async function natsStream(
  manager: JetStreamManager,
  options: WorkloadOptions,
  subject: string,
): Promise<void> {
  const deadline = performance.now() + NATS_STREAM_WAIT_MS;
  // Bounded by the deadline; the count is a second bound (a retry sleeps 500 ms).
  for (let attempt = 1; attempt <= NATS_STREAM_WAIT_MS / 500 + 1; attempt++) {
    try {
      await manager.streams.info(options.target);
      return;
    } catch {
      // Not there yet: create it.
    }
    try {
      await manager.streams.add({
        name: options.target,
        subjects: [subject],
        storage: StorageType.File,
        num_replicas: options.replicas,
      });
      return;
    } catch (error) {
      if (options.replicas === 1 || performance.now() > deadline) throw error;
      console.error(`bench: stream ${options.target}, attempt ${attempt}: ${describeError(error)}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  throw new Error(`bench: stream ${options.target} could not be created`);
}

async function natsWorkload(options: WorkloadOptions): Promise<WorkloadResult> {
  const connection = await natsConnect({ servers: options.servers, noEcho: true });
  try {
    const subject = `${options.target}.data`;
    const manager = await connection.jetstreamManager();
    if (options.workload === "drop") {
      await manager.streams.delete(options.target);
      return resultOf(newTally(), 0);
    }
    await natsStream(manager, options, subject);
    const js = connection.jetstream();
    if (options.workload === "produce") {
      return options.natsApi === "jetstream"
        ? await windowedProduce(options, (body) => js.publish(subject, body))
        : await natsAsyncProduce(connection, options, subject);
    }
    if (options.workload === "consume") return await natsConsume(connection, options);
    return await natsLatency(js, options, subject);
  } finally {
    await connection.close();
  }
}

/**
 * JetStream async publish with a window: core `publish` with a reply subject `<inbox>.<n>`, one
 * subscription on `<inbox>.*` receiving the PubAcks. A PubAck is JSON, `{"stream":..}` on
 * success and `{"error":..}` on failure, so its third byte tells which.
 */
async function natsAsyncProduce(
  connection: NatsConnection,
  options: WorkloadOptions,
  subject: string,
): Promise<WorkloadResult> {
  const tally = newTally();
  const body = makePayload(options.sizeBytes);
  const inbox = createInbox();
  const slots = 1 << Math.ceil(Math.log2(options.window * 2));
  const sentAt = new Float64Array(slots);
  const started = performance.now();
  const deadline = started + options.durationMs;
  let sent = 0;
  let inFlight = 0;
  let finished!: () => void;
  const done = new Promise<void>((resolve) => (finished = resolve));
  const pump = (): void => {
    while (inFlight < options.window && sent < options.messages && performance.now() < deadline) {
      sentAt[sent & (slots - 1)] = performance.now();
      connection.publish(subject, body, { reply: `${inbox}.${sent}` });
      sent += 1;
      inFlight += 1;
    }
    if (inFlight === 0) finished();
  };
  connection.subscribe(`${inbox}.*`, {
    callback: (error, message) => {
      inFlight -= 1;
      if (error || message.data[2] !== 0x73) { // 's' of {"stream"
        tally.failures += 1;
        tally.firstError ??= error ? describeError(error) : message.string();
      } else {
        const index = Number(message.subject.slice(inbox.length + 1));
        tally.latency.recordMs(performance.now() - sentAt[index & (slots - 1)]);
        tally.messages += 1;
        tally.bytes += body.length;
      }
      pump();
    },
  });
  await connection.flush();
  pump();
  await done;
  return resultOf(tally, (performance.now() - started) / 1000);
}

/** A durable pull consumer with no acks, read with `consume()` (pulls kept in flight). */
async function natsConsume(
  connection: NatsConnection,
  options: WorkloadOptions,
): Promise<WorkloadResult> {
  const manager = await connection.jetstreamManager();
  await manager.consumers.add(options.target, {
    durable_name: options.consumer,
    ack_policy: AckPolicy.None,
    deliver_policy: DeliverPolicy.All,
  });
  const consumer = await connection.jetstream().consumers.get(options.target, options.consumer);
  const tally = newTally();
  const started = performance.now();
  const messages = await consumer.consume({ max_messages: NATS_BATCH });
  const deadline = setTimeout(() => messages.stop(), options.durationMs);
  for await (const message of messages) {
    tally.messages += 1;
    tally.bytes += message.data.length;
    if (tally.messages >= options.messages) break;
  }
  clearTimeout(deadline);
  const seconds = (performance.now() - started) / 1000;
  messages.stop();
  return resultOf(tally, seconds);
}

/** An ordered consumer started at "new" follows the stream; the publisher sends at a rate. */
async function natsLatency(
  js: JetStreamClient,
  options: WorkloadOptions,
  subject: string,
): Promise<WorkloadResult> {
  const consumer = await js.consumers.get(options.target, {
    deliver_policy: DeliverPolicy.New,
  });
  const messages = await consumer.consume({ max_messages: 1000 });
  return await latencyRun(options, {
    publish: (body) => js.publish(subject, body),
    follow: async (arrived, stop) => {
      stop.then(() => messages.stop());
      for await (const message of messages) arrived(message.data);
    },
  });
}

// ---------------------------------------------------------------- Redis Streams (ioredis)

function redisClient(options: WorkloadOptions): Redis {
  const [host, port] = options.servers[0].split(":");
  return new Redis({
    host,
    port: Number(port),
    enableAutoPipelining: true,
    maxRetriesPerRequest: 1,
    lazyConnect: true,
  });
}

async function redisWorkload(options: WorkloadOptions): Promise<WorkloadResult> {
  const redis = redisClient(options);
  await redis.connect();
  try {
    const key = options.target;
    if (options.workload === "drop") {
      await redis.del(key);
      return resultOf(newTally(), 0);
    }
    if (options.workload === "produce") {
      return await windowedProduce(options, (body) => redis.xadd(key, "*", "d", body as Buffer));
    }
    if (options.workload === "consume") return await redisConsume(redis, options);
    const follower = redisClient(options);
    await follower.connect();
    try {
      return await redisLatency(redis, follower, options);
    } finally {
      follower.disconnect();
    }
  } finally {
    redis.disconnect();
  }
}

/** Batched XRANGE from the start, each batch starting after the last id seen. */
async function redisConsume(redis: Redis, options: WorkloadOptions): Promise<WorkloadResult> {
  const tally = newTally();
  const started = performance.now();
  const deadline = started + options.durationMs;
  let start = "-";
  while (tally.messages < options.messages && performance.now() < deadline) {
    const entries = await redis.xrangeBuffer(options.target, start, "+", "COUNT", REDIS_BATCH);
    if (entries.length === 0) break;
    for (const [, fields] of entries) tally.bytes += fields[1].length;
    tally.messages += entries.length;
    start = `(${entries[entries.length - 1][0].toString()}`;
  }
  return resultOf(tally, (performance.now() - started) / 1000);
}

async function redisLatency(
  redis: Redis,
  follower: Redis,
  options: WorkloadOptions,
): Promise<WorkloadResult> {
  const key = options.target;
  await redis.xadd(key, "*", "d", "warmup");
  let last = (await redis.xrevrange(key, "+", "-", "COUNT", 1))[0][0];
  return await latencyRun(options, {
    publish: (body) => redis.xadd(key, "*", "d", body as Buffer),
    follow: async (arrived, stop) => {
      let stopped = false;
      stop.then(() => (stopped = true));
      while (!stopped) {
        const reply = await follower.xreadBuffer("COUNT", 1000, "BLOCK", 100, "STREAMS", key, last);
        if (!reply) continue;
        const entries = reply[0][1];
        for (const [, fields] of entries) arrived(fields[1]);
        last = entries[entries.length - 1][0].toString();
      }
    },
  });
}

// ---------------------------------------------------------------- shared drivers

function newTally(): Tally {
  return { messages: 0, bytes: 0, failures: 0, latency: new Histogram() };
}

function resultOf(
  tally: {
    messages: number;
    bytes: number;
    failures: number;
    firstError?: string;
    latency: Histogram;
  },
  seconds: number,
): WorkloadResult {
  return {
    messages: tally.messages,
    bytes: tally.bytes,
    seconds,
    messagesPerSecond: seconds > 0 ? tally.messages / seconds : 0,
    megabytesPerSecond: seconds > 0 ? tally.bytes / 1e6 / seconds : 0,
    failures: tally.failures,
    firstError: tally.firstError,
    latency: tally.latency.summary(),
  };
}

/**
 * `connections` independent publishers, each keeping `window` sends in flight and refilling one
 * slot per acknowledgement (a callback per reply, no async function per message).
 */
async function windowedProduce(
  options: WorkloadOptions,
  send: (body: Uint8Array) => Promise<unknown>,
): Promise<WorkloadResult> {
  const tally = newTally();
  const body = Buffer.from(makePayload(options.sizeBytes));
  const started = performance.now();
  const deadline = started + options.durationMs;
  await Promise.all(
    split(options.messages, options.connections).map((quota) =>
      new Promise<void>((resolve) => {
        let sent = 0;
        let inFlight = 0;
        const pump = (): void => {
          while (inFlight < options.window && sent < quota && performance.now() < deadline) {
            const sentAt = performance.now();
            inFlight += 1;
            sent += 1;
            send(body).then(() => {
              inFlight -= 1;
              tally.latency.recordMs(performance.now() - sentAt);
              tally.messages += 1;
              tally.bytes += body.length;
              pump();
            }, (error) => {
              inFlight -= 1;
              tally.failures += 1;
              tally.firstError ??= describeError(error);
              pump();
            });
          }
          if (inFlight === 0) resolve();
        };
        pump();
      })
    ),
  );
  return resultOf(tally, (performance.now() - started) / 1000);
}

interface LatencyParts {
  publish(body: Uint8Array): Promise<unknown>;
  /** Reads until `stop` resolves, calling `arrived` with each message's payload. */
  follow(arrived: (payload: Uint8Array) => void, stop: Promise<void>): Promise<void>;
}

/**
 * The same open-loop schedule as lib/bench/load.ts runLatency: every ~1 ms tick sends what is
 * due, each payload stamped with its send time; the follower records arrival minus stamp.
 */
async function latencyRun(options: WorkloadOptions, parts: LatencyParts): Promise<WorkloadResult> {
  const tally = newTally();
  const acks = new Histogram();
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const following = parts.follow((payload) => {
    if (payload.length < 8) return;
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    tally.latency.recordMs(performance.now() - view.getFloat64(0));
    tally.messages += 1;
    tally.bytes += payload.length;
  }, stopped);
  const template = makePayload(options.sizeBytes);
  const total = Math.floor((options.durationMs * options.rate) / 1000);
  const started = performance.now();
  let sent = 0;
  let acked = 0;
  let inFlight = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const elapsed = performance.now() - started;
      const due = Math.min(total, Math.floor((elapsed * options.rate) / 1000));
      while (sent < due) {
        const body = Buffer.from(template);
        const sentAt = performance.now();
        new DataView(body.buffer, body.byteOffset, body.byteLength).setFloat64(0, sentAt);
        sent += 1;
        inFlight += 1;
        parts.publish(body).then(() => {
          inFlight -= 1;
          acked += 1;
          acks.recordMs(performance.now() - sentAt);
        }, (error) => {
          inFlight -= 1;
          tally.failures += 1;
          tally.firstError ??= describeError(error);
        });
      }
      if (elapsed < options.durationMs) setTimeout(tick, 1);
      else resolve();
    };
    tick();
  });
  const grace = performance.now() + LATENCY_GRACE_MS;
  while ((inFlight > 0 || tally.messages < acked) && performance.now() < grace) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const seconds = (performance.now() - started) / 1000;
  stop();
  await Promise.race([following, new Promise((resolve) => setTimeout(resolve, 1000))]);
  return { ...resultOf(tally, seconds), sent, ackLatency: acks.summary() };
}

if (import.meta.main) {
  main().then((code) => process.exit(code), (error) => {
    console.error(`bench client: ${describeError(error)}`);
    process.exit(1);
  });
}

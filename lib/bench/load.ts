/**
 * @module Load drivers behind `metaq bench` and the comparison harness (bench/): pipelined
 * produce, backlog consume with raw `get`s, and end-to-end latency at a fixed rate, all on the
 * project's client. Every run is bounded by a message count and a deadline. Nothing here
 * asserts a speed; it measures and returns numbers.
 *
 * Produce has two paths: `connection` drives BrokerConnection with `encodePut` and one
 * `.then` callback per reply (no async function per message), and `producer` goes through the
 * high-level Producer, so the cost of that API can be read off the difference.
 */
import { setImmediate } from "node:timers";
import { MetaqClient, parseAddress } from "../client/client.ts";
import {
  BrokerConnection,
  type ClientAuth,
  type ClientTls,
  type Reply,
} from "../client/connection.ts";
import { Producer } from "../client/producer.ts";
import { metaqChecksum } from "../crc32.ts";
import { describeError } from "../errors.ts";
import { FETCH_BYTES_MAX, MESSAGE_BYTES_LIMIT_MAX, RECORD_HEADER_BYTES } from "../limits.ts";
import { encodeExtension, encodeGet, encodePut } from "../protocol/encoder.ts";
import { FETCH_VERB } from "../protocol/commands.ts";
import { Histogram } from "./histogram.ts";
import { walkRecordChunks, walkRecords } from "../protocol/record.ts";

export type ProduceApi = "connection" | "producer";

/** Counters a caller may read while a run goes on (for a progress line). */
export interface LiveCounters {
  messages: number;
  bytes: number;
  failures: number;
}

export interface LoadResult {
  /** Messages acknowledged (produce) or received (consume, latency). */
  readonly messages: number;
  /** Payload bytes of those messages. */
  readonly bytes: number;
  readonly seconds: number;
  readonly failures: number;
  readonly firstError?: string;
  /** Per-request latency: put→ack (produce), get→value (consume), send→arrival (latency). */
  readonly latency: Histogram;
  /** Whether the run stopped at its deadline before its message count. */
  readonly hitDeadline: boolean;
}

export interface ProduceOptions {
  readonly broker: string;
  readonly topic: string;
  /** Partitions written round robin, message by message. */
  readonly partitions: readonly number[];
  readonly messages: number;
  readonly sizeBytes: number;
  readonly connections: number;
  /** Puts in flight per connection. */
  readonly pipeline: number;
  readonly durationMs: number;
  readonly api: ProduceApi;
  readonly requestTimeoutMs?: number;
  readonly live?: LiveCounters;
  /** Authentication and TLS for every connection of the run. */
  readonly security?: ClientSecurity;
}

export interface ConsumeOptions {
  readonly broker: string;
  readonly topic: string;
  readonly group: string;
  /** Partitions read, spread over the connections; one `get` in flight per partition. */
  readonly partitions: readonly number[];
  /** Stop once this many messages were received. */
  readonly messages: number;
  readonly connections: number;
  /** Bytes asked per `get` (MetaQ's client asks for 1 MiB). */
  readonly maxSizeBytes: number;
  readonly durationMs: number;
  readonly requestTimeoutMs?: number;
  readonly live?: LiveCounters;
  /** Authentication and TLS for every connection of the run. */
  readonly security?: ClientSecurity;
}

export interface LatencyOptions {
  readonly broker: string;
  readonly topic: string;
  readonly partition: number;
  /** Messages per second, sent open loop (not waiting for acks). */
  readonly rate: number;
  readonly sizeBytes: number;
  readonly durationMs: number;
  /** Pause after an empty `get` (404) before asking again; 0 asks again at once. */
  readonly pollDelayMs: number;
  /**
   * Follow with metaq's long poll (`fetch`), waiting up to this long at the end for the next
   * message; 0: MetaQ's `get`, asked again after each empty answer.
   */
  readonly longPollMs: number;
  readonly requestTimeoutMs?: number;
  readonly live?: LiveCounters;
  /** Authentication and TLS for every connection of the run. */
  readonly security?: ClientSecurity;
}

export interface LatencyResult extends LoadResult {
  readonly sent: number;
  /** Put→ack latency of the same messages. */
  readonly ackLatency: Histogram;
}

/** Bytes of the send stamp at the start of each latency payload (a float64). */
export const STAMP_BYTES = 8;
/** After the sending stops, how long the latency consumer waits for stragglers. */
const LATENCY_GRACE_MS = 3000;
const decoder = new TextDecoder();

/** A payload of `sizeBytes` filled with a fixed, non-repeating-looking pattern. */
export function makePayload(sizeBytes: number): Uint8Array {
  const payload = new Uint8Array(sizeBytes);
  let state = 0x9e3779b9;
  for (let index = 0; index < sizeBytes; index++) {
    state = (state * 1103515245 + 12345) >>> 0;
    payload[index] = 0x20 + (state >>> 24) % 95; // printable, so `metaq consume` shows it
  }
  return payload;
}

export interface ClientSecurity {
  readonly auth?: ClientAuth;
  readonly tls?: ClientTls;
}

export function connect(
  broker: string,
  requestTimeoutMs = 30_000,
  security: ClientSecurity = {},
): Promise<BrokerConnection> {
  return BrokerConnection.connect({ ...parseAddress(broker), requestTimeoutMs, ...security });
}

/** Pipelined, acknowledged produce over `connections` connections. */
export async function runProduce(options: ProduceOptions): Promise<LoadResult> {
  const state = newState(options.live);
  const started = performance.now();
  const deadline = started + options.durationMs;
  const quotas = split(options.messages, options.connections);
  const runs = quotas.map((quota) =>
    options.api === "producer"
      ? produceWithProducer(options, { quota, deadline, state })
      : produceOnConnection(options, { quota, deadline, state })
  );
  await Promise.all(runs);
  const stopped = performance.now() >= deadline && state.live.messages < options.messages;
  return finish(state, started, stopped);
}

/** Reads a backlog with raw `get`s; stops at `messages`, at the end of every partition, or at the deadline. */
export async function runConsume(options: ConsumeOptions): Promise<LoadResult> {
  const state = newState(options.live);
  const connections = await Promise.all(
    Array.from(
      { length: Math.min(options.connections, options.partitions.length) },
      () => connect(options.broker, options.requestTimeoutMs, options.security),
    ),
  );
  const started = performance.now();
  const deadline = started + options.durationMs;
  try {
    await Promise.all(
      options.partitions.map((partition, index) =>
        consumePartition(options, {
          connection: connections[index % connections.length],
          partition,
          deadline,
          state,
        })
      ),
    );
  } finally {
    for (const connection of connections) connection.close();
  }
  return finish(state, started, performance.now() >= deadline);
}

/**
 * Sends at a fixed rate on one connection (each payload starts with its send time) while a
 * second connection follows the partition with `get`s and measures when each message arrives.
 */
export async function runLatency(options: LatencyOptions): Promise<LatencyResult> {
  const producer = await connect(options.broker, options.requestTimeoutMs, options.security);
  const consumer = await connect(options.broker, options.requestTimeoutMs, options.security);
  const state = newState(options.live);
  const ackLatency = new Histogram();
  try {
    // One put first, so the partition exists and its end can be asked for.
    const warmup = await putOne(producer, options, makePayload(options.sizeBytes));
    if (warmup.kind !== "result" || warmup.code !== 200) {
      throw new Error(`Cannot start the latency run: put failed: ${decoder.decode(warmup.body)}`);
    }
    const startOffset = await endOffset(consumer, options);
    const sending = { sent: 0, acked: 0, done: false };
    const started = performance.now();
    const following = followPartition(consumer, options, { startOffset, sending, state });
    await sendAtRate(producer, options, { sending, state, ackLatency });
    await following;
    const result = finish(state, started, false);
    return { ...result, sent: sending.sent, ackLatency };
  } finally {
    producer.close();
    consumer.close();
  }
}

interface RunState {
  readonly live: LiveCounters;
  readonly latency: Histogram;
  firstError?: string;
  next: number;
}

function newState(live?: LiveCounters): RunState {
  const counters = live ?? { messages: 0, bytes: 0, failures: 0 };
  return { live: counters, latency: new Histogram(), next: 0 };
}

function finish(state: RunState, started: number, hitDeadline: boolean): LoadResult {
  return {
    messages: state.live.messages,
    bytes: state.live.bytes,
    seconds: (performance.now() - started) / 1000,
    failures: state.live.failures,
    firstError: state.firstError,
    latency: state.latency,
    hitDeadline,
  };
}

function fail(state: RunState, reason: string): void {
  state.live.failures += 1;
  state.firstError ??= reason;
}

/** Splits `total` into `parts` nearly equal whole numbers. */
export function split(total: number, parts: number): number[] {
  return Array.from(
    { length: parts },
    (_, index) => Math.floor(total / parts) + (index < total % parts ? 1 : 0),
  );
}

async function produceOnConnection(
  options: ProduceOptions,
  run: { quota: number; deadline: number; state: RunState },
): Promise<void> {
  const connection = await connect(options.broker, options.requestTimeoutMs, options.security);
  const { topic, partitions, pipeline } = options;
  const { quota, deadline, state } = run;
  const body = makePayload(options.sizeBytes);
  const checksum = metaqChecksum(body);
  try {
    await new Promise<void>((resolve) => {
      let sent = 0;
      let inFlight = 0;
      const pump = (): void => {
        while (
          inFlight < pipeline && sent < quota && !connection.closed &&
          performance.now() < deadline
        ) {
          const partition = partitions[state.next++ % partitions.length];
          const opaque = connection.nextOpaque();
          const bytes = encodePut({ topic, partition, flag: 0, checksum, opaque, body });
          const sentAt = performance.now();
          inFlight += 1;
          sent += 1;
          connection.request(bytes, opaque).then((reply) => {
            inFlight -= 1;
            if (reply.kind === "result" && reply.code === 200) {
              state.latency.recordMs(performance.now() - sentAt);
              state.live.messages += 1;
              state.live.bytes += body.length;
            } else {
              fail(state, replyText(reply));
            }
            pump();
          }, (error) => {
            inFlight -= 1;
            fail(state, describeError(error));
            pump();
          });
        }
        if (inFlight === 0) resolve();
      };
      pump();
    });
  } finally {
    connection.close();
  }
}

async function produceWithProducer(
  options: ProduceOptions,
  run: { quota: number; deadline: number; state: RunState },
): Promise<void> {
  const client = new MetaqClient({
    brokers: [options.broker],
    ...options.security,
    requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
    reconnectAttemptsMax: 1,
  });
  const producer = new Producer(client, { windowMax: options.pipeline });
  const { quota, deadline, state } = run;
  const body = makePayload(options.sizeBytes);
  try {
    await client.connect();
    for (let sent = 0; sent < quota && performance.now() < deadline; sent++) {
      const partition = options.partitions[state.next++ % options.partitions.length];
      const sentAt = performance.now();
      producer.send(options.topic, body, { partition }).then(() => {
        state.latency.recordMs(performance.now() - sentAt);
        state.live.messages += 1;
        state.live.bytes += body.length;
      }, (error) => fail(state, describeError(error)));
      if (producer.inFlight >= options.pipeline) await producer.whenWritable();
    }
    await producer.flush();
  } finally {
    client.close();
  }
}

async function consumePartition(
  options: ConsumeOptions,
  run: { connection: BrokerConnection; partition: number; deadline: number; state: RunState },
): Promise<void> {
  const { connection, partition, deadline, state } = run;
  let offset = 0;
  let maxSize = options.maxSizeBytes;
  while (state.live.messages < options.messages && performance.now() < deadline) {
    const opaque = connection.nextOpaque();
    const request = encodeGet({
      topic: options.topic,
      group: options.group,
      partition,
      offset,
      maxSize,
      opaque,
    });
    const askedAt = performance.now();
    const reply = await connection.request(request, opaque);
    state.latency.recordMs(performance.now() - askedAt);
    if (reply.kind === "value") {
      const walk = walkRecordChunks(reply.chunks ?? [reply.body], MESSAGE_BYTES_LIMIT_MAX);
      if (walk.records === 0) {
        // One record larger than maxSize: ask for more, as MetaQ's consumer does (bounded).
        if (maxSize >= FETCH_BYTES_MAX) throw new Error(`Cannot fetch record at ${offset}`);
        maxSize *= 2;
        continue;
      }
      offset += walk.bytes;
      state.live.messages += walk.records;
      state.live.bytes += walk.bytes - walk.records * 20;
      continue;
    }
    if (reply.code === 301) {
      const moved = Number(decoder.decode(reply.body));
      // A move back is MetaQ's (Java) flushed end: it serves bytes past it, then sends a get
      // beyond it back there. Those records were read once already: the partition is read.
      if (moved < offset) return;
      offset = moved;
    } else if (reply.code === 404) return; // this partition is read to its end
    else throw new Error(`Cannot consume ${options.topic}-${partition}: ${replyText(reply)}`);
  }
}

function putOne(
  connection: BrokerConnection,
  options: LatencyOptions,
  body: Uint8Array,
): Promise<Reply> {
  const opaque = connection.nextOpaque();
  const bytes = encodePut({
    topic: options.topic,
    partition: options.partition,
    flag: 0,
    checksum: metaqChecksum(body),
    opaque,
    body,
  });
  return connection.request(bytes, opaque);
}

/** The partition's end, from a `get` at Java's Long.MAX_VALUE (the broker answers 301 end). */
async function endOffset(connection: BrokerConnection, options: LatencyOptions): Promise<number> {
  const opaque = connection.nextOpaque();
  const reply = await connection.request(
    encodeGet({
      topic: options.topic,
      group: "bench",
      partition: options.partition,
      offset: 9223372036854775807n,
      maxSize: 1024,
      opaque,
    }),
    opaque,
  );
  if (reply.kind === "result" && reply.code === 301) return Number(decoder.decode(reply.body));
  throw new Error(`Cannot find the end of ${options.topic}-${options.partition}`);
}

interface Sending {
  sent: number;
  acked: number;
  done: boolean;
}

/** Open-loop sender: every tick sends the messages due by now, each stamped as it leaves. */
async function sendAtRate(
  connection: BrokerConnection,
  options: LatencyOptions,
  run: { sending: Sending; state: RunState; ackLatency: Histogram },
): Promise<void> {
  const { sending, state, ackLatency } = run;
  const template = makePayload(options.sizeBytes);
  const started = performance.now();
  let inFlight = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const elapsed = performance.now() - started;
      const due = Math.min(
        Math.floor((elapsed * options.rate) / 1000),
        Math.floor((options.durationMs * options.rate) / 1000),
      );
      while (sending.sent < due && !connection.closed) {
        const body = template.slice();
        const sentAt = performance.now();
        new DataView(body.buffer).setFloat64(0, sentAt);
        sending.sent += 1;
        inFlight += 1;
        putOne(connection, options, body).then((reply) => {
          inFlight -= 1;
          if (reply.kind === "result" && reply.code === 200) {
            ackLatency.recordMs(performance.now() - sentAt);
            sending.acked += 1;
          } else fail(state, replyText(reply));
        }, (error) => {
          inFlight -= 1;
          fail(state, describeError(error));
        });
      }
      if (elapsed < options.durationMs && !connection.closed) setTimeout(tick, 1);
      else resolve();
    };
    tick();
  });
  while (inFlight > 0 && !connection.closed) await sleep(1);
  sending.done = true;
}

async function followPartition(
  connection: BrokerConnection,
  options: LatencyOptions,
  run: { startOffset: number; sending: Sending; state: RunState },
): Promise<void> {
  const { sending, state } = run;
  let offset = run.startOffset;
  let graceEnd = Infinity;
  while (performance.now() < graceEnd && !connection.closed) {
    if (sending.done) {
      if (state.live.messages >= sending.acked) return;
      if (graceEnd === Infinity) graceEnd = performance.now() + LATENCY_GRACE_MS;
    }
    const opaque = connection.nextOpaque();
    const reply = await connection.request(
      options.longPollMs > 0
        ? encodeExtension(
          FETCH_VERB,
          [options.topic, "bench", options.partition, offset, 1024 * 1024, options.longPollMs],
          opaque,
        )
        : encodeGet({
          topic: options.topic,
          group: "bench",
          partition: options.partition,
          offset,
          maxSize: 1024 * 1024,
          opaque,
        }),
      opaque,
      (options.requestTimeoutMs ?? 30_000) + options.longPollMs,
    );
    if (reply.kind === "value") {
      const arrived = performance.now();
      const body = reply.body;
      const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
      const walk = walkRecords(body, MESSAGE_BYTES_LIMIT_MAX, (position, length) => {
        if (length >= STAMP_BYTES) {
          state.latency.recordMs(arrived - view.getFloat64(position + RECORD_HEADER_BYTES));
        }
      });
      offset += walk.bytes;
      state.live.messages += walk.records;
      state.live.bytes += walk.bytes - walk.records * 20;
    } else if (reply.code === 404) {
      await (options.pollDelayMs > 0 ? sleep(options.pollDelayMs) : nextTurn());
    } else if (reply.code === 301) {
      const moved = Number(decoder.decode(reply.body));
      // The original MetaQ (Java) serves bytes past its last fsync, then answers a get beyond
      // that point with a 301 back to it: following it would count those records twice, so
      // a move back is an empty answer until the fsync catches up.
      if (moved >= offset) offset = moved;
      else await (options.pollDelayMs > 0 ? sleep(options.pollDelayMs) : nextTurn());
    } else {
      throw new Error(`Cannot follow ${options.topic}: ${replyText(reply)}`);
    }
  }
}

function replyText(reply: Reply): string {
  const text = decoder.decode(reply.body);
  return reply.kind === "value" ? "unexpected value reply" : `${reply.code} ${text}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

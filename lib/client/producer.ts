/**
 * @module Producer: sends messages with a bounded window of unacknowledged puts (pipelining
 * many messages per round trip; those sent in one turn of the event loop leave as one batched
 * put per partition when the broker takes them, put_batcher.ts), choosing partitions with a
 * selector: round robin (default for keyless messages), random, by key hash (same key, same
 * partition), or custom. Every message gets a promise (`send`) or a callback (`sendAsync`);
 * failures are never dropped.
 *
 * `sendOrdered` keeps the order of one key's messages across retries: a key has at most one put
 * in flight, and a failed put is retried before the next message of that key is sent. It
 * retries when the put is known not to have been written (503, 403, checksum) and when the
 * outcome is unknown (timeout, broken connection, storage error): a retry of an unknown outcome
 * may store the message twice, but always next to itself, so order holds. A permanent refusal
 * (400, unknown topic, wrong partition) fails that message and every message of the key queued
 * behind it, so the key's stream has no gap that later messages jump over.
 */
import type { DeliveryTime } from "../protocol/delayed.ts";
import { crc32 } from "../crc32.ts";
import { describeError } from "../errors.ts";
import type { Message, MetaqClient, PutResult } from "./client.ts";
import { BrokerError, ConnectionError, TimeoutError } from "./errors.ts";
import { PutBatcher } from "./put_batcher.ts";

export interface SelectorInput {
  readonly topic: string;
  readonly partitions: number;
  readonly key?: string;
}

/** Returns a partition in [0, partitions). */
export type PartitionSelector = (input: SelectorInput) => number;

export function roundRobinSelector(): PartitionSelector {
  const next = new Map<string, number>();
  return ({ topic, partitions }) => {
    const value = next.get(topic) ?? 0;
    next.set(topic, value + 1);
    return value % partitions;
  };
}

export function randomSelector(random: () => number = Math.random): PartitionSelector {
  return ({ partitions }) => Math.floor(random() * partitions);
}

const encoder = new TextEncoder();

/** CRC-32 of the key's UTF-8 bytes modulo the partition count; keyless messages go round robin. */
export function keyHashSelector(
  fallback: PartitionSelector = roundRobinSelector(),
): PartitionSelector {
  return (input) =>
    input.key === undefined ? fallback(input) : crc32(encoder.encode(input.key)) % input.partitions;
}

export interface ProducerOptions {
  /** Most puts in flight at once (MetaQ's async producer bounds its window too). */
  readonly windowMax?: number;
  /** Default: key hash for messages with a key, round robin for the others. */
  readonly selector?: PartitionSelector;
  /** Retries of one ordered message before it fails (default 5). */
  readonly orderedRetriesMax?: number;
  /** Waits between retries of an ordered message, in ms; the last repeats. */
  readonly orderedRetryDelaysMs?: readonly number[];
}

export interface SendOptions {
  /** Explicit partition; overrides the selector. */
  readonly partition?: number;
  /** Routes by key hash with the default selector. */
  readonly key?: string;
  readonly attribute?: string;
  readonly flag?: number;
  /**
   * Delivered into its partition this many ms from now (`delay`, docs/delayed.md) instead of at
   * once; the result's offset is then -1.
   */
  readonly delayMs?: number;
  /** Delivered at this time (a Date or epoch ms); at once when it has passed. */
  readonly deliverAt?: Date | number;
}

export type SendCallback = (error: Error | undefined, result: PutResult | undefined) => void;

/** What happened to a put that failed: decides whether an ordered send may retry it. */
export type FailureOutcome = "notWritten" | "unknown" | "refused";

export interface ProducerCounters {
  sent: number;
  acknowledged: number;
  failed: number;
  retried: number;
}

interface OrderedItem {
  readonly payload: Uint8Array;
  readonly options: SendOptions;
  readonly resolve: (result: PutResult) => void;
  readonly reject: (error: Error) => void;
}

const ORDERED_RETRY_DELAYS_MS = [50, 100, 250, 500, 1000];

export class Producer {
  readonly client: MetaqClient;
  readonly windowMax: number;
  readonly counters: ProducerCounters = { sent: 0, acknowledged: 0, failed: 0, retried: 0 };
  readonly #selector: PartitionSelector;
  readonly #partitions = new Map<string, Promise<number>>();
  readonly #counts = new Map<string, number>();
  readonly #ordered = new Map<string, OrderedItem[]>();
  readonly #options: ProducerOptions;
  readonly #batcher: PutBatcher;
  #inFlight = 0;
  #waiters: (() => void)[] = [];
  #idleWaiters: (() => void)[] = [];

  constructor(client: MetaqClient, options: ProducerOptions = {}) {
    this.client = client;
    this.#options = options;
    this.windowMax = options.windowMax ?? 1024;
    this.#selector = options.selector ?? keyHashSelector();
    // A batch leaves once it holds half the window, so that a full window is at least two
    // batches: the broker stores one while this client builds the next and takes the acks of
    // the one before. One batch per window made them take turns, each idle while the other
    // worked (window 1024, fsync before ack, one broker: +22 % at 100 B, +26 % at 1 KiB;
    // bench/README.md, "Batched produce").
    this.#batcher = new PutBatcher(client, {
      results: true,
      batchRecordsMax: Math.ceil(this.windowMax / 2),
    });
  }

  /** Puts sent (or queued behind their key) and not yet settled. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Sends one message; waits for a window slot first, then for the broker's acknowledgement. */
  send(
    topic: string,
    payload: Uint8Array | string,
    options: SendOptions = {},
  ): Promise<PutResult> {
    if (this.#inFlight >= this.windowMax) return this.#sendWhenWritable(topic, payload, options);
    this.#inFlight += 1; // checked and reserved in one turn, so the window is never exceeded
    const partitions = this.#counts.get(topic);
    if (
      partitions === undefined || options.delayMs !== undefined ||
      options.deliverAt !== undefined
    ) {
      return this.#put(topic, bytesOf(payload), options).finally(() => this.#settle());
    }
    // The common case in one promise (no async frames between the caller and the batch): a
    // producer sending hundreds of thousands of messages a second spends its time here.
    this.counters.sent += 1;
    return new Promise((resolve, reject) => {
      const done = (error: Error | undefined, result: PutResult | undefined) => {
        if (error || !result) this.counters.failed += 1;
        else this.counters.acknowledged += 1;
        this.#settle();
        if (error || !result) reject(error);
        else resolve(result);
      };
      let partition: number;
      try {
        partition = options.partition ?? this.#selector({ topic, partitions, key: options.key });
      } catch (error) {
        return done(error as Error, undefined);
      }
      const message = {
        payload: bytesOf(payload),
        attribute: options.attribute,
        flag: options.flag,
      };
      this.#batcher.add(topic, partition, message, done);
    });
  }

  /** `send` once the window has a slot (another send may take a freed slot first: asks again). */
  async #sendWhenWritable(
    topic: string,
    payload: Uint8Array | string,
    options: SendOptions,
  ): Promise<PutResult> {
    while (this.#inFlight >= this.windowMax) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    return await this.send(topic, payload, options);
  }

  /** Like send, with a callback instead of a promise; it is called exactly once. */
  sendAsync(
    topic: string,
    payload: Uint8Array | string,
    options: SendOptions,
    callback: SendCallback,
  ): void {
    this.send(topic, payload, options).then(
      (result) => callback(undefined, result),
      (error) => callback(error as Error, undefined),
    );
  }

  /**
   * Sends `payload` to the partition of `key`, after every earlier ordered message of the same
   * topic and key is acknowledged; retries as the module comment says.
   */
  async sendOrdered(
    topic: string,
    key: string,
    payload: Uint8Array | string,
    options: Omit<SendOptions, "key" | "partition"> = {},
  ): Promise<PutResult> {
    while (this.#inFlight >= this.windowMax) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    this.#inFlight += 1;
    return await new Promise<PutResult>((resolve, reject) => {
      const queueKey = `${topic}\u0000${key}`;
      const item = { payload: bytesOf(payload), options: { ...options, key }, resolve, reject };
      const queue = this.#ordered.get(queueKey);
      if (queue) return void queue.push(item);
      this.#ordered.set(queueKey, [item]);
      void this.#drainOrdered(topic, queueKey);
    });
  }

  /** Partition count of `topic`, asked once from the broker and cached. */
  partitionCount(topic: string): Promise<number> {
    let count = this.#partitions.get(topic);
    if (!count) {
      count = this.client.topicMetadata(topic).then((meta) => {
        this.#counts.set(topic, meta.partitions);
        return meta.partitions;
      });
      count.catch(() => this.#partitions.delete(topic));
      this.#partitions.set(topic, count);
    }
    return count;
  }

  /** Resolves when a send would not wait for a window slot. */
  async whenWritable(): Promise<void> {
    while (this.#inFlight >= this.windowMax) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /** Resolves when nothing is in flight. */
  async flush(): Promise<void> {
    while (this.#inFlight > 0) {
      await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    }
  }

  /** One put; the partition count is awaited only the first time a topic is seen. */
  async #put(topic: string, payload: Uint8Array, options: SendOptions): Promise<PutResult> {
    this.counters.sent += 1;
    try {
      const partitions = this.#counts.get(topic) ?? await this.partitionCount(topic);
      const partition = options.partition ??
        this.#selector({ topic, partitions, key: options.key });
      const message: Message = { payload, attribute: options.attribute, flag: options.flag };
      const when = deliveryTimeOf(options);
      const result = when
        ? await this.client.putDelayed(topic, partition, message, when)
        : await this.#putBatched(topic, partition, message);
      this.counters.acknowledged += 1;
      return result;
    } catch (error) {
      this.counters.failed += 1;
      throw error;
    }
  }

  /** One message, in a batched put with the others sent in this turn (put_batcher.ts). */
  #putBatched(topic: string, partition: number, message: Message): Promise<PutResult> {
    return new Promise((resolve, reject) =>
      this.#batcher.add(topic, partition, message, (error, result) => {
        if (error || !result) reject(error);
        else resolve(result);
      })
    );
  }

  /** Sends the key's queue head until it is empty; one put of the key in flight at a time. */
  async #drainOrdered(topic: string, queueKey: string): Promise<void> {
    const queue = this.#ordered.get(queueKey)!;
    while (queue.length > 0) {
      const item = queue[0];
      try {
        item.resolve(await this.#putWithRetries(topic, item));
        queue.shift();
        this.#settle();
      } catch (error) {
        const failed = queue.splice(0);
        item.reject(error as Error);
        for (const behind of failed.slice(1)) {
          behind.reject(
            BrokerError.verbatim(
              "conflict",
              `Cannot send: an earlier message with key ${behind.options.key} failed (${
                describeError(error)
              })`,
            ),
          );
        }
        for (let i = 0; i < failed.length; i++) this.#settle();
      }
    }
    this.#ordered.delete(queueKey);
  }

  async #putWithRetries(topic: string, item: OrderedItem): Promise<PutResult> {
    const retriesMax = this.#options.orderedRetriesMax ?? 5;
    const delays = this.#options.orderedRetryDelaysMs ?? ORDERED_RETRY_DELAYS_MS;
    for (let attempt = 0;; attempt++) {
      try {
        return await this.#put(topic, item.payload, item.options);
      } catch (error) {
        if (failureOutcome(error) === "refused" || attempt >= retriesMax) throw error;
        this.counters.retried += 1;
        const delayMs = delays[Math.min(attempt, delays.length - 1)];
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
  }

  #settle(): void {
    this.#inFlight -= 1;
    this.#waiters.shift()?.();
    if (this.#inFlight === 0) { for (const wake of this.#idleWaiters.splice(0)) wake(); }
  }
}

/**
 * Classifies a failed put. A put that never left this client was not written. The broker's put
 * replies carry MetaQ's texts, so a 500 is told apart by its detail: unknown topics and wrong
 * partitions are refusals, a checksum failure was not written, anything else (a storage error)
 * may or may not have been.
 */
export function failureOutcome(error: unknown): FailureOutcome {
  if (error instanceof ConnectionError) return error.unsent ? "notWritten" : "unknown";
  if (error instanceof TimeoutError) return "unknown";
  if (!(error instanceof BrokerError)) return "refused";
  if (error.status === 503 || error.status === 403) return "notWritten";
  if (error.status !== 500) return "refused";
  const text = error.message;
  if (text.includes("do not accept topic") || text.includes("wrong partition")) return "refused";
  if (text.includes("Checksum failure")) return "notWritten";
  return "unknown";
}

function bytesOf(payload: Uint8Array | string): Uint8Array {
  return typeof payload === "string" ? encoder.encode(payload) : payload;
}

/** The delivery time `options` ask for, or undefined for an ordinary put. */
function deliveryTimeOf(options: SendOptions): DeliveryTime | undefined {
  if (options.delayMs !== undefined && options.deliverAt !== undefined) {
    throw new RangeError("Cannot send: give delayMs or deliverAt, not both");
  }
  if (options.delayMs !== undefined) {
    if (!Number.isSafeInteger(options.delayMs) || options.delayMs < 0) {
      throw new RangeError(`Cannot send: delayMs ${options.delayMs} is not a whole number >= 0`);
    }
    return { delayMs: options.delayMs };
  }
  if (options.deliverAt === undefined) return undefined;
  const atMs = typeof options.deliverAt === "number"
    ? options.deliverAt
    : options.deliverAt.getTime();
  if (!Number.isSafeInteger(atMs) || atMs < 0) {
    throw new RangeError(`Cannot send: deliverAt ${String(options.deliverAt)} is not a time`);
  }
  return { deliverAtMs: atMs };
}

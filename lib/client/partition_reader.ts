/**
 * @module PartitionReader: the pull loop for one partition, with MetaQ's consumer semantics
 * (consumer/SimpleFetchManager.java). It fetches from its position, walks the complete records
 * of each reply, hands them one at a time to the handler, and moves its position by the bytes of
 * the records it finished. Who owns the partition, and when offsets are committed, is decided
 * above it (consumer.ts); it only reports `ackedOffset`, the position a commit may record.
 *
 * | reply                                   | action                                             |
 * | --------------------------------------- | -------------------------------------------------- |
 * | `value` with complete records           | deliver them in order; fetch again at once         |
 * | `value` with only part of a record      | grow maxSize to fit it (up to FETCH_BYTES_MAX)     |
 * | `301 <offset>`                          | move there (out of range, or a filtered slice)     |
 * | `404`/`403` (nothing there)             | wait: 1/10 of maxDelayFetchMs more each time, capped |
 * | `404` after a long poll's wait (metaq)   | fetch again at once (the broker waited)            |
 * | records that do not decode (checksum)   | ask `offset` for the segment start, go there       |
 * | handler throws (or rolls back)          | fetch again from that record after a delay; after  |
 * |                                         | `maxFetchRetries` failures hand it to `reject`     |
 */
import { assert } from "../assert.ts";
import { describeError } from "../errors.ts";
import { FETCH_BYTES_MAX } from "../limits.ts";
import type { Logger } from "../log.ts";
import { LONG_MAX_TEXT } from "../protocol/commands.ts";
import {
  type DecodedRecord,
  decodeRecordChunks,
  RECORD_HEADER_BYTES,
  splitAttribute,
} from "../protocol/record.ts";
import type { GetResult, MetaqClient } from "./client.ts";

/**
 * Longest a reader's fetch waits at the end of the partition on a metaq broker (a long poll,
 * so a new message arrives at once): bounds how long stopping a reader takes.
 */
const LONG_POLL_MS_MAX = 1000;
import type { MessageIdCache } from "./message_id_cache.ts";

/** Largest fetch the reader grows to (MetaQ stops doubling above its 2 MiB read limit). */
const JAVA_LONG_MAX = BigInt(LONG_MAX_TEXT);

/** A message handed to a handler. */
export interface ConsumedMessage {
  readonly topic: string;
  readonly partition: number;
  /**
   * The MetaQ broker id whose partition this is, for consumers that read a fleet found in
   * ZooKeeper (zk_consumer.ts), where partition numbers repeat on every broker; else undefined.
   */
  readonly brokerId?: number;
  /** Offset of the record's first byte. */
  readonly offset: number;
  /** Offset just past the record: where consumption resumes once this message is done. */
  readonly nextOffset: number;
  readonly id: bigint;
  readonly flag: number;
  readonly attribute?: string;
  readonly payload: Uint8Array;
  /** Manual-ack mode: everything up to and including this message is done. */
  ack(): void;
  /** Redeliver from the last acknowledged message (manual ack) or this one (auto ack). */
  rollback(): void;
}

export type MessageHandler = (message: ConsumedMessage) => void | Promise<void>;

export interface ReaderCounters {
  fetches: number;
  delivered: number;
  failedDeliveries: number;
  duplicatesSkipped: number;
  filtered: number;
  fetchErrors: number;
  invalidRecords: number;
  rejected: number;
}

export interface ReaderOptions {
  readonly client: MetaqClient;
  readonly topic: string;
  readonly partition: number;
  /** Set on every message as `brokerId` (ZooKeeper mode). */
  readonly brokerId?: number;
  readonly group: string;
  /** Where to start: a byte offset, or "latest" (MetaQ's Long.MAX_VALUE trick). */
  readonly start: number | "latest";
  readonly maxSize: number;
  readonly maxDelayFetchMs: number;
  readonly maxFetchRetries: number;
  readonly autoAck: boolean;
  readonly handler: MessageHandler;
  readonly filter?: (message: ConsumedMessage) => boolean;
  readonly idCache?: MessageIdCache;
  /** Keeps a message the handler keeps failing (recovery store, DLQ, drop); throws if it cannot. */
  readonly reject: (message: ConsumedMessage, error: unknown) => Promise<void>;
  /** False once this consumer may no longer trust its ownership (group session lost). */
  readonly mayDeliver: () => boolean;
  readonly counters: ReaderCounters;
  readonly logger: Logger;
}

type Step = "next" | "retry" | "rollback" | "stop";

export class PartitionReader {
  readonly options: ReaderOptions;
  #position: number | "latest";
  #acked: number | undefined;
  #maxSize: number;
  #emptyDelayMs = 0;
  #failedAt = -1;
  #failures = 0;
  #rolledBack = false;
  #stopping = false;
  #wake: (() => void) | undefined;
  /** Gives up waiting for the fetch in flight (a long poll may wait a second for nothing). */
  #abandonFetch: (() => void) | undefined;
  #running: Promise<void> | undefined;
  /** What a message's ack() and rollback() reach: a small surface instead of the reader. */
  readonly #control = {
    ack: (offset: number) => this.#ack(offset),
    rollback: () => (this.#rolledBack = true),
  };

  constructor(options: ReaderOptions) {
    assert(options.maxSize >= RECORD_HEADER_BYTES);
    assert(options.maxFetchRetries >= 1);
    this.options = options;
    this.#position = options.start;
    this.#acked = options.start === "latest" ? undefined : options.start;
    this.#maxSize = options.maxSize;
  }

  /** The offset a commit may record (everything before it is done), once known. */
  get ackedOffset(): number | undefined {
    return this.#acked;
  }

  get maxSize(): number {
    return this.#maxSize;
  }

  start(): void {
    assert(!this.#running, "reader already started");
    this.#running = this.#loop();
  }

  /** Stops fetching; resolves once no handler call is in progress. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    this.#abandonFetch?.();
    await this.#running;
  }

  async #loop(): Promise<void> {
    while (!this.#stopping) {
      let delayMs: number;
      try {
        delayMs = await this.#round();
      } catch (error) {
        this.options.counters.fetchErrors += 1;
        this.options.logger.log("warn", "Cannot fetch; retrying", {
          partition: `${this.options.topic}-${this.options.partition}`,
          reason: describeError(error),
        });
        delayMs = this.#nextEmptyDelay();
      }
      if (delayMs > 0 && !this.#stopping) await this.#sleep(delayMs);
    }
  }

  /** One fetch and what follows from it; returns how long to wait before the next. */
  async #round(): Promise<number> {
    const { client, topic, partition, group } = this.options;
    this.options.counters.fetches += 1;
    const position = this.#position;
    const waitMs = Math.min(this.options.maxDelayFetchMs, LONG_POLL_MS_MAX);
    const askedAtMs = performance.now();
    const fetched = client.get({
      topic,
      group,
      partition,
      offset: position === "latest" ? JAVA_LONG_MAX : position,
      maxSize: this.#maxSize,
      waitMs,
    });
    const abandoned = new Promise<undefined>((resolve) => {
      this.#abandonFetch = () => resolve(undefined);
    });
    fetched.catch(() => {}); // when abandoned, its late failure (a closed client) is no news
    const reply = await Promise.race([fetched, abandoned]).finally(() => {
      this.#abandonFetch = undefined;
    });
    if (this.#stopping || !reply) return 0;
    if (reply.kind === "moved") {
      this.#moveTo(reply.offset);
      return 0;
    }
    if (reply.kind === "none") {
      if (position === "latest") this.#moveTo(0); // no partition yet: its end is 0
      // A long poll that waited its time out already was the pause; a quick "nothing" (a
      // MetaQ broker, or a partition that does not exist) backs off as MetaQ's client does.
      if (performance.now() - askedAtMs >= waitMs / 2) return 0;
      return this.#nextEmptyDelay();
    }
    assert(typeof position === "number");
    return await this.#deliverAll(reply, position);
  }

  async #deliverAll(
    reply: Extract<GetResult, { kind: "records" }>,
    position: number,
  ): Promise<number> {
    let records: DecodedRecord[];
    try {
      records = decodeRecordChunks(reply.chunks, position, FETCH_BYTES_MAX);
    } catch (error) {
      return await this.#skipInvalid(position, error);
    }
    if (records.length === 0) return this.#grow(reply.bytes);
    if (reply.byteLength < this.#maxSize / 2 && this.#maxSize > this.options.maxSize) {
      this.#maxSize = Math.max(this.options.maxSize, this.#maxSize / 2);
    }
    this.#emptyDelayMs = 0;
    for (const record of records) {
      if (this.#stopping) return 0;
      const outcome = this.#deliverOne(record);
      const step = typeof outcome === "string" ? outcome : await outcome;
      if (step === "retry") return this.#retryDelay();
      if (step === "stop") return this.#nextEmptyDelay(); // fenced: wait to be stopped
      if (step === "rollback") return 0;
    }
    return 0;
  }

  /** Delivers one record; synchronous unless the handler returns a promise (the hot path). */
  #deliverOne(record: DecodedRecord): Step | Promise<Step> {
    const { options } = this;
    const next = record.offset + RECORD_HEADER_BYTES + record.length;
    if (options.idCache?.has(options.group, record.id)) {
      options.counters.duplicatesSkipped += 1;
      this.#skip(record.offset, next);
      return "next";
    }
    const message = this.#message(record, next);
    if (options.filter && !options.filter(message)) {
      options.counters.filtered += 1;
      this.#skip(record.offset, next);
      return "next";
    }
    if (!options.mayDeliver()) return "stop";
    this.#rolledBack = false;
    let pending: void | Promise<void>;
    try {
      pending = options.handler(message);
    } catch (error) {
      return this.#failed(message, error);
    }
    if (!pending) return this.#handled(message);
    return pending.then(() => this.#handled(message), (error) => this.#failed(message, error));
  }

  /** The handler returned: a success, unless it rolled the message back. */
  #handled(message: ConsumedMessage): Step | Promise<Step> {
    const { options } = this;
    if (this.#rolledBack) {
      if (options.autoAck) return this.#failed(message, new Error("the handler rolled it back"));
      this.#position = this.#acked ?? this.#position; // manual ack: back to the last ack
      return "rollback";
    }
    if (this.#failedAt === message.offset) this.#failures = 0;
    options.idCache?.add(options.group, message.id);
    options.counters.delivered += 1;
    this.#advance(message.nextOffset, options.autoAck);
    return "next";
  }

  /** Counts a failed delivery; after maxFetchRetries the message goes to the rejection policy. */
  async #failed(message: ConsumedMessage, error: unknown): Promise<Step> {
    const { options } = this;
    options.counters.failedDeliveries += 1;
    this.#failures = this.#failedAt === message.offset ? this.#failures + 1 : 1;
    this.#failedAt = message.offset;
    if (this.#failures < options.maxFetchRetries) return "retry";
    await options.reject(message, error); // throws if the message could not be kept: retried later
    options.counters.rejected += 1;
    this.#failures = 0;
    this.#skip(message.offset, message.nextOffset);
    return "next";
  }

  #message(record: DecodedRecord, nextOffset: number): ConsumedMessage {
    let attribute: string | undefined;
    let payload = record.data;
    try {
      ({ attribute, payload } = splitAttribute(record.flag, record.data));
    } catch {
      // A flag that claims an attribute the data does not hold: deliver the data as it is.
    }
    return new Received(this.#control, {
      topic: this.options.topic,
      partition: this.options.partition,
      brokerId: this.options.brokerId,
      offset: record.offset,
      nextOffset,
      id: record.id,
      flag: record.flag,
      attribute,
      payload,
    });
  }

  #ack(offset: number): void {
    if (this.#acked === undefined || offset > this.#acked) this.#acked = offset;
  }

  #advance(offset: number, acknowledge: boolean): void {
    this.#position = offset;
    if (acknowledge) this.#acked = offset;
  }

  /** Moves past a record nobody handles; in manual-ack mode it never acks earlier messages. */
  #skip(offset: number, next: number): void {
    this.#advance(next, this.options.autoAck || this.#acked === offset);
  }

  #moveTo(offset: number): void {
    this.#position = offset;
    this.#acked = offset;
    this.#emptyDelayMs = 0;
  }

  /** MetaQ re-reads from the segment start after a record that does not decode. */
  async #skipInvalid(position: number, error: unknown): Promise<number> {
    const { client, topic, group, partition, logger, counters } = this.options;
    counters.invalidRecords += 1;
    const segmentStart = await client.offset({ topic, group, partition, offset: position });
    logger.log("warn", "Invalid record; re-reading from the segment start", {
      partition: `${topic}-${partition}`,
      offset: position,
      segmentStart,
      reason: describeError(error),
    });
    this.#position = segmentStart;
    return this.#nextEmptyDelay();
  }

  /** A reply with no complete record: the next record is larger than maxSize. */
  #grow(bytes: Uint8Array): number {
    const needed = bytes.length >= 4
      ? RECORD_HEADER_BYTES + new DataView(bytes.buffer, bytes.byteOffset, 4).getInt32(0)
      : this.#maxSize * 2;
    if (bytes.length < this.#maxSize || this.#maxSize >= FETCH_BYTES_MAX) {
      // The broker capped the reply (maxTransferSize) or we are at our limit: it cannot fit.
      this.options.counters.fetchErrors += 1;
      this.options.logger.log(
        "error",
        "Cannot fetch a record larger than the broker's transfer size",
        {
          partition: `${this.options.topic}-${this.options.partition}`,
          offset: this.#position,
          recordBytes: needed,
        },
      );
      return this.options.maxDelayFetchMs;
    }
    this.#maxSize = Math.min(FETCH_BYTES_MAX, Math.max(this.#maxSize * 2, needed));
    return 0;
  }

  #nextEmptyDelay(): number {
    const step = Math.max(1, Math.floor(this.options.maxDelayFetchMs / 10));
    this.#emptyDelayMs = Math.min(this.options.maxDelayFetchMs, this.#emptyDelayMs + step);
    return this.#emptyDelayMs;
  }

  /** MetaQ waits maxDelay/10 per failure so far, capped at maxDelay. */
  #retryDelay(): number {
    const step = Math.max(1, Math.floor(this.options.maxDelayFetchMs / 10));
    return Math.min(this.options.maxDelayFetchMs, step * this.#failures);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    }).then(() => {
      this.#wake = undefined;
    });
  }
}

type MessageFields = Omit<ConsumedMessage, "ack" | "rollback">;

/** A delivered message; a class, so the hot path allocates no closures per message. */
class Received implements ConsumedMessage {
  readonly topic: string;
  readonly partition: number;
  readonly brokerId?: number;
  readonly offset: number;
  readonly nextOffset: number;
  readonly id: bigint;
  readonly flag: number;
  readonly attribute?: string;
  readonly payload: Uint8Array;
  readonly #control: { ack(offset: number): void; rollback(): void };

  constructor(control: { ack(offset: number): void; rollback(): void }, fields: MessageFields) {
    this.#control = control;
    this.topic = fields.topic;
    this.partition = fields.partition;
    this.brokerId = fields.brokerId;
    this.offset = fields.offset;
    this.nextOffset = fields.nextOffset;
    this.id = fields.id;
    this.flag = fields.flag;
    this.attribute = fields.attribute;
    this.payload = fields.payload;
  }

  ack(): void {
    this.#control.ack(this.nextOffset);
  }

  rollback(): void {
    this.#control.rollback();
  }
}

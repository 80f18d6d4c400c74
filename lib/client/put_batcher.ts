/**
 * @module PutBatcher: the puts made in one turn of the event loop leave as one batched put per
 * partition (`bput`, lib/protocol/batch_put.ts) at the end of that turn. A lone message, or
 * any message to a broker that does not take batches (MetaQ's own), goes as a plain put, so
 * nothing waits for company: batching only happens when messages queue up by themselves, as
 * they do when a producer outpaces the round trip. Order within a partition is kept: batches
 * and plain puts of one partition leave on one connection in the order they were made.
 */
import { setImmediate } from "node:timers";
import { BATCH_PUT_BYTES_MAX, BATCH_PUT_RECORDS_MAX, RECORD_HEADER_BYTES } from "../limits.ts";
import { type BatchAck, BatchPutBuilder, idInBatch } from "../protocol/batch_put.ts";
import type { Message, MetaqClient, PutResult } from "./client.ts";

/** Called once per message: no error once the broker stored it. */
export type BatchedPutDone = (error: Error | undefined, result: PutResult | undefined) => void;

export interface PutBatcherOptions {
  /** Largest body of one batch (bytes of records); at most BATCH_PUT_BYTES_MAX. */
  readonly batchBytesMax?: number;
  /**
   * Most records in one batch; at most (and by default) BATCH_PUT_RECORDS_MAX, the most a
   * broker takes. A batch that reaches it leaves at once, before the turn ends (see Producer).
   */
  readonly batchRecordsMax?: number;
  /**
   * Hand each message's id and offset to its callback (Producer does); without it callbacks
   * get only the outcome, which saves an object per message (`metaq produce`).
   */
  readonly results?: boolean;
}

/** Messages of one partition waiting for the end of the turn. */
interface Queued {
  readonly topic: string;
  readonly partition: number;
  readonly messages: Message[];
  readonly dones: BatchedPutDone[];
  bytes: number;
}

export class PutBatcher {
  readonly #client: MetaqClient;
  readonly #batchBytesMax: number;
  readonly #batchRecordsMax: number;
  readonly #results: boolean;
  readonly #queued = new Map<string, Queued>();
  /** The queue `add` used last (still queued: cleared whenever queues leave). */
  #last: Queued | undefined;
  #flushScheduled = false;
  /** Batches that filled up while the broker's answer to "batches?" was awaited (#ask). */
  #full: Queued[] = [];
  /** Whether the broker takes batches: unknown until asked (once, at the first batch). */
  #batches: boolean | undefined;
  #asking = false;

  constructor(client: MetaqClient, options: PutBatcherOptions = {}) {
    this.#client = client;
    this.#batchBytesMax = Math.min(
      options.batchBytesMax ?? BATCH_PUT_BYTES_MAX,
      BATCH_PUT_BYTES_MAX,
    );
    this.#batchRecordsMax = Math.max(
      1,
      Math.min(options.batchRecordsMax ?? BATCH_PUT_RECORDS_MAX, BATCH_PUT_RECORDS_MAX),
    );
    this.#results = options.results ?? false;
  }

  /** Queues one message for `topic`-`partition`; it leaves at the end of this turn. */
  add(topic: string, partition: number, message: Message, done: BatchedPutDone): void {
    // An upper bound of the record's size: an attribute's UTF-8 takes at most 3 bytes a unit.
    const bytes = RECORD_HEADER_BYTES + message.payload.length +
      (message.attribute === undefined ? 0 : 4 + message.attribute.length * 3);
    // Most runs write one partition after another: the last queue is checked before the map.
    let queued = this.#last !== undefined && this.#last.partition === partition &&
        this.#last.topic === topic
      ? this.#last
      : this.#queued.get(`${partition}\u0000${topic}`);
    if (
      queued &&
      (queued.bytes + bytes > this.#batchBytesMax ||
        queued.messages.length >= this.#batchRecordsMax)
    ) {
      this.#queued.delete(`${partition}\u0000${topic}`);
      if (this.#batches === undefined) {
        // Whether the broker takes batches is not known yet: a full batch waits for the answer
        // with the rest (#ask), instead of leaving as plain puts.
        this.#full.push(queued);
        this.#ask();
      } else {
        this.#send(queued);
      }
      queued = undefined;
    }
    if (!queued) {
      queued = { topic, partition, messages: [], dones: [], bytes: 0 };
      this.#queued.set(`${partition}\u0000${topic}`, queued);
    }
    this.#last = queued;
    queued.messages.push(message);
    queued.dones.push(done);
    queued.bytes += bytes;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    const batching = [...this.#queued.values()].some((queued) => queued.messages.length > 1);
    // While full batches wait for the answer, what follows them waits too (a partition's order).
    if ((batching || this.#full.length > 0) && this.#batches === undefined) return this.#ask();
    const all = [...this.#queued.values()];
    this.#queued.clear();
    this.#last = undefined;
    for (const queued of all) this.#send(queued);
  }

  /** Asks the broker whether it takes batches; what queues meanwhile leaves after the answer. */
  #ask(): void {
    if (this.#asking) return;
    this.#asking = true;
    this.#client.isMetaqBroker().then(
      (supported) => (this.#batches = supported),
      () => {}, // unreachable: this turn's puts go one by one and fail as plain puts do
    ).finally(() => {
      this.#asking = false;
      // Full batches first: they were queued before what is still in #queued (same partition).
      const all = [...this.#full, ...this.#queued.values()];
      this.#full = [];
      this.#queued.clear();
      this.#last = undefined;
      for (const queued of all) this.#send(queued);
    });
  }

  #send(queued: Queued): void {
    const { topic, partition, messages, dones } = queued;
    if (messages.length === 1 || this.#batches !== true) {
      for (let i = 0; i < messages.length; i++) {
        this.#sendOne(topic, partition, messages[i], dones[i]);
      }
      return;
    }
    const builder = new BatchPutBuilder(queued.bytes);
    const starts = this.#results ? new Array<number>(messages.length) : undefined;
    for (let i = 0; i < messages.length; i++) {
      if (starts) starts[i] = builder.bytes;
      const message = messages[i];
      builder.add(message.payload, message.flag ?? 0, message.attribute);
    }
    this.#client.putBatchWith(topic, partition, builder, (error, ack) => {
      if (error || !ack) {
        for (const done of dones) done(error, undefined);
        return;
      }
      if (!starts) {
        for (const done of dones) done(undefined, undefined);
        return;
      }
      for (let i = 0; i < dones.length; i++) dones[i](undefined, resultAt(ack, starts, i));
    });
  }

  #sendOne(topic: string, partition: number, message: Message, done: BatchedPutDone): void {
    if (this.#results) {
      this.#client.put(topic, partition, message).then(
        (result) => done(undefined, result),
        (error) => done(error as Error, undefined),
      );
    } else {
      this.#client.putWith(topic, partition, message, (error) => done(error, undefined));
    }
  }
}

/** Message `index` of an acknowledged batch: its id from the reply's runs, its offset. */
function resultAt(ack: BatchAck, starts: readonly number[], index: number): PutResult {
  return {
    id: idInBatch(ack, index),
    partition: ack.partition,
    offset: ack.offset + starts[index],
  };
}

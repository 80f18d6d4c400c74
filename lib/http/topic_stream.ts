/**
 * @module The live stream of a topic over Server-Sent Events: every record of the chosen
 * partitions from a starting position on, one `message` event each. Each event's id is a cursor
 * naming every partition's next offset (`0:175,1:75`), so a client that reconnects with
 * `Last-Event-ID` resumes exactly where it stopped. Wakes on PartitionLog.onAppend (and on the
 * store opening a partition the stream waits for); it never polls. It does not commit offsets.
 */
import type { Broker } from "../broker/broker.ts";
import { BrokerError } from "../errors.ts";
import { splitPartitionKey } from "../store/message_store.ts";
import type { PartitionLog } from "../store/partition_log.ts";
import { type PayloadEncoding, readRecords, recordToJson } from "./records.ts";
import { Doorbell, type SseEvent, type SseSource } from "./sse.ts";

/** Records one read of the stream sends at most, across its partitions. */
const EVENTS_PER_READ_MAX = 256;

export interface TopicStreamOptions {
  readonly broker: Broker;
  readonly topic: string;
  /** Partition -> next offset to send. */
  readonly cursor: ReadonlyMap<number, number>;
  readonly encoding: PayloadEncoding | "auto";
}

export class TopicStream implements SseSource {
  readonly #broker: Broker;
  readonly #topic: string;
  readonly #encoding: PayloadEncoding | "auto";
  readonly #cursor: Map<number, number>;
  readonly #doorbell = new Doorbell();
  readonly #unsubscribe: (() => void)[] = [];
  readonly #watched = new Set<number>();
  #turn = 0;

  constructor(options: TopicStreamOptions) {
    this.#broker = options.broker;
    this.#topic = options.topic;
    this.#encoding = options.encoding;
    this.#cursor = new Map(options.cursor);
    const store = options.broker.store;
    for (const partition of this.#cursor.keys()) {
      const log = store.get(this.#topic, partition);
      if (log) this.#watch(partition, log);
    }
    this.#unsubscribe.push(store.onOpen((log) => {
      const key = splitPartitionKey(log.name);
      if (key?.topic !== this.#topic || !this.#cursor.has(key.partition)) return;
      this.#watch(key.partition, log);
      this.#doorbell.ring();
    }));
  }

  /** The cursor as an event id: `partition:offset` pairs, comma-separated. */
  get id(): string {
    return [...this.#cursor].map(([partition, offset]) => `${partition}:${offset}`).join(",");
  }

  next(): SseEvent[] {
    const events: SseEvent[] = [];
    const partitions = [...this.#cursor.keys()];
    // Start each read at another partition, so one busy partition cannot starve the rest.
    for (let step = 0; step < partitions.length && events.length < EVENTS_PER_READ_MAX; step++) {
      const partition = partitions[(this.#turn + step) % partitions.length];
      this.#read(partition, EVENTS_PER_READ_MAX - events.length, events);
    }
    this.#turn = (this.#turn + 1) % Math.max(1, partitions.length);
    return events;
  }

  wait(signal: AbortSignal): Promise<void> {
    return this.#doorbell.wait(signal);
  }

  close(): void {
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
  }

  #read(partition: number, countMax: number, events: SseEvent[]): void {
    const broker = this.#broker;
    const log = broker.store.get(this.#topic, partition);
    if (!log) return;
    if (broker.closedPartitions.has(log.name)) return;
    const end = broker.readLimit(this.#topic, partition, log);
    // Retention may have removed what the cursor points at; a replica may have cut the tail.
    let offset = Math.min(Math.max(this.#cursor.get(partition)!, log.startOffset), end);
    if (offset >= end) return void this.#cursor.set(partition, offset);
    const batch = readRecords(log, {
      offset,
      end,
      countMax,
      bytesMax: broker.config.system.maxTransferSize,
    });
    broker.stats.served(this.#topic, partition, batch.bytes);
    for (const record of batch.records) {
      const json = recordToJson(record, this.#encoding);
      offset = json.nextOffset;
      this.#cursor.set(partition, offset);
      events.push({
        id: this.id,
        event: "message",
        data: JSON.stringify({ topic: this.#topic, partition, ...json }),
      });
    }
    this.#cursor.set(partition, batch.nextOffset);
  }

  #watch(partition: number, log: PartitionLog): void {
    if (this.#watched.has(partition)) return;
    this.#watched.add(partition);
    this.#unsubscribe.push(log.onAppend(() => this.#doorbell.ring()));
  }
}

/** Parses a `Last-Event-ID` cursor; every partition must be one of `partitions`. */
export function parseCursor(text: string, partitions: readonly number[]): Map<number, number> {
  const cursor = new Map<number, number>();
  const problem = () =>
    new BrokerError(
      "invalidOffset",
      `Cannot resume from Last-Event-ID '${text.slice(0, 80)}': expected partition:offset pairs`,
    );
  if (text.length > 32 * partitions.length + 32) throw problem();
  for (const pair of text.split(",")) {
    const match = /^(\d{1,10}):(\d{1,16})$/.exec(pair.trim());
    if (!match) throw problem();
    const partition = Number(match[1]);
    const offset = Number(match[2]);
    if (!partitions.includes(partition) || !Number.isSafeInteger(offset)) throw problem();
    cursor.set(partition, offset);
  }
  return cursor;
}

/** Raises BrokerError unless `log` is absent or `offset` lies within it. */
export function checkStartOffset(
  broker: Broker,
  topic: string,
  partition: number,
  offset: number,
): void {
  const log = broker.store.get(topic, partition);
  const start = log?.startOffset ?? 0;
  const end = log ? broker.readLimit(topic, partition, log) : 0;
  if (offset < start || offset > end) {
    throw new BrokerError(
      "invalidOffset",
      `offset ${offset} is outside partition ${topic}-${partition} (${start}..${end})`,
    );
  }
}

/**
 * @module The live stream of a topic over Server-Sent Events: every record of the chosen
 * partitions from a starting position on, one `message` event each. Each event's id is a cursor
 * naming every partition's next offset (`0:175,1:75`), so a client that reconnects with
 * `Last-Event-ID` resumes exactly where it stopped. It does not commit offsets.
 *
 * Records are read through PartitionReads (reads.ts). A partition whose log is open here wakes
 * the stream through Log.onChange (and the Logs opening a partition the stream waits for), so it
 * never polls. A partition held only by other nodes of a cluster has no such event here: while
 * the stream is caught up on one, it asks again every REMOTE_POLL_MS.
 */
import type { Broker } from "../broker/broker.ts";
import { BrokerError } from "../errors.ts";
import type { Log } from "../store/log.ts";
import type { PartitionReads } from "./reads.ts";
import { type PayloadEncoding, recordToJson } from "./records.ts";
import { Doorbell, type SseEvent, type SseSource } from "./sse.ts";

/** Records one read of the stream sends at most, across its partitions. */
const EVENTS_PER_READ_MAX = 256;
/** How often a stream caught up on a partition held elsewhere asks for new records. */
export const REMOTE_POLL_MS = 250;

export interface TopicStreamOptions {
  readonly broker: Broker;
  readonly reads: PartitionReads;
  readonly topic: string;
  /** Partition -> next offset to send. */
  readonly cursor: ReadonlyMap<number, number>;
  readonly encoding: PayloadEncoding | "auto";
}

export class TopicStream implements SseSource {
  readonly #broker: Broker;
  readonly #reads: PartitionReads;
  readonly #topic: string;
  readonly #encoding: PayloadEncoding | "auto";
  readonly #cursor: Map<number, number>;
  readonly #doorbell = new Doorbell();
  readonly #unsubscribe: (() => void)[] = [];
  readonly #watched = new Set<number>();
  /** Partitions read through the edge that had nothing new at the last read. */
  readonly #remoteCaughtUp = new Set<number>();
  #turn = 0;

  constructor(options: TopicStreamOptions) {
    this.#broker = options.broker;
    this.#reads = options.reads;
    this.#topic = options.topic;
    this.#encoding = options.encoding;
    this.#cursor = new Map(options.cursor);
    const logs = options.broker.logs;
    for (const partition of this.#cursor.keys()) {
      const log = logs.get(this.#topic, partition);
      if (log) this.#watch(partition, log);
    }
    this.#unsubscribe.push(logs.onOpen(({ topic, partition, log }) => {
      if (topic !== this.#topic || !this.#cursor.has(partition)) return;
      this.#watch(partition, log);
      this.#doorbell.ring();
    }));
  }

  /** The cursor as an event id: `partition:offset` pairs, comma-separated. */
  get id(): string {
    return [...this.#cursor].map(([partition, offset]) => `${partition}:${offset}`).join(",");
  }

  async next(): Promise<SseEvent[]> {
    const events: SseEvent[] = [];
    const partitions = [...this.#cursor.keys()];
    // Start each read at another partition, so one busy partition cannot starve the rest.
    for (let step = 0; step < partitions.length && events.length < EVENTS_PER_READ_MAX; step++) {
      const partition = partitions[(this.#turn + step) % partitions.length];
      await this.#read(partition, EVENTS_PER_READ_MAX - events.length, events);
    }
    this.#turn = (this.#turn + 1) % Math.max(1, partitions.length);
    return events;
  }

  async wait(signal: AbortSignal): Promise<void> {
    if (this.#remoteCaughtUp.size === 0) return await this.#doorbell.wait(signal);
    const timer = setTimeout(() => this.#doorbell.ring(), REMOTE_POLL_MS);
    try {
      await this.#doorbell.wait(signal);
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
  }

  async #read(partition: number, countMax: number, events: SseEvent[]): Promise<void> {
    const topic = this.#topic;
    if (this.#broker.closedPartitions.has(`${topic}-${partition}`)) return;
    const local = this.#reads.isLocal(topic, partition);
    const log = this.#broker.logs.get(topic, partition);
    let offset = this.#cursor.get(partition)!;
    if (local) {
      if (!log) return; // created by its first write: onOpen rings
      // Retention may have removed what the cursor points at; a replica may have cut the tail.
      offset = Math.min(Math.max(offset, log.startOffset), log.endOffset);
      this.#cursor.set(partition, offset);
      if (offset >= log.endOffset) return; // nothing new: onChange rings
    }
    const page = await this.#reads.page({
      topic,
      partition,
      offset,
      countMax,
      bytesMax: this.#broker.config.system.maxTransferSize,
    });
    if (!local) this.#noteRemote(partition, page.kind);
    if (page.kind === "moved") {
      this.#cursor.set(partition, page.offset);
      return this.#doorbell.ring();
    }
    if (page.kind === "refused" && local) throw page.error;
    if (page.kind !== "records") return; // at the end, or (held elsewhere) not served now
    for (const record of page.records) {
      const json = recordToJson(record, this.#encoding);
      this.#cursor.set(partition, json.nextOffset);
      events.push({
        id: this.id,
        event: "message",
        data: JSON.stringify({ topic, partition, ...json }),
      });
    }
    this.#cursor.set(partition, page.nextOffset);
  }

  #noteRemote(partition: number, kind: string): void {
    if (kind === "records" || kind === "moved") this.#remoteCaughtUp.delete(partition);
    else this.#remoteCaughtUp.add(partition);
  }

  #watch(partition: number, log: Log): void {
    if (this.#watched.has(partition)) return;
    this.#watched.add(partition);
    this.#remoteCaughtUp.delete(partition);
    this.#unsubscribe.push(log.onChange(() => this.#doorbell.ring()));
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

/** Raises BrokerError unless `offset` lies within the partition's bounds. */
export function checkStartOffset(
  topic: string,
  partition: number,
  offset: number,
  bounds: { start: number; end: number },
): void {
  const { start, end } = bounds;
  if (offset < start || offset > end) {
    throw new BrokerError(
      "invalidOffset",
      `offset ${offset} is outside partition ${topic}-${partition} (${start}..${end})`,
    );
  }
}

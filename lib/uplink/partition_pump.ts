/**
 * @module PartitionPump: forwards one edge partition to the hub, in source order, one batch at
 * a time. Each round: enforce the backlog cap; wait for the link; find the hub partition; read
 * the next batch of durable records at the forwarding position; send it with `uput` and the
 * hub offset `since`; on the hub's answer move the position past the batch, remember where
 * the batch's first record lies at the hub as the next `since`, and save both (in
 * `__uplink-0`, without waiting: a crash before the save only sends batches again, and the
 * hub, looking from `since`, keeps them once).
 *
 * Why the first record's offset and not the hub's end: after a restart the edge resends from
 * its saved position, and batches it had sent after that save may be at the hub. Each of those
 * lies after the previous batch's first record (they were sent in order), so a batch looked
 * for from there is found; looked for from the end after the previous batch, it would not.
 *
 * Why one batch at a time: a batch is retried after any doubt (a cut link, a timeout, a new
 * leader at the hub), and with a second batch in flight the retry of the first could land
 * after it. Partitions proceed side by side over the one connection.
 *
 * Why only durable records: a record the edge forwarded and then lost in a power cut would let
 * a new record take its offset, and its origin, which the hub has already seen.
 */
import { assert, AssertionError } from "../assert.ts";
import type { Clock } from "../clock.ts";
import type { UplinkConfig } from "../config/uplink_config.ts";
import { BrokerError, describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Random } from "../prng.ts";
import { RECORD_HEADER_BYTES } from "../limits.ts";
import { encodeExtension } from "../protocol/encoder.ts";
import { recordBytesAt } from "../protocol/record.ts";
import type { Log } from "../store/log.ts";
import type { ByteBudget } from "./byte_budget.ts";
import type { BufferPool } from "./buffer_pool.ts";
import { buildHubBatch, type HubBatch, recordTimeMs } from "./hub_batch.ts";
import { UPLINK_PUT_VERB } from "./hub_commands.ts";
import { type HubLink, isLasting, isLinkError } from "./hub_link.ts";
import { type HubTarget, hubTarget, type HubTopics } from "./hub_target.ts";
import { walkLog } from "./log_walk.ts";
import type { DropRecord, DropTotals, ForwardPosition } from "./uplink_state.ts";

export type PumpState = "starting" | "waiting" | "forwarding" | "caught-up" | "blocked" | "stopped";

/** Where positions and drops are kept (uplink_part.ts, over `__uplink-0`). */
export interface PositionStore {
  /** The position as applied from `__uplink-0` (what survives a crash). */
  persisted(topic: string, partition: number): ForwardPosition | undefined;
  /** Saves a newer position soon (saves are merged and written in order). */
  save(position: ForwardPosition): void;
  /** Saves a position and resolves once it is durable. */
  saveNow(position: ForwardPosition): Promise<void>;
  /** Saves a drop after every earlier save, and resolves once it is durable. */
  drop(drop: DropRecord): Promise<void>;
  /** Messages and bytes dropped so far (saved totals). */
  dropped(topic: string, partition: number): DropTotals;
}

export interface PumpOptions {
  readonly topic: string;
  readonly partition: number;
  readonly log: Log;
  readonly site: string;
  readonly config: UplinkConfig;
  readonly link: HubLink;
  readonly hubTopics: HubTopics;
  readonly budget: ByteBudget;
  /** Buffers batches are read and built in, shared by the pumps. */
  readonly pool: BufferPool;
  readonly positions: PositionStore;
  /** The topic's partition count at the edge. */
  readonly edgePartitions: () => number;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
}

/** A pump's figures for stats, metrics and the dashboard. */
export interface PumpStatus {
  readonly topic: string;
  readonly partition: number;
  readonly state: PumpState;
  readonly reason?: string;
  readonly hubTopic?: string;
  readonly hubPartition?: number;
  /** Source offset below which the hub has every message (this process's view). */
  readonly position: number;
  /** The same, as saved in `__uplink-0`. */
  readonly savedPosition: number;
  /** Source offset after the last durable record. */
  readonly endOffset: number;
  readonly lagBytes: number;
  /** Messages not yet at the hub, counted so far (the count catches up with a long backlog). */
  readonly lagMessages: number;
  readonly forwardedMessages: number;
  readonly forwardedBytes: number;
  readonly batches: number;
  readonly lastAckWallMs?: number;
  readonly droppedMessages: number;
  readonly droppedBytes: number;
  /** Messages passed over because they came from this site through the hub (a loop). */
  readonly loopedMessages: number;
}

/** Room kept before a batch for its `uput` command line (a topic name is at most 200 bytes). */
const LINE_ROOM_BYTES = 512;
const asciiEncoder = new TextEncoder();

/** A waiting pump looks again this often (cap, counting, changes it was not told about). */
const TICK_MS = 1000;
/** Messages of backlog counted per round (a header read each). */
const COUNT_RECORDS_PER_ROUND = 100_000;

export class PartitionPump {
  readonly topic: string;
  readonly partition: number;
  readonly #options: PumpOptions;
  readonly #log: Log;
  #state: PumpState = "starting";
  #reason: string | undefined;
  #stopped = false;
  #target: HubTarget | undefined;
  /** Link connections seen; a new one means asking the hub's limit (and the target) again. */
  #attachedConnects = -1;
  #position: number;
  #since = 0;
  #hubLimitBytes = 0;
  #retryRounds = 0;
  #forwardedMessages = 0;
  #forwardedBytes = 0;
  #batches = 0;
  #lastAckWallMs: number | undefined;
  /** Messages passed over because they came from this site (a loop). */
  #looped = 0;
  /** Whether the last `uput` was answered (its frame's buffer may be used again). */
  #lastSendOk = false;
  /** Messages counted in [position, countEnd). */
  #countEnd: number;
  #counted = 0;
  #wake: (() => void) | undefined;
  readonly #unsubscribe: (() => void)[] = [];
  #running: Promise<void> | undefined;

  constructor(options: PumpOptions) {
    this.#options = options;
    this.topic = options.topic;
    this.partition = options.partition;
    this.#log = options.log;
    const persisted = options.positions.persisted(this.topic, this.partition);
    this.#position = persisted?.offset ?? options.log.startOffset;
    this.#countEnd = this.#position;
  }

  /** Source offset below which everything is acknowledged or dropped (for retention). */
  get position(): number {
    return this.#position;
  }

  start(): void {
    this.#unsubscribe.push(this.#log.onChange(() => this.#wake?.()));
    this.#unsubscribe.push(this.#options.link.onUp(() => this.#wake?.()));
    this.#running = this.#run();
  }

  /** Stops after the current round; resolves when it has. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#state = "stopped";
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
    this.#wake?.();
    await this.#running;
  }

  status(): PumpStatus {
    const saved = this.#options.positions.persisted(this.topic, this.partition);
    const drops = this.#options.positions.dropped(this.topic, this.partition);
    const end = this.#readableEnd();
    return {
      topic: this.topic,
      partition: this.partition,
      state: this.#state,
      reason: this.#reason,
      hubTopic: this.#target?.topic,
      hubPartition: this.#target?.partition,
      position: this.#position,
      savedPosition: saved?.offset ?? this.#position,
      endOffset: end,
      lagBytes: Math.max(0, end - this.#position),
      lagMessages: this.#counted,
      forwardedMessages: this.#forwardedMessages,
      forwardedBytes: this.#forwardedBytes,
      batches: this.#batches,
      lastAckWallMs: this.#lastAckWallMs,
      droppedMessages: drops.messages,
      droppedBytes: drops.bytes,
      loopedMessages: this.#looped,
    };
  }

  async #run(): Promise<void> {
    // One round per batch or per wait; stop() ends it after the round in progress.
    while (!this.#stopped) {
      try {
        await this.#round();
        this.#retryRounds = 0;
      } catch (error) {
        if (error instanceof AssertionError) {
          // A broken invariant is a bug: crash (recovery runs on restart), never keep forwarding.
          queueMicrotask(() => {
            throw error;
          });
          return;
        }
        await this.#failed(error);
      }
    }
  }

  async #round(): Promise<void> {
    await this.#enforceCap();
    this.#count();
    const link = this.#options.link;
    if (!link.up) {
      this.#set("waiting", link.facts().lastError ?? "connecting to the hub");
      link.ensureDialing();
      return await this.#sleep(TICK_MS);
    }
    if (this.#attachedConnects !== link.facts().connects) await this.#attach();
    const end = this.#readableEnd();
    if (this.#position >= end) {
      this.#set("caught-up");
      return await this.#sleep(TICK_MS);
    }
    this.#set("forwarding");
    await this.#forward(end);
  }

  /**
   * On every new connection: the hub target (the hub's partition count may have changed), the
   * hub's message limit, and on the first one the position and `since` to resume from.
   */
  async #attach(): Promise<void> {
    const { link, hubTopics, config, site } = this.#options;
    const connects = link.facts().connects;
    const hubTopic = config.prefix + this.topic;
    const hubPartitions = await hubTopics.partitions(hubTopic);
    const target = hubTarget(config, {
      site,
      topic: this.topic,
      partition: this.partition,
      edgePartitions: this.#options.edgePartitions(),
    }, hubPartitions);
    if (typeof target === "string") throw new BrokerError("wrongPartition", target);
    const probe = await this.#probe(target);
    const end = probe.end;
    this.#hubLimitBytes = probe.batchBytesMax;
    const saved = this.#options.positions.persisted(this.topic, this.partition);
    const sameTarget = saved !== undefined && saved.hubTopic === target.topic &&
      saved.hubPartition === target.partition;
    if (this.#target === undefined) {
      // First attach in this process: resume from what was saved. A position past the log's
      // end was put back at start-up (UplinkPart.prepare), before anything could be written.
      const position = saved?.offset ?? this.#log.startOffset;
      const since = sameTarget ? saved!.since : end;
      assert(position <= this.#readableEnd(), "an uplink position lies past its log's end");
      if (!sameTarget || position !== saved!.offset || since !== saved!.since) {
        await this.#options.positions.saveNow(this.#positionAt(position, target, since));
      }
      this.#position = position;
      this.#countEnd = Math.max(this.#countEnd, position);
      if (this.#countEnd === position) this.#counted = 0;
      this.#since = since;
    } else if (target.topic !== this.#target.topic || target.partition !== this.#target.partition) {
      // The hub's partition count changed the mapping: a new hub partition, searched from its end.
      this.#since = end;
      await this.#options.positions.saveNow(this.#positionAt(this.#position, target, end));
    }
    this.#target = target;
    this.#attachedConnects = connects;
  }

  /** `uput` with no records: the hub partition's end and the hub's limits. */
  async #probe(target: HubTarget): Promise<UputReply> {
    const text = await this.#options.link.request(UPLINK_PUT_VERB, [
      target.topic,
      target.partition,
      0,
      0,
    ]);
    return parseUputReply(text);
  }

  /** Sends the batch at the position and moves past it once the hub has it. */
  async #forward(end: number): Promise<void> {
    const { budget, config, pool } = this.#options;
    const maxBytes = Math.min(config.batchBytes, this.#hubLimitBytes);
    await budget.acquire(maxBytes);
    const source = pool.take(maxBytes);
    const frame = pool.take(LINE_ROOM_BYTES + maxBytes);
    let sent = false;
    try {
      const length = this.#readInto(
        source,
        this.#position,
        Math.min(maxBytes, end - this.#position),
      );
      const batch = this.#build(
        source.subarray(0, length),
        maxBytes,
        frame.subarray(LINE_ROOM_BYTES),
      );
      if (batch.records === 0 && batch.sourceBytes > 0) {
        // Only messages that came from this site through the hub: nothing to send.
        return this.#passedOver(batch.sourceBytes, batch.looped);
      }
      if (batch.records === 0) {
        // The next record is larger than a batch: alone, it may still fit the hub's limit.
        return await this.#forwardLarge(source.subarray(0, length), end);
      }
      sent = true;
      await this.#send(batch, frame);
    } finally {
      // A buffer handed to a broken connection may still be written: never reuse it then.
      if (!sent || this.#lastSendOk) pool.give(frame);
      pool.give(source);
      budget.release(maxBytes);
    }
  }

  /** One record too large for a batch, sent alone in buffers of its own. */
  async #forwardLarge(head: Uint8Array, end: number): Promise<void> {
    const whole = recordBytesAt(head) ?? 0;
    if (whole === 0 || this.#position + whole > end) return; // not all readable yet
    const source = new Uint8Array(whole);
    this.#readInto(source, this.#position, whole);
    const frame = new Uint8Array(LINE_ROOM_BYTES + this.#hubLimitBytes);
    const batch = this.#build(source, this.#hubLimitBytes, frame.subarray(LINE_ROOM_BYTES));
    if (batch.records === 0 && batch.sourceBytes > 0) {
      return this.#passedOver(batch.sourceBytes, batch.looped);
    }
    if (batch.records === 0) {
      throw new BrokerError(
        "messageTooLarge",
        `the message at offset ${this.#position} of ${this.topic}-${this.partition} ` +
          `(${whole - RECORD_HEADER_BYTES} bytes before its origin) does not fit the ` +
          `hub's largest batch of ${this.#hubLimitBytes} bytes`,
      );
    }
    await this.#send(batch, frame);
  }

  #build(source: Uint8Array, maxBytes: number, into: Uint8Array): HubBatch {
    const { site } = this.#options;
    const from = { site, topic: this.topic, partition: this.partition };
    return buildHubBatch(from, source, this.#position, maxBytes, into);
  }

  /**
   * `uput` of a batch built at LINE_ROOM_BYTES of `frame`: its command line is written just
   * before it, so the request leaves without another copy of the batch.
   */
  async #send(batch: HubBatch, frame: Uint8Array): Promise<void> {
    const target = this.#target!;
    const since = this.#since;
    this.#lastSendOk = false;
    const reply = await this.#options.link.requestFrame((opaque) => {
      const line = `${UPLINK_PUT_VERB} ${target.topic} ${target.partition} ${since} ` +
        `${batch.body.length} ${opaque}\r\n`;
      const start = LINE_ROOM_BYTES - line.length;
      if (start < 0) {
        return encodeExtension(
          UPLINK_PUT_VERB,
          [
            target.topic,
            target.partition,
            since,
            batch.body.length,
          ],
          opaque,
          batch.body,
        );
      }
      asciiEncoder.encodeInto(line, frame.subarray(start, LINE_ROOM_BYTES));
      return frame.subarray(start, LINE_ROOM_BYTES + batch.body.length);
    });
    this.#lastSendOk = true;
    const answer = parseUputReply(reply);
    if (batch.looped > 0) this.#noteLooped(batch.looped);
    this.#acknowledged(batch.sourceBytes, batch.records, batch.body.length, answer.offset);
    this.#hubLimitBytes = answer.batchBytesMax;
  }

  /** The hub has the batch, its first record at `hubOffset`: the next batch lies after it. */
  #acknowledged(sourceBytes: number, records: number, bytes: number, hubOffset: number): void {
    const to = this.#position + sourceBytes;
    this.#position = to;
    this.#since = hubOffset;
    this.#forwardedMessages += records;
    this.#forwardedBytes += bytes;
    this.#batches += 1;
    this.#lastAckWallMs = this.#options.clock.wallMs();
    this.#consumed(to, records);
    this.#options.positions.save(this.#positionAt(to, this.#target!, hubOffset));
  }

  /** Moves past messages that came back from the hub (they are there from their first trip). */
  #passedOver(sourceBytes: number, looped: number): void {
    this.#noteLooped(looped);
    const to = this.#position + sourceBytes;
    this.#position = to;
    this.#consumed(to, looped);
    this.#options.positions.save(this.#positionAt(to, this.#target!, this.#since));
  }

  #noteLooped(looped: number): void {
    if (this.#looped === 0) {
      this.#options.logger.log("warn", "Uplink passes over messages that came back from the hub", {
        partition: `${this.topic}-${this.partition}`,
        site: this.#options.site,
        hint: "the hub forwards this topic back here (an uplink to itself, or a loop)",
      });
    }
    this.#looped += looped;
  }

  /**
   * The backlog cap: when the partition holds more unacknowledged bytes than maxBacklogBytes,
   * or messages older than maxBacklogAgeMs, the oldest are given up: counted, saved as a drop
   * (before anything is deleted), logged, and their segments deleted.
   */
  async #enforceCap(): Promise<void> {
    const { maxBacklogBytes, maxBacklogAgeMs } = this.#options.config;
    const log = this.#log;
    if (this.#position < log.startOffset) {
      // Deleted below the position by something other than the uplink: nothing left to count.
      await this.#drop(log.startOffset, 0, "deleted below the forwarding position");
    }
    if (maxBacklogBytes === 0 && maxBacklogAgeMs === 0) return;
    const end = log.endOffset;
    const beyondBytes = maxBacklogBytes > 0 ? end - maxBacklogBytes : 0;
    const cutoffMs = maxBacklogAgeMs > 0
      ? this.#options.clock.wallMs() - maxBacklogAgeMs
      : -Infinity;
    const expired = (timeMs: number | undefined) => (timeMs ?? Infinity) < cutoffMs;
    // Most rounds drop nothing: decide that from the first record's header alone.
    if (this.#position >= end) return;
    if (this.#position >= beyondBytes && !expired(this.#firstRecordTimeMs())) return;
    let messages = 0;
    const walk = walkLog(log, this.#position, end, (header, _length, offset) => {
      if (offset >= beyondBytes && !expired(recordTimeMs(header, 0))) return false;
      messages += 1;
    });
    if (walk.records === 0) return;
    const why = walk.end > beyondBytes
      ? `older than maxBacklogAgeMs ${maxBacklogAgeMs}`
      : `over maxBacklogBytes ${maxBacklogBytes}`;
    await this.#drop(walk.end, messages, why);
    await log.compactBefore(walk.end);
  }

  async #drop(to: number, messages: number, why: string): Promise<void> {
    const from = this.#position;
    await this.#options.positions.drop({
      topic: this.topic,
      partition: this.partition,
      from,
      to,
      messages,
      bytes: to - from,
      why,
    });
    this.#position = to;
    this.#consumed(to, messages);
    this.#options.logger.log("warn", "Uplink dropped messages the hub never acknowledged", {
      partition: `${this.topic}-${this.partition}`,
      messages,
      bytes: to - from,
      from,
      to,
      why,
    });
  }

  /** The time in the id of the record at the position (undefined: none there, or no time). */
  #firstRecordTimeMs(): number | undefined {
    const header = this.#read(this.#position, RECORD_HEADER_BYTES);
    return header.length === RECORD_HEADER_BYTES ? recordTimeMs(header, 0) : undefined;
  }

  /** Counts a little more of the backlog (bounded per round). */
  #count(): void {
    const end = this.#readableEnd();
    if (this.#countEnd >= end) return;
    const walk = walkLog(this.#log, this.#countEnd, end, undefined, COUNT_RECORDS_PER_ROUND);
    this.#countEnd = walk.end;
    this.#counted += walk.records;
  }

  /** `records` messages up to `to` left the backlog. */
  #consumed(to: number, records: number): void {
    if (this.#countEnd >= to) {
      this.#counted = Math.max(0, this.#counted - records);
    } else {
      this.#countEnd = to;
      this.#counted = 0;
    }
  }

  async #failed(error: unknown): Promise<void> {
    if (this.#stopped) return;
    if (isLinkError(error)) {
      this.#set("waiting", describeError(error));
      return; // the link dials again; the next round waits for it
    }
    const { retryMinMs, retryMaxMs } = this.#options.config;
    if (isLasting(error)) {
      if (this.#reason !== describeError(error)) {
        this.#options.logger.log("error", "Uplink cannot forward a partition", {
          partition: `${this.topic}-${this.partition}`,
          reason: describeError(error),
        });
      }
      this.#set("blocked", describeError(error));
      return await this.#sleep(retryMaxMs);
    }
    if (!(error instanceof BrokerError)) {
      this.#options.logger.log("error", "Uplink round failed", {
        partition: `${this.topic}-${this.partition}`,
        reason: describeError(error),
      });
    }
    this.#set("waiting", describeError(error));
    this.#retryRounds += 1;
    const bound = Math.min(retryMaxMs, retryMinMs * 2 ** Math.min(this.#retryRounds, 30));
    await this.#sleep(this.#options.random.int(0, Math.max(1, bound)));
  }

  /** Offset after the last record both acknowledged and durable here. */
  #readableEnd(): number {
    return Math.min(this.#log.endOffset, this.#log.facts().durableEnd);
  }

  #read(offset: number, maxBytes: number): Uint8Array {
    const bytes = new Uint8Array(maxBytes);
    return bytes.subarray(0, this.#readInto(bytes, offset, maxBytes));
  }

  /** Reads what is readable at `offset` in one piece, up to `maxBytes`; returns its length. */
  #readInto(target: Uint8Array, offset: number, maxBytes: number): number {
    const length = this.#log.readableAt(offset, maxBytes);
    this.#log.readInto(target, 0, offset, length);
    return length;
  }

  #positionAt(offset: number, target: HubTarget, since: number): ForwardPosition {
    return {
      topic: this.topic,
      partition: this.partition,
      offset,
      hubTopic: target.topic,
      hubPartition: target.partition,
      since,
    };
  }

  #set(state: PumpState, reason?: string): void {
    if (this.#stopped) return;
    this.#state = state;
    this.#reason = reason;
  }

  /** Waits `ms`, or less when the log changes, the link comes up, or the pump stops. */
  #sleep(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.#wake === done) this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }
}

/** What an `uput` reply says: `<offset> <end> <maxBatchBytes> <maxMessageSize>`. */
export interface UputReply {
  readonly offset: number;
  readonly end: number;
  readonly batchBytesMax: number;
  readonly messageBytesMax: number;
}

export function parseUputReply(text: string): UputReply {
  const fields = text.split(" ").map(Number);
  const [offset, end, batchBytesMax, messageBytesMax] = fields;
  if (
    fields.length !== 4 || !fields.every(Number.isSafeInteger) || offset < 0 || end < offset ||
    batchBytesMax < 1024 || messageBytesMax < 1
  ) {
    throw new BrokerError("badRequest", `Cannot read the hub's uput reply '${text.slice(0, 80)}'`);
  }
  return { offset, end, batchBytesMax, messageBytesMax };
}

/**
 * @module PartitionReads: whole records of a partition for the JSON API, the live stream and the
 * dashboard. A partition whose log is open here is read through `broker.read`, the one read path
 * (the same visibility rule as `get`: acknowledged on one node, committed in a cluster); in a
 * cluster, a partition this node does not hold is read with a `get` sent through the edge, which
 * forwards it to a node that does. Either way only complete, checksum-verified records come
 * back, with the offset just after the last one.
 *
 * A read returns at most one segment's bytes, so a page is read in rounds; each round takes at
 * least one record or ends the page, so rounds are bounded by the page's record count. A record
 * longer than the byte budget is returned whole when it comes first, as MetaQ's consumer grows
 * its fetch size for a message larger than it.
 */
import { Buffer } from "node:buffer";
import type { Broker, ReadOutcome } from "../broker/broker.ts";
import { metaqChecksum } from "../crc32.ts";
import { BrokerError } from "../errors.ts";
import { RECORD_BYTES_MAX, RECORD_DATA_BYTES_MAX, RECORD_HEADER_BYTES } from "../limits.ts";
import { LONG_MAX_TEXT } from "../protocol/commands.ts";
import {
  type DecodedRecord,
  readHeader,
  recordBytesAt,
  RecordLengthError,
  walkRecords,
} from "../protocol/record.ts";
import type { PartitionBytes } from "../protocol/record_seek.ts";
import { errorFromResult } from "../protocol/reply.ts";
import { ask, type Dispatch, type WireAnswer } from "./wire_reply.ts";

/** The group named in `get` commands the HTTP edge sends (no server-side filter applies). */
export const HTTP_READER_GROUP = "metaq-http";

/** MetaQ's text for a read at or past the end of a partition (a 404). */
const AT_END_TEXT = "Could not find message at position";

export interface PageRequest {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly countMax: number;
  /** Budget in bytes; the first record is returned whole even when it is larger. */
  readonly bytesMax: number;
}

/** What a page read finds. */
export type PageOutcome =
  | {
    readonly kind: "records";
    readonly records: readonly DecodedRecord[];
    readonly nextOffset: number;
    readonly bytes: number;
  }
  /** The offset is outside the partition: read from `offset` instead (MetaQ's 301). */
  | { readonly kind: "moved"; readonly offset: number }
  /** Nothing at or after the offset yet: it is at (or past) the readable end. */
  | { readonly kind: "end" }
  | { readonly kind: "refused"; readonly error: BrokerError };

/** First offset still stored and the readable end of a partition. */
export interface PartitionBounds {
  readonly start: number;
  readonly end: number;
}

export interface PartitionReadsOptions {
  readonly broker: Broker;
  /** In a cluster: the edge, through which partitions not open here are read. */
  readonly remote?: Dispatch;
}

export class PartitionReads {
  readonly #broker: Broker;
  readonly #remote: Dispatch | undefined;

  constructor(options: PartitionReadsOptions) {
    this.#broker = options.broker;
    this.#remote = options.remote;
  }

  /** Whether the partition is read on this node (its log is open here, or there is no cluster). */
  isLocal(topic: string, partition: number): boolean {
    return !this.#remote || this.#broker.logs.get(topic, partition) !== undefined;
  }

  /** Whole records from `request.offset` on, within the request's budgets. */
  page(request: PageRequest): Promise<PageOutcome> {
    const remote = this.#remote;
    if (remote && !this.#broker.logs.get(request.topic, request.partition)) {
      return remotePage(remote, request);
    }
    return localPage(this.#broker, request);
  }

  /**
   * Raw bytes of a partition from any offset, record start or not (at most `maxSize`, at most
   * to a segment's end; empty at or past the end), where it is read: what the position searches
   * of record_seek.ts walk to find the last N records or the first one after a time.
   */
  reader(topic: string, partition: number): PartitionBytes {
    return {
      read: async (offset, maxSize) => {
        const remote = this.#remote;
        if (remote && !this.#broker.logs.get(topic, partition)) {
          const answer = await ask(
            remote,
            getCommand({ topic, partition, offset, maxBytes: maxSize }),
          );
          return answer.kind === "value" ? answer.body : new Uint8Array(0);
        }
        const outcome = await this.#broker.read({ topic, partition, offset, maxBytes: maxSize });
        return outcome.kind === "slice" ? copyOf(outcome) : new Uint8Array(0);
      },
    };
  }

  /**
   * Refuses `offset` (named `what` in the error) unless it lies within `bounds` at a record
   * start or at the end: what a committed offset or the end of a page must be.
   */
  async checkBoundary(
    topic: string,
    partition: number,
    offset: number,
    bounds: PartitionBounds,
    what = "offset",
  ): Promise<void> {
    if (offset < bounds.start || offset > bounds.end) {
      throw new BrokerError(
        "invalidOffset",
        `${what} ${offset} is outside partition ${topic}-${partition} ` +
          `(${bounds.start}..${bounds.end})`,
      );
    }
    if (offset === bounds.end) return;
    const page = await this.page({ topic, partition, offset, countMax: 1, bytesMax: 1 });
    if (page.kind === "refused") throw page.error;
  }

  /**
   * The partition's bounds where it is read, or undefined when it does not exist there. Over
   * the wire they are MetaQ's own answers: `get` at Long.MAX_VALUE is a 301 to the end, and
   * `offset 0` is the first stored offset.
   */
  async bounds(topic: string, partition: number): Promise<PartitionBounds | undefined> {
    const log = this.#broker.logs.get(topic, partition);
    if (log) return { start: log.startOffset, end: log.endOffset };
    const remote = this.#remote;
    if (!remote) return undefined;
    const [end, start] = await Promise.all([
      ask(remote, getCommand({ topic, partition, offset: Number(LONG_MAX_TEXT), maxBytes: 1 })),
      ask(remote, {
        kind: "offset",
        topic,
        group: HTTP_READER_GROUP,
        partition,
        offset: 0,
        opaque: 0,
      }),
    ]);
    if (end.kind !== "result" || end.code !== 301) return undefined;
    if (start.kind !== "result" || start.code !== 200) return undefined;
    return { start: Number(start.text), end: Number(end.text) };
  }
}

/** Reads rounds of `broker.read` until the page is full or the readable end is reached. */
async function localPage(broker: Broker, request: PageRequest): Promise<PageOutcome> {
  const { topic, partition } = request;
  const records: DecodedRecord[] = [];
  let at = request.offset;
  let bytes = 0;
  for (let round = 0; round < request.countMax; round++) {
    if (records.length >= request.countMax || bytes >= request.bytesMax) break;
    const budget = Math.max(request.bytesMax - bytes, RECORD_HEADER_BYTES);
    const outcome = await broker.read({ topic, partition, offset: at, maxBytes: budget });
    if (outcome.kind !== "slice") {
      if (records.length === 0) return pageOf(outcome);
      break;
    }
    const chunk = copyOf(outcome);
    let found = wholeRecords(chunk, at, request.countMax - records.length);
    if (found.records.length === 0) {
      // Readable bytes end at record boundaries, so a record cut short by anything but the
      // budget means `at` is not a record start.
      const length = recordBytesAt(chunk);
      if (length === undefined || chunk.length < budget) throw notARecord(at);
      // A record longer than the budget comes whole, but only first in a page.
      if (records.length > 0) break;
      const whole = await broker.read({ topic, partition, offset: at, maxBytes: length });
      if (whole.kind !== "slice" || whole.length < length) throw notARecord(at);
      found = wholeRecords(copyOf(whole), at, 1);
      if (found.records.length === 0) throw notARecord(at);
    }
    records.push(...found.records);
    at += found.bytes;
    bytes += found.bytes;
    if (at >= outcome.log.endOffset) break;
  }
  broker.stats.served(topic, partition, bytes);
  return { kind: "records", records, nextOffset: at, bytes };
}

/** Reads one page with a `get` through the edge (another node holds the partition). */
async function remotePage(remote: Dispatch, request: PageRequest): Promise<PageOutcome> {
  const { offset } = request;
  const answer = await ask(remote, getCommand({ ...request, maxBytes: request.bytesMax }));
  if (answer.kind === "result") return resultPage(answer);
  let found = wholeRecords(answer.body, offset, request.countMax);
  if (found.records.length === 0) {
    // One record larger than the budget: ask again for exactly that record.
    const length = recordBytesAt(answer.body);
    if (length === undefined || length > RECORD_BYTES_MAX) {
      throw notARecord(offset);
    }
    const again = await ask(remote, getCommand({ ...request, maxBytes: length }));
    if (again.kind === "result") return resultPage(again);
    found = wholeRecords(again.body, offset, 1);
    if (found.records.length === 0) throw notARecord(offset);
  }
  return {
    kind: "records",
    records: found.records,
    nextOffset: offset + found.bytes,
    bytes: found.bytes,
  };
}

function getCommand(
  request: { topic: string; partition: number; offset: number; maxBytes: number },
) {
  return {
    kind: "get" as const,
    topic: request.topic,
    group: HTTP_READER_GROUP,
    partition: request.partition,
    offset: request.offset,
    offsetIsLongMax: request.offset >= Number(LONG_MAX_TEXT),
    maxSize: Math.min(request.maxBytes, 2 ** 31 - 1),
    opaque: 0,
  };
}

function pageOf(outcome: Exclude<ReadOutcome, { kind: "slice" }>): PageOutcome {
  switch (outcome.kind) {
    case "moved":
      return outcome;
    case "empty":
      return { kind: "end" };
    case "refused":
      return { kind: "refused", error: outcome.error };
  }
}

/** A `result` reply to a `get` as a page: MetaQ's 301 moves, its 404 at the end is the end. */
function resultPage(answer: Extract<WireAnswer, { kind: "result" }>): PageOutcome {
  if (answer.code === 301) return { kind: "moved", offset: Number(answer.text) };
  if (answer.code === 404 && answer.text.startsWith(AT_END_TEXT)) return { kind: "end" };
  return { kind: "refused", error: errorFromResult(answer.code, answer.text) };
}

function copyOf(slice: Extract<ReadOutcome, { kind: "slice" }>): Uint8Array {
  // Not zero-filled: readInto overwrites every byte.
  const bytes: Uint8Array = Buffer.allocUnsafe(slice.length);
  slice.log.readInto(bytes, 0, slice.offset, slice.length);
  return bytes;
}

/** Up to `countMax` complete, verified records at the start of `chunk`; throws at a bad one. */
function wholeRecords(
  chunk: Uint8Array,
  baseOffset: number,
  countMax: number,
): { records: DecodedRecord[]; bytes: number } {
  const records: DecodedRecord[] = [];
  let walked;
  try {
    walked = walkRecords(chunk, RECORD_DATA_BYTES_MAX, (position, length) => {
      if (records.length >= countMax) return false;
      const header = readHeader(chunk, position);
      const start = position + RECORD_HEADER_BYTES;
      const data = chunk.subarray(start, start + length);
      if (metaqChecksum(data) !== header.checksum) throw notARecord(baseOffset + position);
      records.push({ ...header, offset: baseOffset + position, data });
    });
  } catch (error) {
    if (error instanceof RecordLengthError) throw notARecord(baseOffset + error.position);
    throw error;
  }
  return { records, bytes: walked.bytes };
}

function notARecord(offset: number): BrokerError {
  return new BrokerError(
    "invalidOffset",
    `no valid record starts at offset ${offset} (not a record boundary, or damaged data)`,
  );
}

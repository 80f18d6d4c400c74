/**
 * @module Positions by message in a partition's bytes: the offset of its last N records, the
 * first record written at or after a time (message ids carry their write time, message_id.ts),
 * and how many records lie between two offsets. Pure: the bytes come through a `PartitionBytes`
 * reader (a client's `get`, the HTTP edge's reads). Like `get`, a reader serves bytes from any
 * byte offset, records or not, so a
 * probe in the middle of a partition finds the next record start by resynchronising: the first
 * position whose records decode with matching checksums and plausible ids up to the end of the
 * bytes read. A segment's start is always a record start, and `get` returns at most one
 * segment's bytes, so a short answer ends at a record start too.
 *
 * The search for a time is a bisection over byte offsets (ids only grow within a partition),
 * then a walk of the last stretch; the last N records are found by walking back in growing
 * steps from the end. Every loop is bounded by the partition's size.
 *
 * A payload that itself holds a whole MetaQ record ending exactly where it does could pass for
 * a record start when a probe lands inside it; nothing metaq writes does that.
 */
import { metaqChecksum } from "../crc32.ts";
import { FETCH_BYTES_MAX, RECORD_DATA_BYTES_MAX, RECORD_HEADER_BYTES } from "../limits.ts";
import { ID_EPOCH_MS, idTimestampMs } from "./message_id.ts";

/** Reads raw bytes of one partition: what a position search needs. */
export interface PartitionBytes {
  /** Bytes from `offset` (at most `maxSize`, at most to its segment's end); empty at the end. */
  read(offset: number, maxSize: number): Promise<Uint8Array>;
}

export interface Bounds {
  /** The first offset still stored (a record start). */
  readonly start: number;
  /** The readable end: the offset after the last record. */
  readonly end: number;
}

/** A record start found in a partition, with its message id's time. */
export interface RecordStart {
  readonly offset: number;
  readonly timeMs: number;
}

const PROBE_BYTES = 64 * 1024;
/** Below this many bytes between the bisection's ends, walk instead of probing. */
const WALK_BYTES = 256 * 1024;
/** Ids from a clock more than this far ahead are not believed when resynchronising. */
const FUTURE_SLACK_MS = 366 * 24 * 3600 * 1000;

/**
 * The first record start at or after `offset` and before `end`, or undefined when none starts
 * there. `offset` may be anywhere.
 */
export async function recordStartAtOrAfter(
  reader: PartitionBytes,
  offset: number,
  end: number,
  nowMs: number,
): Promise<RecordStart | undefined> {
  let size = PROBE_BYTES;
  for (let round = 0; offset < end && round < 1_000_000; round++) {
    const want = Math.min(size, end - offset);
    const bytes = await reader.read(offset, want);
    if (bytes.length === 0) return undefined;
    // A short answer stops at a segment's end, which no record crosses.
    const short = bytes.length < want;
    let runsPast = false;
    let position = 0;
    for (; position + RECORD_HEADER_BYTES <= bytes.length; position++) {
      const verdict = chainFrom(bytes, position, nowMs);
      if (verdict === "valid") {
        return { offset: offset + position, timeMs: timeAt(bytes, position) };
      }
      if (verdict === "unknown" && !short) {
        runsPast = true; // a record (or what looks like one) runs past the bytes read
        break;
      }
    }
    if (short) return recordAt(reader, offset + bytes.length, end); // the next segment's first
    if (runsPast && size < FETCH_BYTES_MAX) {
      size = Math.min(size * 4, FETCH_BYTES_MAX);
      continue;
    }
    if (position === 0 && !runsPast) return undefined; // under a header's bytes left before end
    offset += runsPast ? position + 1 : position; // no start before here: look further
    size = PROBE_BYTES;
  }
  return undefined;
}

/** The record starting exactly at `offset` (a known record start), if one is there. */
async function recordAt(
  reader: PartitionBytes,
  offset: number,
  end: number,
): Promise<RecordStart | undefined> {
  if (offset >= end) return undefined;
  const bytes = await reader.read(offset, RECORD_HEADER_BYTES);
  if (bytes.length < RECORD_HEADER_BYTES) return undefined;
  return { offset, timeMs: timeAt(bytes, 0) };
}

/**
 * Whether records decode from `position` to the end of `bytes` (at least one whole one), with
 * checksums and plausible ids: "valid"; "invalid" when something there cannot be a record;
 * "unknown" when the first record runs past the bytes read.
 */
function chainFrom(bytes: Uint8Array, position: number, nowMs: number): Verdict {
  let at = position;
  let whole = 0;
  while (bytes.length - at >= RECORD_HEADER_BYTES) {
    const view = new DataView(bytes.buffer, bytes.byteOffset + at, RECORD_HEADER_BYTES);
    const length = view.getInt32(0);
    if (length < 0 || length > RECORD_DATA_BYTES_MAX) return "invalid";
    const id = view.getBigInt64(8);
    if (id === 0n) return "invalid";
    const timeMs = recordTimeMs(id); // an uplink's forwarded message has a negative id, no time
    if (id > 0n && (timeMs <= ID_EPOCH_MS || timeMs > nowMs + FUTURE_SLACK_MS)) return "invalid";
    const next = at + RECORD_HEADER_BYTES + length;
    if (next > bytes.length) break;
    const data = bytes.subarray(at + RECORD_HEADER_BYTES, next);
    if (metaqChecksum(data) !== view.getInt32(4)) return "invalid";
    whole += 1;
    at = next;
  }
  if (whole > 0) return "valid";
  return at === position && bytes.length - at >= RECORD_HEADER_BYTES ? "unknown" : "invalid";
}

type Verdict = "valid" | "invalid" | "unknown";

function timeAt(bytes: Uint8Array, position: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset + position, RECORD_HEADER_BYTES);
  return recordTimeMs(view.getBigInt64(8));
}

/**
 * When a record was written, from its id; ids an uplink's hub gives forwarded messages are
 * negative and carry no time: they count as older than any time asked for.
 */
export function recordTimeMs(id: bigint): number {
  return id > 0n ? idTimestampMs(id) : Number.NEGATIVE_INFINITY;
}

/** Record starts (and their times) from `offset`, a record start, up to `end`. */
export async function* walkFrom(
  reader: PartitionBytes,
  offset: number,
  end: number,
): AsyncGenerator<RecordStart> {
  let at = offset;
  let size = PROBE_BYTES;
  while (at < end) {
    const bytes = await reader.read(at, Math.min(size, end - at));
    if (bytes.length === 0) return;
    let position = 0;
    while (bytes.length - position >= RECORD_HEADER_BYTES) {
      const view = new DataView(bytes.buffer, bytes.byteOffset + position, RECORD_HEADER_BYTES);
      const length = view.getInt32(0);
      if (length < 0 || length > RECORD_DATA_BYTES_MAX) {
        throw new Error(`Cannot walk records at offset ${at + position}: invalid length ${length}`);
      }
      if (position + RECORD_HEADER_BYTES + length > bytes.length) break;
      yield { offset: at + position, timeMs: recordTimeMs(view.getBigInt64(8)) };
      position += RECORD_HEADER_BYTES + length;
    }
    if (position === 0) {
      if (size >= FETCH_BYTES_MAX) throw new Error(`Cannot walk records at offset ${at}`);
      size = Math.min(size * 4, FETCH_BYTES_MAX); // one record larger than the read
      continue;
    }
    at += position;
  }
}

/**
 * The offset of the first record written at or after `timeMs` (by its message id), or the end
 * when every record is older. `nowMs` is the caller's clock: ids further ahead of it are not
 * believed when a probe resynchronises.
 */
export async function offsetForTime(
  reader: PartitionBytes,
  bounds: Bounds,
  timeMs: number,
  nowMs: number,
): Promise<number> {
  let low = bounds.start; // a record start older than timeMs (or the start)
  let high = bounds.end; // a record start at or after timeMs (or the end)
  for (let round = 0; round < 64 && high - low > WALK_BYTES; round++) {
    const middle = low + Math.floor((high - low) / 2);
    const found = await recordStartAtOrAfter(reader, middle, high, nowMs);
    if (!found) high = middle; // nothing starts in [middle, high): the answer is before
    else if (found.timeMs < timeMs) low = found.offset;
    else high = found.offset;
  }
  for await (const record of walkFrom(reader, low, high)) {
    if (record.timeMs >= timeMs) return record.offset;
  }
  return high;
}

/** The offset of the last `count` records (the start when it holds fewer); `nowMs` as above. */
export async function offsetOfLast(
  reader: PartitionBytes,
  bounds: Bounds,
  count: number,
  nowMs: number,
): Promise<number> {
  if (count <= 0 || bounds.end <= bounds.start) return bounds.end;
  let span = count * 128;
  for (let round = 0; round < 64; round++) {
    const from = Math.max(bounds.start, bounds.end - span);
    const first = from === bounds.start
      ? { offset: bounds.start }
      : await recordStartAtOrAfter(reader, from, bounds.end, nowMs);
    const starts: number[] = [];
    if (first) {
      for await (const record of walkFrom(reader, first.offset, bounds.end)) {
        starts.push(record.offset);
      }
    }
    if (starts.length >= count) return starts[starts.length - count];
    if (from === bounds.start) return bounds.start;
    // Too few: step back further, by what the records seen so far suggest.
    const average = starts.length > 0 ? (bounds.end - starts[0]) / starts.length : span;
    span = Math.max(span * 2, Math.ceil(average * count * 1.25));
  }
  return bounds.start;
}

/** Bytes of lag counted record by record; beyond, the count is estimated from a sample. */
const COUNT_EXACT_BYTES = 8 * 1024 * 1024;

/**
 * Records between `from` (a record start) and `end`: counted when the stretch is at most
 * COUNT_EXACT_BYTES, else estimated from the average size of the records in the first read.
 */
export async function countRecords(
  reader: PartitionBytes,
  from: number,
  end: number,
): Promise<{ count: number; exact: boolean }> {
  if (end <= from) return { count: 0, exact: true };
  const exact = end - from <= COUNT_EXACT_BYTES;
  let count = 0;
  let last = from;
  for await (const record of walkFrom(reader, from, exact ? end : from + PROBE_BYTES)) {
    count += 1;
    last = record.offset;
  }
  if (exact) return { count, exact };
  const average = count > 1 ? (last - from) / (count - 1) : PROBE_BYTES;
  return { count: Math.round((end - from) / average), exact: false };
}

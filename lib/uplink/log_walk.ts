/**
 * @module Walks the records of a Log between two offsets, a chunk at a time, through the port's
 * readableAt/readInto: how the uplink counts its backlog and finds what its cap drops, without
 * holding more than a chunk (or one record larger than a chunk) in memory.
 */
import { RECORD_DATA_BYTES_MAX, RECORD_HEADER_BYTES } from "../limits.ts";
import { recordBytesAt, walkRecords } from "../protocol/record.ts";
import type { Log } from "../store/log.ts";

/** Bytes read per chunk. */
const CHUNK_BYTES = 1024 * 1024;

export interface LogWalk {
  /** Offset after the last record visited (and accepted). */
  readonly end: number;
  readonly records: number;
}

/**
 * Visits the whole records of `log` that start at or after `from` and end at or before `to`,
 * reading at most `maxBytes` (and always at least one record when one is there). `visit` gets
 * the chunk, the record's position in it, its data length and its offset in the log, and may
 * return false to stop before that record.
 */
export function walkLog(
  log: Log,
  from: number,
  to: number,
  visit?: (bytes: Uint8Array, position: number, length: number, offset: number) => boolean | void,
  maxBytes = Number.MAX_SAFE_INTEGER,
): LogWalk {
  let offset = from;
  let records = 0;
  let stopped = false;
  // Each round visits at least one record or ends the walk, so rounds <= records in range.
  while (!stopped && offset < to && offset - from < maxBytes) {
    let length = log.readableAt(offset, Math.min(CHUNK_BYTES, to - offset));
    if (length < RECORD_HEADER_BYTES) break;
    let chunk = new Uint8Array(length);
    log.readInto(chunk, 0, offset, length);
    const whole = recordBytesAt(chunk) ?? 0;
    if (whole > length) {
      // One record longer than a chunk: read it whole, when it is all readable.
      length = log.readableAt(offset, whole);
      if (length < whole || offset + whole > to) break;
      chunk = new Uint8Array(whole);
      log.readInto(chunk, 0, offset, whole);
    }
    const base = offset;
    const walk = walkRecords(chunk, RECORD_DATA_BYTES_MAX, (position, dataLength) => {
      if (visit?.(chunk, position, dataLength, base + position) === false) {
        stopped = true;
        return false;
      }
    });
    if (walk.records === 0) break;
    records += walk.records;
    offset += walk.bytes;
  }
  return { end: offset, records };
}

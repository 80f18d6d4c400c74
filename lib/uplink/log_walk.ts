/**
 * @module Walks the records of a Log between two offsets by their headers alone, through the
 * port's readableAt/readInto: how the uplink counts its backlog and finds what its cap drops.
 * Only each record's 20-byte header is copied, never its data, so counting a long backlog of
 * large messages costs a small read per message.
 */
import { RECORD_DATA_BYTES_MAX, RECORD_HEADER_BYTES } from "../limits.ts";
import type { Log } from "../store/log.ts";

export interface LogWalk {
  /** Offset after the last record visited (and accepted). */
  readonly end: number;
  readonly records: number;
}

/**
 * Visits the whole records of `log` that start at or after `from` and end at or before `to`,
 * at most `maxRecords` of them. `visit` gets the record's header (valid during the call), its
 * data length and its offset, and may return false to stop before that record. Stops early at
 * a header that cannot be real (a walk never throws on the log's bytes).
 */
export function walkLog(
  log: Log,
  from: number,
  to: number,
  visit?: (header: Uint8Array, length: number, offset: number) => boolean | void,
  maxRecords = Number.MAX_SAFE_INTEGER,
): LogWalk {
  const header = new Uint8Array(RECORD_HEADER_BYTES);
  const view = new DataView(header.buffer);
  let offset = from;
  let records = 0;
  // Each round visits one record or ends the walk.
  while (records < maxRecords && offset + RECORD_HEADER_BYTES <= to) {
    if (log.readableAt(offset, RECORD_HEADER_BYTES) < RECORD_HEADER_BYTES) break;
    log.readInto(header, 0, offset, RECORD_HEADER_BYTES);
    const length = view.getInt32(0);
    if (length < 0 || length > RECORD_DATA_BYTES_MAX) break;
    const end = offset + RECORD_HEADER_BYTES + length;
    if (end > to) break;
    if (visit?.(header, length, offset) === false) break;
    records += 1;
    offset = end;
  }
  return { end: offset, records };
}

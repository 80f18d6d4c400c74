/**
 * @module Walks the records of a raw `get` body the way MetaQ's client does (MessageIterator):
 * read the 20-byte header, skip `length` bytes of data, stop at the first partial record. It
 * never copies or decodes a payload and never checks a checksum: a benchmark consumer counts
 * what a real one would have to hand to the application. Pure.
 */
import { RECORD_HEADER_BYTES } from "../limits.ts";

export interface RecordWalk {
  /** Complete records found. */
  readonly records: number;
  /** Bytes of those records (the consumer's offset moves by this much). */
  readonly bytes: number;
}

/**
 * Counts the complete records at the start of `body`. `visit`, when given, gets the position of
 * each record's data and its length (the latency benchmark reads its send stamp there).
 * A length above `lengthMax` or below 0 is damage: throws, as MetaQ's iterator does.
 */
export function walkRecords(
  body: Uint8Array,
  lengthMax: number,
  visit?: (dataPosition: number, length: number) => void,
): RecordWalk {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const size = body.byteLength;
  let position = 0;
  let records = 0;
  while (size - position >= RECORD_HEADER_BYTES) {
    const length = view.getInt32(position);
    if (length < 0 || length > lengthMax) {
      throw new Error(`Cannot walk records at byte ${position}: invalid length ${length}`);
    }
    const end = position + RECORD_HEADER_BYTES + length;
    if (end > size) break;
    visit?.(position + RECORD_HEADER_BYTES, length);
    records += 1;
    position = end;
  }
  return { records, bytes: position };
}

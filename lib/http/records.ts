/**
 * @module Whole records read from a partition log for the JSON API and the live stream, and
 * their JSON form. Unlike `get` (raw bytes, partial tail allowed) these readers return only
 * complete, checksum-verified records and the offset just after the last one.
 */
import { Buffer } from "node:buffer";
import { metaqChecksum } from "../crc32.ts";
import { BrokerError } from "../errors.ts";
import { MESSAGE_BYTES_LIMIT_MAX, RECORD_HEADER_BYTES } from "../limits.ts";
import type { PartitionLog } from "../store/partition_log.ts";
import { type DecodedRecord, readHeader, splitAttribute } from "../protocol/record.ts";

export interface RecordRange {
  /** A record boundary with `log.startOffset <= offset <= end`. */
  readonly offset: number;
  /** Readable end (the broker's read limit). */
  readonly end: number;
  readonly countMax: number;
  /** Budget in bytes; the first record is returned whole even when it is larger. */
  readonly bytesMax: number;
}

export interface RecordBatch {
  readonly records: DecodedRecord[];
  readonly nextOffset: number;
  readonly bytes: number;
}

/** Reads whole records from `range.offset` on, across segment files, within the budgets. */
export function readRecords(log: PartitionLog, range: RecordRange): RecordBatch {
  const records: DecodedRecord[] = [];
  let at = range.offset;
  let bytes = 0;
  // Each round takes at least one record or stops, so rounds <= countMax.
  while (records.length < range.countMax && at < range.end && bytes < range.bytesMax) {
    const chunk = log.read(at, Math.max(range.bytesMax - bytes, RECORD_HEADER_BYTES), range.end);
    let walked = walkRecords(chunk, at, range.countMax - records.length);
    if (walked.records.length === 0) {
      // The next record is longer than the chunk. Readable data always ends at a record
      // boundary, so a record that would run past it means `at` is not a record start.
      const length = recordLength(chunk, at);
      const whole = length !== undefined && at + length <= range.end;
      if (records.length > 0 && (!whole || bytes + length > range.bytesMax)) break;
      if (!whole) throw notARecord(at);
      walked = walkRecords(log.read(at, length, range.end), at, 1);
      if (walked.records.length === 0) throw notARecord(at);
    }
    records.push(...walked.records);
    at += walked.bytes;
    bytes += walked.bytes;
  }
  return { records, nextOffset: at, bytes };
}

/** Complete records at the start of `chunk`, verified; throws at a record that is not valid. */
function walkRecords(
  chunk: Uint8Array,
  baseOffset: number,
  countMax: number,
): { records: DecodedRecord[]; bytes: number } {
  const records: DecodedRecord[] = [];
  let position = 0;
  while (records.length < countMax && chunk.length - position >= RECORD_HEADER_BYTES) {
    const header = readHeader(chunk, position);
    checkLength(header.length, baseOffset + position);
    const end = position + RECORD_HEADER_BYTES + header.length;
    if (end > chunk.length) break;
    const data = chunk.subarray(position + RECORD_HEADER_BYTES, end);
    if (metaqChecksum(data) !== header.checksum) throw notARecord(baseOffset + position);
    records.push({ ...header, offset: baseOffset + position, data });
    position = end;
  }
  return { records, bytes: position };
}

/** Bytes of the record starting `chunk`, or undefined when fewer than a header are there. */
function recordLength(chunk: Uint8Array, offset: number): number | undefined {
  if (chunk.length < RECORD_HEADER_BYTES) return undefined;
  const length = readHeader(chunk, 0).length;
  checkLength(length, offset);
  return RECORD_HEADER_BYTES + length;
}

function checkLength(length: number, offset: number): void {
  if (length < 0 || length > MESSAGE_BYTES_LIMIT_MAX) throw notARecord(offset);
}

function notARecord(offset: number): BrokerError {
  return new BrokerError(
    "invalidOffset",
    `no valid record starts at offset ${offset} (not a record boundary, or damaged data)`,
  );
}

export type PayloadEncoding = "utf8" | "base64";

export interface RecordJson {
  readonly offset: number;
  readonly nextOffset: number;
  /** The 64-bit message id as decimal text (JSON numbers lose precision above 2^53). */
  readonly id: string;
  readonly flag: number;
  readonly attribute: string | null;
  readonly payload: string;
  readonly encoding: PayloadEncoding;
  readonly bytes: number;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** A record as JSON; `auto` gives UTF-8 text when the payload is valid UTF-8, else base64. */
export function recordToJson(
  record: DecodedRecord,
  encoding: PayloadEncoding | "auto" = "auto",
): RecordJson {
  let attribute: string | null = null;
  let payload = record.data;
  try {
    const split = splitAttribute(record.flag, record.data);
    attribute = split.attribute ?? null;
    payload = split.payload;
  } catch {
    // flag bit 0 without a valid attribute block: show the data as it is
  }
  let text: string | undefined;
  if (encoding !== "base64") {
    try {
      text = strictUtf8.decode(payload);
    } catch {
      text = undefined;
    }
  }
  return {
    offset: record.offset,
    nextOffset: record.offset + RECORD_HEADER_BYTES + record.length,
    id: record.id.toString(),
    flag: record.flag,
    attribute,
    payload: text ?? Buffer.from(payload).toString("base64"),
    encoding: text === undefined ? "base64" : "utf8",
    bytes: payload.length,
  };
}

/** Decodes strict base64 (standard alphabet, padded); anything else is a 400. */
export function decodeBase64(text: string, what: string): Uint8Array {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new BrokerError("badRequest", `Cannot decode ${what}: not valid base64`);
  }
  return new Uint8Array(Buffer.from(text, "base64"));
}

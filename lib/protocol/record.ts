/**
 * @module MetaQ's message record, the unit stored on disk and served raw by `get`:
 *
 * ```text
 * offset  size  field
 * 0       4     length    int32, bytes of data (attribute block + payload)
 * 4       4     checksum  CRC-32 of data & 0x7FFFFFFF
 * 8       8     id        int64 message id
 * 16      4     flag      int32; bit 0 = data starts with an attribute block
 * 20      length data
 * ```
 *
 * All integers big-endian. The layout is frozen: consumers parse these exact bytes. An
 * all-zero header is never a real record (ids are never 0), so it marks the end of data.
 */
import { assert } from "../assert.ts";
import { metaqChecksum } from "../crc32.ts";
import { RECORD_HEADER_BYTES } from "../limits.ts";
import { MessageId } from "./message_id.ts";

export { RECORD_HEADER_BYTES };

/** Flag bit 0: the data begins with a 4-byte length and a UTF-8 attribute. */
export const FLAG_HAS_ATTRIBUTE = 1;

export interface RecordHeader {
  readonly length: number;
  readonly checksum: number;
  readonly id: bigint;
  readonly flag: number;
}

/** A decoded record; `data` is a view into the buffer it was read from. */
export interface DecodedRecord extends RecordHeader {
  /** Offset of the record's first byte in the partition (or in the buffer). */
  readonly offset: number;
  readonly data: Uint8Array;
}

/** The parts of a record to write; the checksum is computed when not given. */
export interface RecordInput {
  readonly id: bigint | MessageId;
  readonly flag: number;
  readonly data: Uint8Array;
  readonly checksum?: number;
}

/** Writes one record at `position` of `target`; returns the bytes written. */
export function writeRecord(target: Uint8Array, position: number, record: RecordInput): number {
  const { id, flag, data } = record;
  const checksum = record.checksum ?? metaqChecksum(data);
  const { high32, low32 } = id instanceof MessageId ? id : MessageId.of(id);
  writeInt32(target, position, data.length);
  writeInt32(target, position + 4, checksum);
  writeInt32(target, position + 8, high32);
  writeInt32(target, position + 12, low32);
  writeInt32(target, position + 16, flag);
  target.set(data, position + RECORD_HEADER_BYTES);
  return RECORD_HEADER_BYTES + data.length;
}

/** Big-endian 32-bit write without a DataView (this runs once per field per message). */
function writeInt32(target: Uint8Array, position: number, value: number): void {
  target[position] = value >>> 24;
  target[position + 1] = value >>> 16;
  target[position + 2] = value >>> 8;
  target[position + 3] = value;
}

/** Encodes one record into a new buffer. */
export function encodeRecord(
  options: { id: bigint | MessageId; flag: number; data: Uint8Array },
): Uint8Array {
  const bytes = new Uint8Array(RECORD_HEADER_BYTES + options.data.length);
  writeRecord(bytes, 0, options);
  return bytes;
}

/** Reads the header at `position`; the caller guarantees 20 bytes are there. */
export function readHeader(bytes: Uint8Array, position: number): RecordHeader {
  assert(position + RECORD_HEADER_BYTES <= bytes.length);
  const view = new DataView(bytes.buffer, bytes.byteOffset + position, RECORD_HEADER_BYTES);
  return {
    length: view.getInt32(0),
    checksum: view.getInt32(4),
    id: view.getBigInt64(8),
    flag: view.getInt32(16),
  };
}

/** A record header whose length cannot be real: damage, or bytes that are not records. */
export class RecordLengthError extends RangeError {
  override readonly name = "RecordLengthError";
  readonly position: number;
  readonly length: number;

  constructor(position: number, length: number) {
    super(`Cannot walk records at byte ${position}: invalid length ${length}`);
    this.position = position;
    this.length = length;
  }
}

/** What a walk over a buffer of records found. */
export interface RecordWalk {
  /** Complete records visited. */
  readonly records: number;
  /** Bytes of those records: where the next (partial, or unvisited) record starts. */
  readonly bytes: number;
}

/**
 * Bytes kept as the pieces they arrived in: a large `get` body read off a socket. Walking them
 * in place spares joining a megabyte per `get` into a fresh array (a page-faulting allocation and
 * a copy) only to read views of it.
 */
export type ByteChunks = readonly Uint8Array[];

/**
 * The one walk over records laid end to end (a `get` body, a segment slice, a replicated
 * entry), as MetaQ's MessageIterator walks them: read the 20-byte header, skip `length` bytes,
 * stop at the first partial record. `visit` gets each record's start and data length and may
 * return false to stop before that record. A length below 0 or above `lengthMax` is damage:
 * throws. Never copies and never checks a checksum; callers that must, do it in `visit`.
 */
export function walkRecords(
  bytes: Uint8Array,
  lengthMax: number,
  visit?: (position: number, length: number) => boolean | void,
): RecordWalk {
  return walkRecordChunks([bytes], lengthMax, visit);
}

/**
 * `walkRecords` over bytes kept in pieces. `visit` also gets an array holding the whole record
 * from index `at`: the piece it lies in, or, for a record that straddles pieces (a few per
 * `get`), a copy of that record alone. Positions count from the first piece's first byte.
 */
export function walkRecordChunks(
  chunks: ByteChunks,
  lengthMax: number,
  visit?: (position: number, length: number, bytes: Uint8Array, at: number) => boolean | void,
): RecordWalk {
  let size = 0;
  for (const chunk of chunks) size += chunk.length;
  let index = 0;
  let chunkStart = 0; // position of chunks[index][0]
  let position = 0;
  let records = 0;
  while (size - position >= RECORD_HEADER_BYTES) {
    while (position - chunkStart >= chunks[index].length) {
      chunkStart += chunks[index].length;
      index += 1;
    }
    const chunk = chunks[index];
    const at = position - chunkStart;
    const length = at + 4 <= chunk.length
      ? (chunk[at] << 24) | (chunk[at + 1] << 16) | (chunk[at + 2] << 8) | chunk[at + 3]
      : int32Across(chunks, index, at);
    if (length < 0 || length > lengthMax) throw new RecordLengthError(position, length);
    const recordBytes = RECORD_HEADER_BYTES + length;
    if (position + recordBytes > size) break;
    if (visit) {
      const inOnePiece = at + recordBytes <= chunk.length;
      const stop = inOnePiece
        ? visit(position, length, chunk, at)
        : visit(position, length, copyAcross(chunks, index, at, recordBytes), 0);
      if (stop === false) break;
    }
    records += 1;
    position += recordBytes;
  }
  return { records, bytes: position };
}

/** The big-endian int32 whose bytes start at chunks[index][at] and run into the next pieces. */
function int32Across(chunks: ByteChunks, index: number, at: number): number {
  const four = copyAcross(chunks, index, at, 4);
  return (four[0] << 24) | (four[1] << 16) | (four[2] << 8) | four[3];
}

/** `count` bytes from chunks[index][at] on, across pieces, in a new array. */
function copyAcross(chunks: ByteChunks, index: number, at: number, count: number): Uint8Array {
  const out = new Uint8Array(count);
  let filled = 0;
  // The first piece is read from `at`, every later one from its start.
  for (let i = index, from = at; filled < count; i++, from = 0) {
    const piece = chunks[i].subarray(from, from + count - filled);
    out.set(piece, filled);
    filled += piece.length;
  }
  return out;
}

/** Bytes of the whole record starting at `position`, or undefined when its header is not all there. */
export function recordBytesAt(bytes: Uint8Array, position = 0): number | undefined {
  if (bytes.byteLength - position < RECORD_HEADER_BYTES) return undefined;
  const length = (bytes[position] << 24) | (bytes[position + 1] << 16) |
    (bytes[position + 2] << 8) | bytes[position + 3];
  return RECORD_HEADER_BYTES + length;
}

/**
 * Decodes the complete, valid records at the start of `bytes` (as a consumer walks a `value`
 * body). Stops at the first partial record; throws on a checksum mismatch or a bad length.
 * `baseOffset` is the partition offset of `bytes[0]`.
 */
export function decodeRecords(
  bytes: Uint8Array,
  baseOffset = 0,
  lengthMax = 2 * 1024 * 1024,
): DecodedRecord[] {
  return decodeRecordChunks([bytes], baseOffset, lengthMax);
}

/**
 * `decodeRecords` over a body kept in pieces: each record's data is a view of the piece it lies
 * in, or of a copy of the record when it straddles two.
 */
export function decodeRecordChunks(
  chunks: ByteChunks,
  baseOffset = 0,
  lengthMax = 2 * 1024 * 1024,
): DecodedRecord[] {
  const records: DecodedRecord[] = [];
  try {
    walkRecordChunks(chunks, lengthMax, (position, length, bytes, at) => {
      const header = readHeader(bytes, at);
      const data = bytes.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + length);
      if (metaqChecksum(data) !== header.checksum) {
        throw new Error(
          `Cannot decode record at offset ${baseOffset + position}: checksum mismatch`,
        );
      }
      records.push({ ...header, offset: baseOffset + position, data });
    });
  } catch (error) {
    if (!(error instanceof RecordLengthError)) throw error;
    throw new Error(
      `Cannot decode record at offset ${
        baseOffset + error.position
      }: invalid length ${error.length}`,
    );
  }
  return records;
}

/** Splits a record's data into its attribute (when flag bit 0 is set) and payload. */
export function splitAttribute(
  flag: number,
  data: Uint8Array,
): { attribute?: string; payload: Uint8Array } {
  if ((flag & FLAG_HAS_ATTRIBUTE) === 0) return { payload: data };
  if (data.length < 4) throw new Error("Cannot read attribute: data shorter than its length field");
  const length = new DataView(data.buffer, data.byteOffset, 4).getInt32(0);
  if (length < 0 || 4 + length > data.length) {
    throw new Error(`Cannot read attribute: invalid attribute length ${length}`);
  }
  const attribute = new TextDecoder().decode(data.subarray(4, 4 + length));
  return { attribute, payload: data.subarray(4 + length) };
}

/** Builds message data with an attribute block in front of the payload (flag bit 0). */
export function joinAttribute(attribute: string, payload: Uint8Array): Uint8Array {
  const attributeBytes = new TextEncoder().encode(attribute);
  const data = new Uint8Array(4 + attributeBytes.length + payload.length);
  new DataView(data.buffer).setInt32(0, attributeBytes.length);
  data.set(attributeBytes, 4);
  data.set(payload, 4 + attributeBytes.length);
  return data;
}

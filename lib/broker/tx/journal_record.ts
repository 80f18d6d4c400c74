/**
 * @module The transaction journal's record format (ours, not MetaQ's protobuf journal), and a
 * pure scanner that walks a file's bytes and says where its valid records end.
 *
 * Every record is a 16-byte header and a body; header and body are checksummed separately, so
 * a torn header is never trusted for the body's length:
 *
 * ```text
 * offset  size  field
 * 0       4     body length    uint32
 * 4       4     body CRC-32    uint32, over the body
 * 8       1     type           1 file, 2 checkpoint, 3 put, 4 prepare, 5 commit,
 *                              6 rollback, 7 heuristic, 8 forget
 * 9       1     version        1
 * 10      2     reserved       0
 * 12      4     header CRC-32  uint32, over bytes 0..11
 * 16      n     body
 * ```
 *
 * Bodies (big-endian; `str` = uint16 byte length + UTF-8; `tx` = uint64 transaction number;
 * `key` = str, the MetaQ key text `TX:...` or `XID:...`):
 *
 * ```text
 * file        magic "MQTX", uint64 sequence, uint64 created (Unix ms)
 * checkpoint  uint64 sequence, uint64 next transaction number
 * put         tx, key, str topic, int32 partition, int64 message id, int32 flag,
 *             uint32 data length, data
 * prepare     tx, key
 * commit      tx, key, uint8 was prepared, uint16 count, then per partition batch:
 *             str topic, int32 partition, uint64 offset, uint32 length, uint32 CRC-32 of the
 *             batch bytes, uint32 record count
 * rollback    tx, key
 * heuristic   key, uint8 outcome (1 commit, 2 rollback)
 * forget      key
 * ```
 */
import { assert } from "../../assert.ts";
import { crc32 } from "../../crc32.ts";
import { MESSAGE_BYTES_LIMIT_MAX } from "../../limits.ts";
import type { HeuristicOutcome } from "./failure.ts";
import type { TxMessage } from "./state.ts";
import { concatBytes } from "../../bytes.ts";

export const JOURNAL_HEADER_BYTES = 16;
export const JOURNAL_VERSION = 1;
/** Largest body: a put of the largest message any configuration allows, plus its fields. */
export const JOURNAL_BODY_BYTES_MAX = MESSAGE_BYTES_LIMIT_MAX + 64 * 1024;
const MAGIC = 0x4d51_5458; // "MQTX"

/** Where a commit put one partition's messages: the batch the commit appended in one piece. */
export interface BatchLocation {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly length: number;
  /** CRC-32 (unsigned) of the batch's bytes as appended. */
  readonly checksum: number;
  readonly records: number;
}

export type TxRecord =
  | { readonly type: "file"; readonly sequence: number; readonly createdMs: number }
  | { readonly type: "checkpoint"; readonly sequence: number; readonly nextTxNumber: number }
  | { readonly type: "put"; readonly tx: number; readonly key: string; readonly message: TxMessage }
  | { readonly type: "prepare"; readonly tx: number; readonly key: string }
  | {
    readonly type: "commit";
    readonly tx: number;
    readonly key: string;
    readonly wasPrepared: boolean;
    readonly locations: readonly BatchLocation[];
  }
  | { readonly type: "rollback"; readonly tx: number; readonly key: string }
  | { readonly type: "heuristic"; readonly key: string; readonly outcome: HeuristicOutcome }
  | { readonly type: "forget"; readonly key: string };

const TYPE_CODES = {
  file: 1,
  checkpoint: 2,
  put: 3,
  prepare: 4,
  commit: 5,
  rollback: 6,
  heuristic: 7,
  forget: 8,
} as const satisfies Record<TxRecord["type"], number>;
const TYPE_NAMES = Object.fromEntries(
  Object.entries(TYPE_CODES).map(([name, code]) => [code, name]),
) as Record<number, TxRecord["type"]>;

/** Encodes one record: header and body. */
export function encodeRecord(record: TxRecord): Uint8Array {
  const body = encodeBody(record);
  assert(body.length <= JOURNAL_BODY_BYTES_MAX, `journal record of ${body.length} bytes`);
  const bytes = new Uint8Array(JOURNAL_HEADER_BYTES + body.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, body.length);
  view.setUint32(4, crc32(body));
  view.setUint8(8, TYPE_CODES[record.type]);
  view.setUint8(9, JOURNAL_VERSION);
  view.setUint16(10, 0);
  view.setUint32(12, crc32(bytes.subarray(0, 12)));
  bytes.set(body, JOURNAL_HEADER_BYTES);
  return bytes;
}

/** Encodes records back to back (one write). */
export function encodeRecords(records: readonly TxRecord[]): Uint8Array {
  return concatBytes(records.map(encodeRecord));
}

export interface ScannedRecord {
  readonly record: TxRecord;
  /** Byte position of the record's header in the file. */
  readonly position: number;
}

export type JournalScan =
  | { readonly kind: "clean"; readonly records: ScannedRecord[]; readonly validEnd: number }
  | {
    readonly kind: "tornTail" | "corrupt";
    readonly records: ScannedRecord[];
    readonly validEnd: number;
    readonly reason: string;
  };

/**
 * Walks `bytes` record by record. At the first invalid record: if a valid record starts
 * anywhere after it, the file is corrupt (something acknowledged may be lost); otherwise it is
 * the torn tail of the last write, which the caller cuts.
 */
export function scanJournal(bytes: Uint8Array): JournalScan {
  const records: ScannedRecord[] = [];
  let position = 0;
  while (position < bytes.length) {
    const found = readRecordAt(bytes, position);
    if (typeof found === "string") {
      const kind = validRecordAfter(bytes, position + 1) ? "corrupt" : "tornTail";
      return { kind, records, validEnd: position, reason: found };
    }
    records.push({ record: found.record, position });
    position = found.end;
  }
  return { kind: "clean", records, validEnd: position };
}

/** The record at `position`, or why there is none. */
function readRecordAt(
  bytes: Uint8Array,
  position: number,
): { record: TxRecord; end: number } | string {
  if (bytes.length - position < JOURNAL_HEADER_BYTES) return "partial header";
  const view = new DataView(bytes.buffer, bytes.byteOffset + position, JOURNAL_HEADER_BYTES);
  if (crc32(bytes.subarray(position, position + 12)) !== view.getUint32(12)) {
    return "header checksum mismatch";
  }
  const length = view.getUint32(0);
  const type = TYPE_NAMES[view.getUint8(8)];
  if (view.getUint8(9) !== JOURNAL_VERSION || view.getUint16(10) !== 0 || !type) {
    return `unknown record type ${view.getUint8(8)} version ${view.getUint8(9)}`;
  }
  if (length > JOURNAL_BODY_BYTES_MAX) return `body length ${length} too large`;
  const start = position + JOURNAL_HEADER_BYTES;
  if (start + length > bytes.length) return "partial body";
  const body = bytes.subarray(start, start + length);
  if (crc32(body) !== view.getUint32(4)) return "body checksum mismatch";
  try {
    return { record: decodeBody(type, body), end: start + length };
  } catch (error) {
    return `undecodable ${type} record: ${(error as Error).message}`;
  }
}

function validRecordAfter(bytes: Uint8Array, from: number): boolean {
  for (let position = from; position + JOURNAL_HEADER_BYTES <= bytes.length; position++) {
    // Cheap filter before any checksum: version byte, reserved zeros, a known type.
    if (bytes[position + 9] !== JOURNAL_VERSION) continue;
    if (bytes[position + 10] !== 0 || bytes[position + 11] !== 0) continue;
    if (!TYPE_NAMES[bytes[position + 8]]) continue;
    if (typeof readRecordAt(bytes, position) !== "string") return true;
  }
  return false;
}

function encodeBody(record: TxRecord): Uint8Array {
  const out = new BodyWriter();
  switch (record.type) {
    case "file":
      out.u32(MAGIC).u64(record.sequence).u64(record.createdMs);
      break;
    case "checkpoint":
      out.u64(record.sequence).u64(record.nextTxNumber);
      break;
    case "put": {
      const { message } = record;
      out.u64(record.tx).str(record.key).str(message.topic).i32(message.partition);
      out.i64(message.id).i32(message.flag).u32(message.data.length).bytes(message.data);
      break;
    }
    case "prepare":
    case "rollback":
      out.u64(record.tx).str(record.key);
      break;
    case "commit":
      out.u64(record.tx).str(record.key).u8(record.wasPrepared ? 1 : 0);
      out.u16(record.locations.length);
      for (const at of record.locations) {
        out.str(at.topic).i32(at.partition).u64(at.offset).u32(at.length);
        out.u32(at.checksum).u32(at.records);
      }
      break;
    case "heuristic":
      out.str(record.key).u8(record.outcome === "commit" ? 1 : 2);
      break;
    case "forget":
      out.str(record.key);
      break;
  }
  return out.finish();
}

function decodeBody(type: TxRecord["type"], body: Uint8Array): TxRecord {
  const input = new BodyReader(body);
  const record = decodeFields(type, input);
  input.expectEnd();
  return record;
}

function decodeFields(type: TxRecord["type"], input: BodyReader): TxRecord {
  switch (type) {
    case "file": {
      if (input.u32() !== MAGIC) throw new Error("bad magic");
      return { type, sequence: input.u64(), createdMs: input.u64() };
    }
    case "checkpoint":
      return { type, sequence: input.u64(), nextTxNumber: input.u64() };
    case "put": {
      const tx = input.u64();
      const key = input.str();
      const message = {
        topic: input.str(),
        partition: input.i32(),
        id: input.i64(),
        flag: input.i32(),
        data: input.bytes(input.u32()),
      };
      return { type, tx, key, message };
    }
    case "prepare":
    case "rollback":
      return { type, tx: input.u64(), key: input.str() };
    case "commit": {
      const tx = input.u64();
      const key = input.str();
      const wasPrepared = input.u8() === 1;
      const locations: BatchLocation[] = [];
      for (let count = input.u16(); count > 0; count--) locations.push(readLocation(input));
      return { type, tx, key, wasPrepared, locations };
    }
    case "heuristic": {
      const key = input.str();
      const outcome = input.u8();
      if (outcome !== 1 && outcome !== 2) throw new Error(`outcome ${outcome}`);
      return { type, key, outcome: outcome === 1 ? "commit" : "rollback" };
    }
    case "forget":
      return { type, key: input.str() };
  }
}

function readLocation(input: BodyReader): BatchLocation {
  return {
    topic: input.str(),
    partition: input.i32(),
    offset: input.u64(),
    length: input.u32(),
    checksum: input.u32(),
    records: input.u32(),
  };
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** Appends big-endian fields to a growing buffer. */
class BodyWriter {
  #buffer = new Uint8Array(256);
  #view = new DataView(this.#buffer.buffer);
  #length = 0;

  u8(value: number): this {
    this.#room(1).setUint8(this.#advance(1), value);
    return this;
  }
  u16(value: number): this {
    assert(Number.isInteger(value) && value >= 0 && value <= 0xffff);
    this.#room(2).setUint16(this.#advance(2), value);
    return this;
  }
  u32(value: number): this {
    assert(Number.isInteger(value) && value >= 0 && value <= 0xffffffff);
    this.#room(4).setUint32(this.#advance(4), value);
    return this;
  }
  i32(value: number): this {
    this.#room(4).setInt32(this.#advance(4), value);
    return this;
  }
  u64(value: number): this {
    assert(Number.isSafeInteger(value) && value >= 0, `u64 field ${value}`);
    this.#room(8).setBigUint64(this.#advance(8), BigInt(value));
    return this;
  }
  i64(value: bigint): this {
    this.#room(8).setBigInt64(this.#advance(8), value);
    return this;
  }
  str(value: string): this {
    const bytes = utf8Encoder.encode(value);
    return this.u16(bytes.length).bytes(bytes);
  }
  bytes(value: Uint8Array): this {
    this.#room(value.length);
    this.#buffer.set(value, this.#advance(value.length));
    return this;
  }
  finish(): Uint8Array {
    return this.#buffer.slice(0, this.#length);
  }
  #room(bytes: number): DataView {
    if (this.#length + bytes > this.#buffer.length) {
      const grown = new Uint8Array(Math.max(this.#buffer.length * 2, this.#length + bytes));
      grown.set(this.#buffer.subarray(0, this.#length));
      this.#buffer = grown;
      this.#view = new DataView(grown.buffer);
    }
    return this.#view;
  }
  #advance(bytes: number): number {
    const at = this.#length;
    this.#length += bytes;
    return at;
  }
}

/** Reads big-endian fields, throwing when the body is shorter than its fields say. */
class BodyReader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  #at = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  u8(): number {
    return this.#view.getUint8(this.#take(1));
  }
  u16(): number {
    return this.#view.getUint16(this.#take(2));
  }
  u32(): number {
    return this.#view.getUint32(this.#take(4));
  }
  i32(): number {
    return this.#view.getInt32(this.#take(4));
  }
  u64(): number {
    const value = this.#view.getBigUint64(this.#take(8));
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`u64 ${value} too large`);
    return Number(value);
  }
  i64(): bigint {
    return this.#view.getBigInt64(this.#take(8));
  }
  str(): string {
    return utf8Decoder.decode(this.bytes(this.u16()));
  }
  bytes(length: number): Uint8Array {
    const at = this.#take(length);
    return this.#bytes.slice(at, at + length);
  }
  expectEnd(): void {
    if (this.#at !== this.#bytes.length) {
      throw new Error(`${this.#bytes.length - this.#at} bytes after the last field`);
    }
  }
  #take(bytes: number): number {
    if (this.#at + bytes > this.#bytes.length) throw new Error("body shorter than its fields");
    const at = this.#at;
    this.#at += bytes;
    return at;
  }
}

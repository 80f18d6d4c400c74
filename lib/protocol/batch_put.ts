/**
 * @module The batched put, a metaq extension verb (MetaQ's own `put` is unchanged, and MetaQ's
 * clients never send this): many messages of one partition in one request, one reply.
 *
 * ```text
 * bput <topic> <partition> <count> <length> <opaque>\r\n  + <length> bytes: <count> records
 * result 200 <n> <opaque>\r\n + "<partition> <offset> <firstId>:<run>[ <firstId>:<run>...]"
 * ```
 *
 * The records are in MetaQ's record layout (record.ts), each with its own checksum and its id
 * left 0: the broker checks every record, writes the ids it chose into the same bytes and
 * appends them as they are, so a batch is stored without being copied or re-encoded. The
 * reply names the first record's offset (the others follow it, each 20 bytes plus its data
 * further) and the ids as runs of consecutive numbers, usually one. All or nothing: a batch
 * with one bad record is refused whole, with the reason a plain put would get.
 */
import { metaqChecksum } from "../crc32.ts";
import { RECORD_HEADER_BYTES } from "../limits.ts";
import { type MessageId, type MessageIdGenerator } from "./message_id.ts";

export const BATCH_PUT_VERB = "bput";

/** Room kept before the records for the command line, written once the batch is complete. */
const LINE_ROOM_BYTES = 512;
const INITIAL_RECORD_BYTES = 16 * 1024;
const encoder = new TextEncoder();

/**
 * Collects records in MetaQ's layout into one growing buffer, leaving room for the command
 * line in front, so the request is sent without copying the records again.
 */
export class BatchPutBuilder {
  #buffer: Uint8Array;
  #view: DataView;
  #end = LINE_ROOM_BYTES;
  #count = 0;

  /** `expectedBytes`: the records' size when known, so the buffer is allocated once. */
  constructor(expectedBytes = INITIAL_RECORD_BYTES) {
    this.#buffer = new Uint8Array(LINE_ROOM_BYTES + Math.max(64, expectedBytes));
    this.#view = new DataView(this.#buffer.buffer);
  }

  /** Records added so far. */
  get count(): number {
    return this.#count;
  }

  /** Bytes of the records so far (the request's body). */
  get bytes(): number {
    return this.#end - LINE_ROOM_BYTES;
  }

  /**
   * Appends one record: `attribute` (when given) joined before `payload` as MetaQ does (a
   * 4-byte length, its UTF-8 bytes), the flag's bit 0 then set.
   */
  add(payload: Uint8Array, flag: number, attribute?: string): void {
    const attributeBytes = attribute === undefined ? undefined : encoder.encode(attribute);
    const dataLength = attributeBytes ? 4 + attributeBytes.length + payload.length : payload.length;
    this.#reserve(RECORD_HEADER_BYTES + dataLength);
    const start = this.#end;
    const dataStart = start + RECORD_HEADER_BYTES;
    let position = dataStart;
    if (attributeBytes) {
      this.#view.setInt32(position, attributeBytes.length);
      this.#buffer.set(attributeBytes, position + 4);
      position += 4 + attributeBytes.length;
      flag |= 1;
    }
    this.#buffer.set(payload, position);
    const checksum = metaqChecksum(this.#buffer.subarray(dataStart, dataStart + dataLength));
    this.#view.setInt32(start, dataLength);
    this.#view.setInt32(start + 4, checksum);
    this.#view.setInt32(start + 8, 0);
    this.#view.setInt32(start + 12, 0);
    this.#view.setInt32(start + 16, flag);
    this.#end = dataStart + dataLength;
    this.#count += 1;
  }

  /**
   * The whole request, sharing the builder's buffer (the records are not copied). Encoding
   * again writes a new command line over the same records.
   */
  encode(topic: string, partition: number, opaque: number): Uint8Array {
    const line = encoder.encode(
      `${BATCH_PUT_VERB} ${topic} ${partition} ${this.#count} ${this.bytes} ${opaque}\r\n`,
    );
    if (line.length > LINE_ROOM_BYTES) throw new RangeError(`topic name too long: ${topic}`);
    const start = LINE_ROOM_BYTES - line.length;
    this.#buffer.set(line, start);
    return this.#buffer.subarray(start, this.#end);
  }

  #reserve(more: number): void {
    if (this.#end + more <= this.#buffer.length) return;
    let size = this.#buffer.length * 2;
    while (size < this.#end + more) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.#buffer.subarray(0, this.#end));
    this.#buffer = grown;
    this.#view = new DataView(grown.buffer);
  }
}

/** Why a batch's records cannot be stored, in the terms a plain put would be refused with. */
export type BatchProblem =
  | { readonly kind: "badRequest"; readonly detail: string }
  | { readonly kind: "messageTooLarge"; readonly bytes: number }
  | { readonly kind: "checksumMismatch"; readonly index: number };

/**
 * Checks a batch's body: exactly `count` whole records, none with data over `messageBytesMax`,
 * each checksum right. Returns the payload bytes on success.
 */
export function checkBatch(
  body: Uint8Array,
  count: number,
  messageBytesMax: number,
): { ok: true; payloadBytes: number } | { ok: false; problem: BatchProblem } {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let position = 0;
  let index = 0;
  let payloadBytes = 0;
  while (position < body.length) {
    if (index >= count) {
      return bad(`batch holds more than the ${count} records its command line says`);
    }
    if (position + RECORD_HEADER_BYTES > body.length) {
      return bad(`record ${index} of the batch is cut in its header`);
    }
    const length = view.getInt32(position);
    if (length < 0) return bad(`record ${index} of the batch has a negative length`);
    if (length > messageBytesMax) {
      return { ok: false, problem: { kind: "messageTooLarge", bytes: length } };
    }
    const dataStart = position + RECORD_HEADER_BYTES;
    if (dataStart + length > body.length) {
      return bad(`record ${index} of the batch runs past the end of its body`);
    }
    const checksum = view.getInt32(position + 4);
    if (metaqChecksum(body.subarray(dataStart, dataStart + length)) !== checksum) {
      return { ok: false, problem: { kind: "checksumMismatch", index } };
    }
    payloadBytes += length;
    position = dataStart + length;
    index += 1;
  }
  if (index !== count) {
    return bad(`batch holds ${index} records where its command line says ${count}`);
  }
  return { ok: true, payloadBytes };
}

function bad(detail: string): { ok: false; problem: BatchProblem } {
  return { ok: false, problem: { kind: "badRequest", detail } };
}

/** A run of consecutive message ids: `first`, `first + 1`, ... `count` of them. */
export interface IdRun {
  readonly first: MessageId;
  readonly count: number;
}

/** Writes a fresh id into each of a checked batch's records; returns them as runs. */
export function stampIds(body: Uint8Array, count: number, ids: MessageIdGenerator): IdRun[] {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const runs: IdRun[] = [];
  let position = 0;
  let stamped = 0;
  while (stamped < count) {
    const run = ids.nextRun(count - stamped);
    runs.push(run);
    const { high32, low32 } = run.first;
    for (let i = 0; i < run.count; i++) {
      // The sequence is the id's low 12 bits and a run never carries past them.
      view.setInt32(position + 8, high32);
      view.setInt32(position + 12, (low32 + i) | 0);
      position += RECORD_HEADER_BYTES + view.getInt32(position);
    }
    stamped += run.count;
  }
  return runs;
}

/** The text of a stored batch's reply. */
export function formatBatchReply(
  partition: number,
  offset: number,
  runs: readonly IdRun[],
): string {
  let text = `${partition} ${offset}`;
  for (const run of runs) text += ` ${run.first}:${run.count}`;
  return text;
}

/** A stored batch as its reply tells it. */
export interface BatchAck {
  readonly partition: number;
  /** Offset of the batch's first record. */
  readonly offset: number;
  readonly runs: readonly { readonly first: bigint; readonly count: number }[];
}

/** Parses a 200 reply's text; undefined when it is not a batch reply. */
export function parseBatchReply(text: string): BatchAck | undefined {
  const [partitionText, offsetText, ...runTexts] = text.split(" ");
  const partition = Number(partitionText);
  const offset = Number(offsetText);
  if (!Number.isSafeInteger(partition) || !Number.isSafeInteger(offset) || runTexts.length === 0) {
    return undefined;
  }
  const runs: { first: bigint; count: number }[] = [];
  for (const runText of runTexts) {
    const match = /^(-?\d{1,20}):(\d{1,6})$/.exec(runText);
    if (!match) return undefined;
    runs.push({ first: BigInt(match[1]), count: Number(match[2]) });
  }
  return { partition, offset, runs };
}

/** The id of a batch's `index`th record, from its reply's runs. */
export function idInBatch(ack: BatchAck, index: number): bigint {
  let rest = index;
  for (const run of ack.runs) {
    if (rest < run.count) return BigInt.asIntN(64, run.first + BigInt(rest));
    rest -= run.count;
  }
  throw new RangeError(`record ${index} is past the batch's ${index - rest} records`);
}

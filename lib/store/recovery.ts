/**
 * @module Recovery: what a segment's bytes say about how it was left. Pure: bytes come in
 * through a read function, a verdict comes out; the caller truncates or refuses.
 *
 * Walking records from the start, the first invalid position p decides:
 *
 * | what is at p                                   | active (last) segment | sealed segment |
 * |------------------------------------------------|-----------------------|----------------|
 * | nothing (p == size)                            | clean                 | clean          |
 * | fewer than 20 bytes                            | torn tail: cut at p   | corrupt        |
 * | an all-zero header (never a real record)       | zero tail: cut at p   | corrupt        |
 * | bad length, past the end, or checksum mismatch | torn tail: cut at p,  | corrupt        |
 * |                                                | unless a valid record |                |
 * |                                                | follows: corrupt      |                |
 *
 * A torn tail is the write that was in flight when the process or machine stopped; with
 * group commit none of it was acknowledged, so cutting it loses nothing that was promised.
 * Anything else is damage to data that may have been acknowledged: the partition refuses to
 * open until an operator repairs it (`metaq verify --repair`), which cuts at p.
 */
import { metaqChecksum } from "../crc32.ts";
import { RECORD_HEADER_BYTES } from "../limits.ts";

export type ScanVerdict =
  | {
    readonly kind: "clean";
    readonly validEnd: number;
    readonly records: number;
    readonly lastId?: bigint;
  }
  | {
    readonly kind: "tornTail" | "corrupt";
    readonly validEnd: number;
    readonly records: number;
    readonly lastId?: bigint;
    readonly reason: string;
  };

export interface ScanOptions {
  /** Bytes in the segment. */
  readonly size: number;
  /** Sealed segments may not end in a torn write. */
  readonly sealed: boolean;
  /** Largest data length a valid record may claim. */
  readonly lengthMax: number;
  /** Reads `length` bytes at `position` (position + length <= size). */
  readonly read: (position: number, length: number) => Uint8Array;
  /** Bytes read per step; small values exercise chunk boundaries in tests. */
  readonly chunkBytes?: number;
}

const CHUNK_BYTES = 8 * 1024 * 1024;

/** Scans a whole segment and classifies its end. */
export function scanSegment(options: ScanOptions): ScanVerdict {
  const { size, lengthMax } = options;
  const chunkBytes = Math.max(options.chunkBytes ?? CHUNK_BYTES, RECORD_HEADER_BYTES);
  let position = 0;
  let records = 0;
  let lastId: bigint | undefined;
  let chunk: Uint8Array = new Uint8Array(0);
  let chunkStart = 0;

  // Returns bytes [at, at+length) from the current chunk, refilling it when needed.
  const bytesAt = (at: number, length: number): Uint8Array => {
    if (at < chunkStart || at + length > chunkStart + chunk.length) {
      chunkStart = at;
      chunk = options.read(at, Math.min(size - at, Math.max(chunkBytes, length)));
    }
    return chunk.subarray(at - chunkStart, at - chunkStart + length);
  };

  while (position < size) {
    const problem = recordProblem(bytesAt, position, size, lengthMax);
    if (problem) {
      const verdict = { validEnd: position, records, lastId, reason: problem };
      if (options.sealed) return { kind: "corrupt", ...verdict };
      if (problem !== "zero header" && validRecordAfter(bytesAt, position, size, lengthMax)) {
        return { kind: "corrupt", ...verdict, reason: `${problem}, followed by valid records` };
      }
      return { kind: "tornTail", ...verdict };
    }
    const header = bytesAt(position, RECORD_HEADER_BYTES);
    const view = new DataView(header.buffer, header.byteOffset, RECORD_HEADER_BYTES);
    lastId = view.getBigInt64(8);
    records += 1;
    position += RECORD_HEADER_BYTES + view.getInt32(0);
  }
  return { kind: "clean", validEnd: position, records, lastId };
}

/** Why the record at `position` is invalid, or undefined when it is a valid record. */
function recordProblem(
  bytesAt: (at: number, length: number) => Uint8Array,
  position: number,
  size: number,
  lengthMax: number,
): string | undefined {
  if (size - position < RECORD_HEADER_BYTES) return "partial header";
  const header = bytesAt(position, RECORD_HEADER_BYTES);
  if (header.every((byte) => byte === 0)) return "zero header";
  const view = new DataView(header.buffer, header.byteOffset, RECORD_HEADER_BYTES);
  const length = view.getInt32(0);
  if (length < 0 || length > lengthMax) return `invalid length ${length}`;
  if (position + RECORD_HEADER_BYTES + length > size) return "record runs past the end";
  const checksum = view.getInt32(4);
  const data = bytesAt(position + RECORD_HEADER_BYTES, length);
  if (metaqChecksum(data) !== checksum) return "checksum mismatch";
  return undefined;
}

/**
 * Whether a valid record starts anywhere after `position`. A torn write leaves junk up to the
 * end of the file; valid records after the bad one mean damage in the middle of the data.
 */
function validRecordAfter(
  bytesAt: (at: number, length: number) => Uint8Array,
  position: number,
  size: number,
  lengthMax: number,
): boolean {
  for (let at = position + 1; at + RECORD_HEADER_BYTES <= size; at++) {
    const header = bytesAt(at, RECORD_HEADER_BYTES);
    const view = new DataView(header.buffer, header.byteOffset, RECORD_HEADER_BYTES);
    const length = view.getInt32(0);
    if (length < 0 || length > lengthMax || at + RECORD_HEADER_BYTES + length > size) continue;
    if (view.getBigInt64(8) === 0n) continue;
    if (metaqChecksum(bytesAt(at + RECORD_HEADER_BYTES, length)) === view.getInt32(4)) return true;
  }
  return false;
}

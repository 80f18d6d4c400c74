/**
 * @module A partition log seen as a copy to cross-check (cross_check.ts): CRCs of committed
 * byte ranges, and record boundaries read from the 20-byte headers.
 */
import { crc32Continue } from "../crc32.ts";
import { RECORD_HEADER_BYTES } from "../protocol/record.ts";
import type { PartitionLog } from "../store/partition_log.ts";
import type { LocalCopy, RangeDigest } from "./cross_check.ts";

const CHUNK_BYTES = 1 << 20;

/** `log` up to `end` (its commit offset) as a LocalCopy. */
export function localCopyOf(log: PartitionLog, end: number): LocalCopy {
  const recordStarts = (from: number, limit: number, countMax = Infinity): number[] => {
    const starts = [from];
    let position = from;
    while (position + RECORD_HEADER_BYTES <= limit && starts.length < countMax) {
      const header = log.read(position, RECORD_HEADER_BYTES, limit);
      if (header.length < RECORD_HEADER_BYTES) break;
      const dataLength = new DataView(header.buffer).getInt32(0);
      const next = position + RECORD_HEADER_BYTES + dataLength;
      if (dataLength < 0 || next > limit) break;
      starts.push(next);
      position = next;
    }
    return starts;
  };
  return {
    start: log.startOffset,
    end,
    crc: (from, to) => rangeCrc(log, from, to),
    recordStarts,
    alignedStart(offset) {
      if (offset <= log.startOffset) return log.startOffset;
      if (offset >= end) return end;
      const limit = Math.min(end, offset + RECORD_HEADER_BYTES + log.options.recordDataBytesMax);
      const starts = recordStarts(log.segmentStartFor(offset, end), limit);
      return starts.find((start) => start >= offset) ?? end;
    },
  };
}

/** What this node answers a peer's `cluster digest`: its committed range and a CRC inside it. */
export function digestOf(log: PartitionLog, end: number, from: number, to: number): RangeDigest {
  const range = { start: log.startOffset, end };
  if (from < range.start || to > end || from > to) return range;
  try {
    return { ...range, crc: rangeCrc(log, from, to) };
  } catch {
    return range; // retention removed the segment meanwhile: no CRC to offer
  }
}

function rangeCrc(log: PartitionLog, from: number, to: number): number {
  let crc = 0;
  for (let position = from; position < to;) {
    const bytes = log.read(position, Math.min(CHUNK_BYTES, to - position), to);
    crc = crc32Continue(bytes, crc);
    position += bytes.length;
  }
  return crc;
}

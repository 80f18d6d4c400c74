/**
 * @module Which records of a batch a log does not hold yet, by message id: the test behind
 * `Log.appendMissing`, which completes a committed transaction exactly once. Message ids are
 * unique per broker (and per cluster: a node's id is in every id it makes), so a record whose
 * id is in the log at or after the point where the batch could first have landed is that
 * record, appended before a crash or by an earlier writer.
 */
import { RECORD_DATA_BYTES_MAX, RECORD_HEADER_BYTES } from "../limits.ts";
import { walkRecords } from "../protocol/record.ts";
import type { PartitionLog } from "./partition_log.ts";

/** Scans this much of the log per read. */
const SCAN_CHUNK_BYTES = 1024 * 1024;

/** The message id in the header of the record at `position` of `bytes`. */
export function recordIdAt(bytes: Uint8Array, position: number): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset + position + 8, 8).getBigInt64(0);
}

/** The ids of the records of `batch`, in order. */
export function idsOf(batch: Uint8Array): bigint[] {
  const ids: bigint[] = [];
  walkRecords(batch, RECORD_DATA_BYTES_MAX, (position) => {
    ids.push(recordIdAt(batch, position));
  });
  return ids;
}

/**
 * Where each of `ids` ends in `log` between `from` and its written end (durable or not): the
 * offset after the record, for the ids found.
 */
export function findIds(
  log: PartitionLog,
  from: number,
  ids: ReadonlySet<bigint>,
): Map<bigint, number> {
  const found = new Map<bigint, number>();
  let offset = Math.max(from, log.startOffset);
  const end = log.writtenEnd;
  // Each round takes at least one record or stops, so rounds <= records in [from, end).
  while (offset < end && found.size < ids.size) {
    let chunk = log.read(offset, SCAN_CHUNK_BYTES, end);
    let walk = walkRecords(chunk, RECORD_DATA_BYTES_MAX);
    if (walk.records === 0) {
      // One record longer than a chunk: read it whole.
      const length = RECORD_HEADER_BYTES + new DataView(chunk.buffer, chunk.byteOffset).getInt32(0);
      chunk = log.read(offset, length, end);
      walk = walkRecords(chunk, RECORD_DATA_BYTES_MAX);
      if (walk.records === 0) break; // the log ends inside this record: nothing more is whole
    }
    const base = offset;
    walkRecords(chunk, RECORD_DATA_BYTES_MAX, (position, length) => {
      const id = recordIdAt(chunk, position);
      if (ids.has(id)) found.set(id, base + position + RECORD_HEADER_BYTES + length);
    });
    offset += walk.bytes;
  }
  return found;
}

/** The records of `batch` whose ids are not in `present`, as one batch (may be empty). */
export function withoutIds(
  batch: Uint8Array,
  present: ReadonlySet<bigint>,
): { bytes: Uint8Array; records: number } {
  const kept: Uint8Array[] = [];
  let bytes = 0;
  walkRecords(batch, RECORD_DATA_BYTES_MAX, (position, length) => {
    if (present.has(recordIdAt(batch, position))) return;
    const record = batch.subarray(position, position + RECORD_HEADER_BYTES + length);
    kept.push(record);
    bytes += record.length;
  });
  if (bytes === batch.length) return { bytes: batch, records: kept.length };
  const out = new Uint8Array(bytes);
  let at = 0;
  for (const record of kept) {
    out.set(record, at);
    at += record.length;
  }
  return { bytes: out, records: kept.length };
}

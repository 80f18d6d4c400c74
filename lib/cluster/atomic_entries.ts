/**
 * @module Atomic entries on a replica's disk. A transaction's batch for one partition is one
 * Raft entry of several records, and no copy may keep only part of it: the segment log keeps
 * no entry boundaries, so a power cut during its write can leave a prefix of whole records
 * that recovery takes for a shorter log. A copy that then led with it would commit the part,
 * and the coordinator's completion would append the rest behind other puts (T05 found a
 * transaction split by two plain puts that way).
 *
 * So a copy notes an atomic entry's byte range durably (`atomic-entries`, state_files.ts)
 * before it writes the bytes, and at start cuts a log that ends inside a noted range back to
 * the range's start. Those bytes were never acknowledged by this copy (it acknowledges only
 * what an fsync covered, and an fsync covers the whole entry), so the cut is what losing them
 * to the power cut would have been. Noting before writing costs one small fsync per atomic
 * entry and copy; plain puts never pay it.
 */
import type { Logger } from "../log.ts";
import type { PartitionLog } from "../store/partition_log.ts";
import { joinPath, type Storage } from "../store/storage.ts";
import {
  ATOMIC_ENTRIES_FILE,
  type ByteRange,
  encodeAtomicEntries,
  readAtomicEntries,
  StateFileError,
  writeAtomicEntries,
} from "./state_files.ts";

/** The start of the noted range a log ending at `end` stops inside, if any (the cut). */
export function partialEntryStart(
  ranges: readonly ByteRange[],
  startOffset: number,
  end: number,
): number | undefined {
  const inside = ranges.find((range) =>
    range.start >= startOffset && range.start < end && end < range.end
  );
  return inside?.start;
}

/**
 * The ranges that still describe bytes of a log holding [startOffset, end): the others were
 * cut, reset or retained away, and must go before new bytes land where they were.
 */
export function rangesWithin(
  ranges: readonly ByteRange[],
  startOffset: number,
  end: number,
): ByteRange[] {
  return ranges.filter((range) => range.start >= startOffset && range.end <= end);
}

/**
 * Before a replica opens on `log`: cuts a part of an atomic entry a crash left at its end, and
 * drops the notes of ranges the log no longer holds. Returns the notes kept. A note file that
 * cannot be read is reported and replaced: without it, a part entry cannot be told from a
 * whole one, which is what happened before these notes existed.
 */
export async function settleAtomicEntries(
  storage: Storage,
  log: PartitionLog,
  logger: Logger,
): Promise<ByteRange[]> {
  const dir = log.options.dir;
  const fileBytes = storage.stat(joinPath(dir, ATOMIC_ENTRIES_FILE))?.size;
  if (fileBytes === undefined) return []; // most partitions never held an atomic entry
  let noted: ByteRange[];
  let unreadable = false;
  try {
    noted = readAtomicEntries(storage, dir);
  } catch (error) {
    if (!(error instanceof StateFileError)) throw error;
    logger.log("error", "Cannot read the atomic entries of a replica: starting without them", {
      group: log.name,
      file: ATOMIC_ENTRIES_FILE,
      reason: error.message,
    });
    noted = [];
    unreadable = true;
  }
  const cut = partialEntryStart(noted, log.startOffset, log.writtenEnd);
  if (cut !== undefined) {
    logger.log("warn", "Cut the part of an atomic entry a crash left", {
      group: log.name,
      offset: cut,
      bytesCut: log.writtenEnd - cut,
    });
    await log.truncate(cut);
  }
  const kept = rangesWithin(noted, log.startOffset, log.writtenEnd);
  // A torn last note (its fsync never finished) must go before anything is appended after it.
  const torn = fileBytes !== encodeAtomicEntries(noted).length;
  if (kept.length !== noted.length || cut !== undefined || unreadable || torn) {
    await writeAtomicEntries(storage, dir, kept);
  }
  return kept;
}

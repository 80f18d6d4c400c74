/**
 * @module OffsetStore: where a consumer group's committed offsets live, as one interface with two
 * implementations: in memory (offset_store_memory.ts) and in an append-only file
 * (offset_store_file.ts), used by the broker for groups and by clients for broadcast consumers.
 * The contract, tested once against each implementation:
 *
 * - `commit` is all or nothing and durable when it resolves; it refuses (BrokerError
 *   `offsetBackwards`) any entry below the stored offset, and then writes nothing;
 * - `reset` is the only way back: an explicit, durable overwrite;
 * - `get` and `entries` answer from memory, without I/O.
 */
import { BrokerError } from "../../errors.ts";

export interface OffsetKey {
  readonly group: string;
  readonly topic: string;
  readonly partition: number;
}

export interface OffsetEntry extends OffsetKey {
  /** Byte offset of the next record to consume, as MetaQ's consumer stores it. */
  readonly offset: number;
}

export interface OffsetStore {
  /** The committed offset of `key`, or undefined when none was committed. */
  get(key: OffsetKey): number | undefined;
  /** Every committed offset, sorted by group, topic and partition. */
  entries(): OffsetEntry[];
  /** Records `entries` durably; refuses the whole batch if one would move backwards. */
  commit(entries: readonly OffsetEntry[]): Promise<void>;
  /** Overwrites `entries` durably, backwards too (an operator's explicit reset). */
  reset(entries: readonly OffsetEntry[]): Promise<void>;
  close(): Promise<void>;
}

/** A map key for (group, topic, partition); NUL cannot occur in valid names. */
export function offsetKeyText(key: OffsetKey): string {
  return `${key.group}\u0000${key.topic}\u0000${key.partition}`;
}

/** Throws `offsetBackwards` if any entry is below what `current` holds for its key. */
export function checkForward(
  entries: readonly OffsetEntry[],
  current: (key: OffsetKey) => number | undefined,
): void {
  for (const entry of entries) {
    const stored = current(entry);
    if (stored !== undefined && entry.offset < stored) {
      throw new BrokerError(
        "offsetBackwards",
        `${entry.group} ${entry.topic}-${entry.partition} is at ${stored}, not ${entry.offset}`,
      );
    }
  }
}

/** Throws `invalidOffset` unless every entry has a non-negative safe integer offset. */
export function checkEntries(entries: readonly OffsetEntry[]): void {
  for (const entry of entries) {
    if (!Number.isSafeInteger(entry.offset) || entry.offset < 0) {
      throw new BrokerError("invalidOffset", `${entry.offset} is not a byte offset`);
    }
    if (!Number.isInteger(entry.partition) || entry.partition < 0) {
      throw new BrokerError("invalidOffset", `partition ${entry.partition} is not valid`);
    }
  }
}

export function compareEntries(a: OffsetKey, b: OffsetKey): number {
  if (a.group !== b.group) return a.group < b.group ? -1 : 1;
  if (a.topic !== b.topic) return a.topic < b.topic ? -1 : 1;
  return a.partition - b.partition;
}

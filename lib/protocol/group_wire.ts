/**
 * @module The consumer-group vocabulary the broker and the client share: strategy names, the
 * replies of the group extension commands (docs/protocol.md, "Consumer groups"), the `describe`
 * and `adjust` reports, and committed offsets with the OffsetStore contract. Types and pure
 * checks only: the broker's coordinator decides what the values are, the client's GroupClient
 * parses them off the wire, and neither knows the other.
 *
 * The OffsetStore contract, tested once against each implementation:
 *
 * - `commit` is all or nothing and durable when it resolves; it refuses (BrokerError
 *   `offsetBackwards`) any entry below the stored offset, and then writes nothing;
 * - `reset` is the only way back: an explicit, durable overwrite;
 * - `get` and `entries` answer from memory, without I/O.
 */
import { BrokerError } from "../errors.ts";

/** MetaQ's balancing strategies (lib/broker/groups/balance.ts implements them). */
export const STRATEGIES = ["DEFAULT", "CONSIST"] as const;
export type Strategy = typeof STRATEGIES[number];

/** `join` answers the generation the member joined and the session timeout it must beat. */
export interface JoinReply {
  readonly generation: number;
  readonly sessionTimeoutMs: number;
}

export interface HeartbeatReply {
  readonly generation: number;
  /** Partitions targeted at this member that their previous owner has not released yet. */
  readonly pending: number;
}

export interface AssignedPartition {
  readonly topic: string;
  readonly partition: number;
  /** Generation in which this member was handed the partition. */
  readonly grantedAt: number;
  /** Committed offset, or undefined when the group has none for the partition. */
  readonly offset?: number;
}

/** `assignment`: the partitions a member owns and is the target of, in `generation`. */
export interface Assignment {
  readonly generation: number;
  readonly partitions: readonly AssignedPartition[];
  readonly pending: number;
}

/** Where `adjust` moves a group's offsets: the log start, the log end, or a byte offset. */
export type ResetTarget = "earliest" | "latest" | number;

export interface PartitionReport {
  readonly topic: string;
  readonly partition: number;
  readonly owner: string | null;
  readonly committed: number | null;
  readonly end: number;
  /** Bytes between the committed offset (or the log start) and the end. */
  readonly lag: number;
}

/** One group as `describe` reports it. */
export interface GroupReport {
  readonly group: string;
  readonly generation: number;
  readonly strategy: Strategy | null;
  readonly members: readonly {
    id: string;
    topics: readonly string[];
    idleMs: number;
    partitions: readonly string[];
  }[];
  readonly partitions: readonly PartitionReport[];
}

export interface OffsetKey {
  readonly group: string;
  readonly topic: string;
  readonly partition: number;
}

export interface OffsetEntry extends OffsetKey {
  /** Byte offset of the next record to consume, as MetaQ's consumer stores it. */
  readonly offset: number;
}

/** Where committed offsets live; the contract is at the top of this file. */
export interface OffsetStore {
  /** The committed offset of `key`, or undefined when none was committed. */
  get(key: OffsetKey): number | undefined;
  /** Every committed offset, sorted by group, topic and partition. */
  entries(): OffsetEntry[];
  /** Records `entries` durably; refuses the whole batch if one would move backwards. */
  commit(entries: readonly OffsetEntry[]): Promise<void>;
  /** Overwrites `entries` durably, backwards too (an operator's explicit reset). */
  reset(entries: readonly OffsetEntry[]): Promise<void>;
  /** Removes these offsets durably (a deleted group); stores that cannot, leave it out. */
  remove?(keys: readonly OffsetKey[]): Promise<void>;
  /**
   * Resolves once this store is known to be the one that writes (a barrier through its log), so
   * that `get` after it sees every commit acknowledged before the call, wherever it was
   * acknowledged; rejects when another node writes now. Stores with one writer leave it out.
   */
  confirm?(): Promise<void>;
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

/** Orders offset keys by group, topic and partition (the order `entries()` returns). */
export function compareEntries(a: OffsetKey, b: OffsetKey): number {
  if (a.group !== b.group) return a.group < b.group ? -1 : 1;
  if (a.topic !== b.topic) return a.topic < b.topic ? -1 : 1;
  return a.partition - b.partition;
}

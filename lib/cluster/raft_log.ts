/**
 * @module The Raft log as the consensus core sees it: a byte log plus a leader-epoch list.
 * Positions, the pure epoch-list rules (which positions a log holds, where two logs part), the
 * read-only view a driver gives the core, and MemoryRaftLog, the in-memory twin used by unit
 * tests and the simulator. Never parses record bytes: entries are opaque, whole byte ranges.
 *
 * The model. A log is a sequence of items. An **entry** is a non-empty byte range produced by
 * one append; its bytes sit at [offset, offset + length). A **marker** is a zero-byte item that
 * says "epoch e starts here"; the leader of epoch e writes it at its log end when elected. The
 * epoch list is the markers: `(epoch, startOffset)` pairs, epochs strictly ascending, starts
 * never descending (several markers may share an offset when elections wrote no data between).
 * Its first pair is the **base**: the position the log starts at, whose history is gone
 * (a fresh log's base is `(0, origin)`; after retention or a reset it is the first kept point).
 *
 * A **position** `(offset, epoch)` is a point between items: `offset` bytes lie before it and
 * `epoch` is the last marker before it. Within one log positions are ordered by offset, then
 * epoch, which is the order of the items. Two logs that hold the same position hold the same
 * prefix up to it (Raft's log matching, with epoch for term and byte offset for index): only
 * the leader of epoch e writes items of epoch e, and it only ever appends.
 *
 * Drivers keep the bytes in MetaQ segment files and the epoch list in a small checkpoint file.
 */
import { assert } from "../assert.ts";

/** A point between two items of a log: `offset` bytes before it, `epoch` the last marker. */
export interface Position {
  readonly offset: number;
  readonly epoch: number;
}

/**
 * One pair of the leader-epoch list: epoch `epoch` starts at byte `startOffset`. `voters`, the
 * group's voters from this epoch on, is written by every leader in its marker; absent in logs
 * written before membership changes existed (then the voters are the configured ones).
 */
export interface EpochStart {
  readonly epoch: number;
  readonly startOffset: number;
  readonly voters?: readonly number[];
}

/**
 * An entry (opaque whole bytes of one append) or an epoch marker. An `atomic` entry (a
 * transaction's batch for one partition) must never be kept in part: the driver notes it
 * durably before writing it and cuts a part of it that a crash left (replication.md, "Atomic
 * entries"); the core only carries the flag from the proposer to every copy.
 */
export type LogItem =
  | {
    readonly kind: "entry";
    readonly offset: number;
    readonly epoch: number;
    readonly bytes: Uint8Array;
    readonly atomic?: boolean;
  }
  | {
    readonly kind: "marker";
    readonly offset: number;
    readonly epoch: number;
    readonly voters?: readonly number[];
  };

/**
 * The voters in force after the epoch list: those of the last marker that names them. A group's
 * configuration changes only at a marker, so it follows the log: a truncation that drops a
 * marker drops its configuration with it (the Raft dissertation's "latest in the log" rule).
 */
export function votersOf(epochs: readonly EpochStart[]): readonly number[] | undefined {
  for (let index = epochs.length - 1; index >= 0; index--) {
    if (epochs[index].voters) return epochs[index].voters;
  }
  return undefined;
}

/** The outline of a log: enough to say which positions it holds. */
export interface LogShape {
  /** Offset of the base (first retained byte). */
  readonly startOffset: number;
  /** Offset after the last byte. */
  readonly endOffset: number;
  /** The epoch list, base first; never empty. */
  readonly epochs: readonly EpochStart[];
}

/**
 * What the core may read from the driver's log. The shape fields are read once, when the core
 * starts; `read` is called while it runs, only for data the driver has reported durable.
 */
export interface RaftLogView extends LogShape {
  /**
   * Whole entries starting exactly at `offset` (an entry boundary), in order, totalling at most
   * `bytesMax` bytes, but at least one entry when `offset` is below the end.
   */
  read(offset: number, bytesMax: number): readonly Uint8Array[];
  /**
   * Whether the durable entry `read` returns at `offset` is atomic (sent with the flag, so the
   * follower keeps it whole too). Absent: none is.
   */
  atomicAt?(offset: number): boolean;
}

/** Orders two positions of the same log: by offset, then by epoch. */
export function comparePositions(a: Position, b: Position): number {
  if (a.offset !== b.offset) return a.offset < b.offset ? -1 : 1;
  if (a.epoch !== b.epoch) return a.epoch < b.epoch ? -1 : 1;
  return 0;
}

export function samePosition(a: Position, b: Position): boolean {
  return a.offset === b.offset && a.epoch === b.epoch;
}

export function minPosition(a: Position, b: Position): Position {
  return comparePositions(a, b) <= 0 ? a : b;
}

export function maxPosition(a: Position, b: Position): Position {
  return comparePositions(a, b) >= 0 ? a : b;
}

/**
 * Orders two logs by how up to date they are, as the vote check needs: last epoch first, then
 * end offset. Both arguments are last positions `(endOffset, lastEpoch)`.
 */
export function compareRecency(a: Position, b: Position): number {
  if (a.epoch !== b.epoch) return a.epoch < b.epoch ? -1 : 1;
  if (a.offset !== b.offset) return a.offset < b.offset ? -1 : 1;
  return 0;
}

/** The position after an item. */
export function itemEnd(item: LogItem): Position {
  return item.kind === "entry"
    ? { offset: item.offset + item.bytes.length, epoch: item.epoch }
    : { offset: item.offset, epoch: item.epoch };
}

/** The epoch-list pair a marker item adds. */
export function epochStartOf(
  marker: { readonly offset: number; readonly epoch: number; readonly voters?: readonly number[] },
): EpochStart {
  return {
    epoch: marker.epoch,
    startOffset: marker.offset,
    ...(marker.voters ? { voters: marker.voters } : {}),
  };
}

/** The base: where the log starts. */
export function basePosition(shape: LogShape): Position {
  const base = shape.epochs[0];
  return { offset: base.startOffset, epoch: base.epoch };
}

/** The end: after the last item. */
export function lastPosition(shape: LogShape): Position {
  return { offset: shape.endOffset, epoch: shape.epochs[shape.epochs.length - 1].epoch };
}

/** Index of `epoch` in an epoch list, or -1. */
export function epochIndex(epochs: readonly EpochStart[], epoch: number): number {
  let low = 0;
  let high = epochs.length - 1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    const found = epochs[middle].epoch;
    if (found === epoch) return middle;
    if (found < epoch) low = middle + 1;
    else high = middle - 1;
  }
  return -1;
}

/** Where the run of the epoch at `index` ends: the next marker, or the log end. */
export function runEnd(epochs: readonly EpochStart[], index: number, endOffset: number): number {
  return index + 1 < epochs.length ? epochs[index + 1].startOffset : endOffset;
}

/**
 * The epoch of the last marker at or below `offset`: the epoch of the position reached by
 * reading every item up to `offset`, markers at `offset` included.
 */
export function epochThrough(epochs: readonly EpochStart[], offset: number): number {
  let low = 0;
  let high = epochs.length - 1;
  assert(high >= 0 && epochs[0].startOffset <= offset, `offset ${offset} is below the base`);
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    if (epochs[middle].startOffset <= offset) low = middle;
    else high = middle - 1;
  }
  return epochs[low].epoch;
}

/**
 * Whether the log holds `position`: its offset is inside the log and inside the run of its
 * epoch. Callers pass item boundaries only (positions come from items or from other logs).
 */
export function holdsPosition(shape: LogShape, position: Position): boolean {
  if (position.offset < shape.startOffset || position.offset > shape.endOffset) return false;
  const index = epochIndex(shape.epochs, position.epoch);
  if (index < 0) return false;
  const start = Math.max(shape.epochs[index].startOffset, shape.startOffset);
  return position.offset >= start &&
    position.offset <= runEnd(shape.epochs, index, shape.endOffset);
}

/**
 * The last position two logs share, found from their epoch lists alone: the largest epoch both
 * hold, cut at the shorter of their two runs of it (both runs are prefixes of what that epoch's
 * leader wrote, so they agree on their overlap). Undefined when no epoch is common: the logs
 * share nothing the caller can still read. `other` may be a tail of a log's list (a reject hint);
 * its `endOffset` must be the end of its last listed run.
 */
export function commonPosition(
  mine: LogShape,
  other: { readonly epochs: readonly EpochStart[]; readonly endOffset: number },
): Position | undefined {
  let i = mine.epochs.length - 1;
  let j = other.epochs.length - 1;
  // Each step drops the larger of the two epochs, so the loop ends within len + len steps.
  while (i >= 0 && j >= 0) {
    const mineEpoch = mine.epochs[i].epoch;
    const otherEpoch = other.epochs[j].epoch;
    if (mineEpoch === otherEpoch) {
      const offset = Math.min(
        runEnd(mine.epochs, i, mine.endOffset),
        runEnd(other.epochs, j, other.endOffset),
      );
      return { offset, epoch: mineEpoch };
    }
    if (mineEpoch > otherEpoch) i--;
    else j--;
  }
  return undefined;
}

/** Checks the invariants of a log outline; a violation is a bug in the driver or the core. */
export function assertShape(shape: LogShape): void {
  const { epochs } = shape;
  assert(epochs.length > 0, "epoch list has no base");
  assert(epochs[0].startOffset === shape.startOffset, "epoch base is not at the log start");
  assert(shape.startOffset <= shape.endOffset, "log start is past its end");
  for (let index = 1; index < epochs.length; index++) {
    assert(epochs[index].epoch > epochs[index - 1].epoch, "epochs are not ascending");
    assert(epochs[index].startOffset >= epochs[index - 1].startOffset, "epoch starts descend");
  }
  assert(epochs[epochs.length - 1].startOffset <= shape.endOffset, "epoch starts past the end");
}

/** Drops the markers that come after `position` (the truncation rule for the epoch list). */
export function epochsThrough(
  epochs: readonly EpochStart[],
  position: Position,
): EpochStart[] {
  return epochs.filter((pair) =>
    pair.startOffset < position.offset ||
    (pair.startOffset === position.offset && pair.epoch <= position.epoch)
  );
}

/** The epoch list of a log whose history before `base` is dropped (retention or reset). */
export function epochsFrom(epochs: readonly EpochStart[], base: Position): EpochStart[] {
  const later = epochs.filter((pair) =>
    pair.startOffset > base.offset ||
    (pair.startOffset === base.offset && pair.epoch > base.epoch)
  );
  // The new base keeps the configuration in force there.
  const voters = votersOf(epochsThrough(epochs, base));
  return [{ epoch: base.epoch, startOffset: base.offset, ...(voters ? { voters } : {}) }, ...later];
}

/**
 * An in-memory log: entries in an array, the epoch list beside them. Used by unit tests and
 * the simulator as the driver's log; a real driver keeps segment files instead.
 */
export class MemoryRaftLog implements RaftLogView {
  #entries: { offset: number; bytes: Uint8Array }[] = [];
  #epochs: EpochStart[];
  #startOffset: number;
  #endOffset: number;

  constructor(base: Position = { offset: 0, epoch: 0 }) {
    this.#epochs = [{ epoch: base.epoch, startOffset: base.offset }];
    this.#startOffset = base.offset;
    this.#endOffset = base.offset;
  }

  get startOffset(): number {
    return this.#startOffset;
  }

  get endOffset(): number {
    return this.#endOffset;
  }

  get epochs(): readonly EpochStart[] {
    return this.#epochs;
  }

  /** Entries in order, for tests and checkers. */
  get entries(): readonly { readonly offset: number; readonly bytes: Uint8Array }[] {
    return this.#entries;
  }

  read(offset: number, bytesMax: number): readonly Uint8Array[] {
    assert(offset >= this.#startOffset && offset < this.#endOffset, `read at ${offset}`);
    let index = this.#entryIndex(offset);
    assert(index >= 0, `read at ${offset} is not at an entry boundary`);
    const out: Uint8Array[] = [];
    let bytes = 0;
    for (; index < this.#entries.length; index++) {
      const entry = this.#entries[index];
      if (out.length > 0 && bytes + entry.bytes.length > bytesMax) break;
      out.push(entry.bytes);
      bytes += entry.bytes.length;
    }
    return out;
  }

  /** Appends one item at the end. */
  append(item: LogItem): void {
    assert(item.offset === this.#endOffset, `append at ${item.offset}, end is ${this.#endOffset}`);
    const last = this.#epochs[this.#epochs.length - 1];
    if (item.kind === "marker") {
      assert(item.epoch > last.epoch, `marker ${item.epoch} after epoch ${last.epoch}`);
      this.#epochs.push(epochStartOf(item));
      return;
    }
    assert(item.bytes.length > 0, "empty entry");
    assert(item.epoch === last.epoch, `entry of epoch ${item.epoch} in run ${last.epoch}`);
    this.#entries.push({ offset: item.offset, bytes: item.bytes });
    this.#endOffset += item.bytes.length;
  }

  /** Removes every item after `position`, which the log must hold at an entry boundary. */
  truncate(position: Position): void {
    assert(holdsPosition(this, position), `truncate to ${position.offset}@${position.epoch}`);
    const index = this.#entryIndex(position.offset);
    assert(index >= 0 || position.offset === this.#endOffset, "truncate inside an entry");
    if (index >= 0) this.#entries.length = index;
    this.#epochs = epochsThrough(this.#epochs, position);
    this.#endOffset = position.offset;
  }

  /** Drops everything and starts empty at `base` (a follower behind the leader's log start). */
  reset(base: Position, voters?: readonly number[]): void {
    this.#entries = [];
    this.#epochs = [{ epoch: base.epoch, startOffset: base.offset, ...(voters ? { voters } : {}) }];
    this.#startOffset = base.offset;
    this.#endOffset = base.offset;
  }

  /** Drops the prefix before `base`, a held entry boundary (retention). */
  compact(base: Position): void {
    assert(holdsPosition(this, base), `compact to ${base.offset}@${base.epoch}`);
    const index = this.#entryIndex(base.offset);
    assert(index >= 0 || base.offset === this.#endOffset, "compact inside an entry");
    this.#entries = index >= 0 ? this.#entries.slice(index) : [];
    this.#epochs = epochsFrom(this.#epochs, base);
    this.#startOffset = base.offset;
  }

  /** Index of the entry starting at `offset`, or -1. */
  #entryIndex(offset: number): number {
    let low = 0;
    let high = this.#entries.length - 1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      const found = this.#entries[middle].offset;
      if (found === offset) return middle;
      if (found < offset) low = middle + 1;
      else high = middle - 1;
    }
    return -1;
  }
}

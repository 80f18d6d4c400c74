/**
 * @module UnstableLog: the Raft core's own account of its log (etcd's raftLog plus unstable).
 * Everything up to `durable` is in the driver's log and readable through its RaftLogView; the
 * items appended since stay here until persisted() reports them durable, so a leader can send
 * them before its own fsync finishes. It also remembers which of those items a Ready already
 * handed to the driver, and a cut (truncate or reset) the driver has yet to apply.
 *
 * Knows positions and epochs only. Terms, roles and the commit rules (never cut below the
 * commit, a leader never cuts) are the core's to assert before it calls in here.
 */
import { assert } from "../assert.ts";
import { ENTRIES_PER_APPEND_MAX, MARKERS_PER_APPEND_MAX } from "./messages.ts";
import {
  assertShape,
  basePosition,
  comparePositions,
  epochIndex,
  epochsFrom,
  type EpochStart,
  epochStartOf,
  epochsThrough,
  holdsPosition,
  itemEnd,
  lastPosition,
  type LogItem,
  type LogShape,
  minPosition,
  type Position,
  type RaftLogView,
  samePosition,
} from "./raft_log.ts";

/** What the driver must do to its log, taken for one Ready. */
export interface LogOutput {
  readonly cut?: {
    readonly kind: "truncate" | "reset";
    readonly position: Position;
    /** For a reset: the voters in force at its position (the new base). */
    readonly voters?: readonly number[];
  };
  readonly appends: readonly LogItem[];
  readonly appendsEnd?: Position;
}

/** Items after a position, as an append message carries them. */
export interface ItemsAfter {
  readonly entries: Uint8Array[];
  /** Indexes (ascending) of the atomic entries among `entries`. */
  readonly atomicEntries: number[];
  readonly markers: EpochStart[];
  /** The position after the last item (the prev position itself when there are none). */
  readonly end: Position;
}

export class UnstableLog implements LogShape {
  readonly #view: RaftLogView;
  #startOffset: number;
  #endOffset: number;
  /** The full epoch list, base first, including markers not yet durable. */
  #epochs: EpochStart[];
  /** Items after `#durable`, in order. Invariant: they start at `#durable`. */
  #unstable: LogItem[] = [];
  /** The first `#handedCount` unstable items were given to the driver in a Ready. */
  #handedCount = 0;
  #durable: Position;
  #cut: { kind: "truncate" | "reset"; position: Position; voters?: readonly number[] } | undefined;

  /** Starts from what the driver's log holds, all of it durable. */
  constructor(view: RaftLogView) {
    assertShape(view);
    this.#view = view;
    this.#startOffset = view.startOffset;
    this.#endOffset = view.endOffset;
    this.#epochs = [...view.epochs];
    this.#durable = lastPosition(view);
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

  /** Everything up to here is durable in the driver's log. */
  get durable(): Position {
    return this.#durable;
  }

  get last(): Position {
    return lastPosition(this);
  }

  get base(): Position {
    return basePosition(this);
  }

  /** Whether the driver has log work waiting: a cut or items not yet handed over. */
  get hasOutput(): boolean {
    return this.#cut !== undefined || this.#handedCount < this.#unstable.length;
  }

  /** Whether a cut is waiting for the driver (retention must wait for it). */
  get cutPending(): boolean {
    return this.#cut !== undefined;
  }

  holds(position: Position): boolean {
    return holdsPosition(this, position);
  }

  append(item: LogItem): void {
    assert(item.offset === this.#endOffset, `append at ${item.offset}, end ${this.#endOffset}`);
    const lastEpoch = this.#epochs[this.#epochs.length - 1].epoch;
    if (item.kind === "marker") {
      assert(item.epoch > lastEpoch, `marker ${item.epoch} after epoch ${lastEpoch}`);
      this.#epochs.push(epochStartOf(item));
    } else {
      assert(item.epoch === lastEpoch, `entry of epoch ${item.epoch} in run ${lastEpoch}`);
      assert(item.bytes.length > 0, "empty entry");
      this.#endOffset += item.bytes.length;
    }
    this.#unstable.push(item);
  }

  /** Removes every item after `position`; tells the driver to do the same if it has them. */
  truncate(position: Position): void {
    assert(this.holds(position), "truncate to a position the log does not hold");
    const handedEnd = this.#handedEnd();
    let keep = 0;
    while (
      keep < this.#unstable.length && comparePositions(itemEnd(this.#unstable[keep]), position) <= 0
    ) keep++;
    this.#unstable.length = keep;
    this.#handedCount = Math.min(this.#handedCount, keep);
    this.#epochs = epochsThrough(this.#epochs, position);
    this.#endOffset = position.offset;
    this.#durable = minPosition(this.#durable, position);
    if (comparePositions(position, handedEnd) >= 0) return;
    // The driver has (or is about to have) items past `position`: it must cut them too.
    const pending = this.#cut;
    if (pending?.kind === "reset") {
      // Everything after a pending reset is still unhanded, so the cut above covered it.
      assert(comparePositions(position, pending.position) >= 0, "truncate below a reset");
    } else {
      const to = pending ? minPosition(pending.position, position) : position;
      this.#cut = { kind: "truncate", position: to };
    }
  }

  /** Drops everything and starts empty at `base`, where `voters` are in force. */
  reset(base: Position, voters?: readonly number[]): void {
    this.#unstable = [];
    this.#handedCount = 0;
    this.#epochs = [{ epoch: base.epoch, startOffset: base.offset, ...(voters ? { voters } : {}) }];
    this.#startOffset = base.offset;
    this.#endOffset = base.offset;
    this.#durable = base;
    this.#cut = { kind: "reset", position: base, ...(voters ? { voters } : {}) };
  }

  /** Forgets the prefix before `base` (the driver deletes it; retention). */
  compact(base: Position): void {
    assert(this.holds(base) && !this.#cut, "compact to a position the log does not hold");
    assert(comparePositions(base, this.#durable) <= 0, "compact beyond the durable log");
    this.#epochs = epochsFrom(this.#epochs, base);
    this.#startOffset = base.offset;
  }

  /**
   * The driver made everything up to `upTo` durable. Returns false for a report that says
   * nothing new: stale (cut off since, so no longer held) or already known.
   */
  persisted(upTo: Position): boolean {
    if (!this.holds(upTo) || comparePositions(upTo, this.#durable) <= 0) return false;
    assert(comparePositions(upTo, this.#handedEnd()) <= 0, "persisted beyond what was handed");
    let count = 0;
    while (comparePositions(itemEnd(this.#unstable[count]), upTo) < 0) count++;
    assert(samePosition(itemEnd(this.#unstable[count]), upTo), "persisted inside an item");
    this.#unstable.splice(0, count + 1);
    this.#handedCount -= count + 1;
    this.#durable = upTo;
    return true;
  }

  /** Takes the cut and the items the driver has not been given yet. */
  take(): LogOutput {
    const appends = this.#unstable.slice(this.#handedCount);
    this.#handedCount = this.#unstable.length;
    const cut = this.#cut;
    this.#cut = undefined;
    return {
      ...(cut ? { cut } : {}),
      appends,
      ...(appends.length > 0 ? { appendsEnd: itemEnd(appends[appends.length - 1]) } : {}),
    };
  }

  /** Whole entries after `prev` up to `bytesMax` (at least one), and the markers among them. */
  itemsAfter(prev: Position, bytesMax: number): ItemsAfter {
    assert(this.holds(prev), "items after a position the log does not hold");
    const read = this.#readEntries(prev.offset, bytesMax);
    let entries = read.entries;
    let atomicEntries = read.atomicEntries;
    let endOffset = prev.offset + byteLength(entries);
    const markers: EpochStart[] = [];
    const first = epochIndex(this.#epochs, prev.epoch) + 1;
    for (let index = first; index < this.#epochs.length; index++) {
      if (this.#epochs[index].startOffset > endOffset) break;
      markers.push(this.#epochs[index]);
    }
    if (markers.length > MARKERS_PER_APPEND_MAX) {
      // Many elections with no data between them: stop after the last marker that fits.
      markers.length = MARKERS_PER_APPEND_MAX;
      endOffset = markers[markers.length - 1].startOffset;
      entries = takeBytes(entries, endOffset - prev.offset);
      atomicEntries = atomicEntries.filter((index) => index < entries.length);
    }
    const epoch = markers.length > 0 ? markers[markers.length - 1].epoch : prev.epoch;
    return { entries, atomicEntries, markers, end: { offset: endOffset, epoch } };
  }

  /** Where the driver's log ends once it has applied every Ready taken so far. */
  #handedEnd(): Position {
    return this.#handedCount > 0 ? itemEnd(this.#unstable[this.#handedCount - 1]) : this.#durable;
  }

  /** Entries from `fromOffset`: durable ones from the driver's log, newer ones from memory. */
  #readEntries(
    fromOffset: number,
    bytesMax: number,
  ): Pick<ItemsAfter, "entries" | "atomicEntries"> {
    const out: Uint8Array[] = [];
    const atomicEntries: number[] = [];
    let offset = fromOffset;
    let bytes = 0;
    const fits = (length: number) =>
      out.length === 0 || (bytes + length <= bytesMax && out.length < ENTRIES_PER_APPEND_MAX);
    if (offset < this.#durable.offset) {
      for (const entry of this.#view.read(offset, bytesMax)) {
        if (offset >= this.#durable.offset || !fits(entry.length)) break;
        if (this.#view.atomicAt?.(offset)) atomicEntries.push(out.length);
        out.push(entry);
        offset += entry.length;
        bytes += entry.length;
      }
      if (offset < this.#durable.offset) return { entries: out, atomicEntries };
    }
    for (const item of this.#unstable) {
      if (item.kind !== "entry" || item.offset < offset) continue;
      assert(item.offset === offset, "unstable entries are not contiguous");
      if (!fits(item.bytes.length)) break;
      if (item.atomic) atomicEntries.push(out.length);
      out.push(item.bytes);
      offset += item.bytes.length;
      bytes += item.bytes.length;
    }
    return { entries: out, atomicEntries };
  }
}

function byteLength(entries: readonly Uint8Array[]): number {
  let bytes = 0;
  for (const entry of entries) bytes += entry.length;
  return bytes;
}

/** The leading entries that end within `bytes`. */
function takeBytes(entries: Uint8Array[], bytes: number): Uint8Array[] {
  let total = 0;
  let count = 0;
  while (count < entries.length && total + entries[count].length <= bytes) {
    total += entries[count].length;
    count++;
  }
  assert(total === bytes, "marker inside an entry");
  return entries.slice(0, count);
}

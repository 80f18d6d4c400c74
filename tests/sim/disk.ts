/**
 * @module The simulated disk of one node for one Raft group: the log as written (a MemoryRaftLog
 * the core reads), how much of it is durable, the durable hard state, and what a crash leaves.
 * Every item carries a prefix hash (of the whole log up to its end) so the checker can compare
 * logs position by position without comparing bytes.
 */
import type { HardState } from "../../lib/cluster/messages.ts";
import {
  comparePositions,
  holdsPosition,
  itemEnd,
  type LogItem,
  MemoryRaftLog,
  type Position,
} from "../../lib/cluster/raft_log.ts";
import type { Prng } from "../../lib/prng.ts";

export const positionKey = (position: Position): string => `${position.offset}:${position.epoch}`;

/** 53-bit chained hash of one more item after a prefix whose hash is `previous`. */
export function chainHash(previous: number, item: LogItem): number {
  let a = (previous % 0x1_0000_0000) ^ 0x811c9dc5;
  let b = Math.floor(previous / 0x1_0000_0000) ^ 0x01000193;
  const mix = (value: number) => {
    a = Math.imul(a ^ value, 0x01000193);
    b = Math.imul(b ^ value, 0x5bd1e995) ^ (b >>> 13);
  };
  mix(item.kind === "entry" ? 1 : 2);
  mix(item.epoch);
  mix(item.offset);
  if (item.kind === "entry") { for (const byte of item.bytes) mix(byte); }
  return (a >>> 0) * 0x20_0000 + ((b >>> 0) >>> 11);
}

interface StoredItem {
  readonly item: LogItem;
  readonly end: Position;
  readonly hash: number;
}

export class SimDisk {
  log: MemoryRaftLog;
  /** Items after the base, in order. */
  items: StoredItem[] = [];
  base: Position;
  baseHash: number;
  /** The first `durableCount` items are on stable storage. */
  durableCount = 0;
  hardState: HardState | undefined = { term: 0, votedFor: 0 };
  /** Set by a bit-flip fault: the index of the first damaged item, found at the next start. */
  damagedIndex: number | undefined;
  hardStateLost = false;
  /** Bumped by truncations and resets: fsyncs started before one no longer say anything. */
  generation = 0;
  #index = new Map<string, number>();

  constructor() {
    this.base = { offset: 0, epoch: 0 };
    this.baseHash = 0;
    this.log = new MemoryRaftLog(this.base);
  }

  get durableEnd(): Position {
    return this.durableCount > 0 ? this.items[this.durableCount - 1].end : this.base;
  }

  get end(): Position {
    return this.items.length > 0 ? this.items[this.items.length - 1].end : this.base;
  }

  /** Index of the item ending at `position`, or undefined. */
  indexOf(position: Position): number | undefined {
    return this.#index.get(positionKey(position));
  }

  /** Hash of the prefix ending at `position`, if this log holds it (base included). */
  hashAt(position: Position): number | undefined {
    if (comparePositions(position, this.base) === 0) return this.baseHash;
    const index = this.#index.get(positionKey(position));
    return index === undefined ? undefined : this.items[index].hash;
  }

  /** Whether `position` is durable here with hash `hash`, or lies before our base. */
  durablyHolds(position: Position, hash: number): boolean {
    if (comparePositions(position, this.base) < 0) return true;
    if (comparePositions(position, this.base) === 0) return this.baseHash === hash;
    const index = this.#index.get(positionKey(position));
    return index !== undefined && index < this.durableCount && this.items[index].hash === hash;
  }

  append(item: LogItem): StoredItem {
    this.log.append(item);
    const previous = this.items.length > 0 ? this.items[this.items.length - 1].hash : this.baseHash;
    const stored = { item, end: itemEnd(item), hash: chainHash(previous, item) };
    this.#index.set(positionKey(stored.end), this.items.length);
    this.items.push(stored);
    return stored;
  }

  /** Cuts after `position`; the cut itself is synchronous and durable in this model. */
  truncate(position: Position): void {
    this.log.truncate(position);
    let keep = this.items.length;
    while (keep > 0 && comparePositions(this.items[keep - 1].end, position) > 0) keep--;
    this.#cutTo(keep);
    this.durableCount = Math.min(this.durableCount, keep);
    this.generation++;
  }

  /** An fsync that started at `generation` finished: everything up to `position` is durable. */
  synced(position: Position, generation: number): boolean {
    if (generation !== this.generation) return false;
    const index = this.#index.get(positionKey(position));
    if (index === undefined) return false;
    this.durableCount = Math.max(this.durableCount, index + 1);
    return true;
  }

  reset(base: Position, baseHash: number, voters?: readonly number[]): void {
    this.log.reset(base, voters);
    this.#cutTo(0);
    this.base = base;
    this.baseHash = baseHash;
    this.durableCount = 0;
    this.generation++;
  }

  /** Retention: forget the prefix before `base` (a held, durable, committed position). */
  compact(base: Position): void {
    this.log.compact(base);
    const hash = this.hashAt(base)!;
    let drop = 0;
    while (drop < this.items.length && comparePositions(this.items[drop].end, base) <= 0) drop++;
    this.items = this.items.slice(drop);
    this.durableCount = Math.max(0, this.durableCount - drop);
    this.base = base;
    this.baseHash = hash;
    this.#reindex();
  }

  /**
   * A crash: unsynced items are lost, or (half the time) a prefix of whole items survives
   * because the kernel wrote it anyway; a torn partial item is cut by recovery, which is the
   * same as losing it. Returns the log end before the crash, for repair's former end.
   */
  crash(random: Prng): void {
    const unsynced = this.items.length - this.durableCount;
    const survivors = unsynced > 0 && random.chance(0.5) ? random.int(0, unsynced + 1) : 0;
    this.#cutTo(this.durableCount + survivors);
    this.durableCount = this.items.length;
    this.generation++;
    this.#rebuildLog();
  }

  /** Start-up recovery of a damaged log: cut before the first bad item. */
  repairCut(): Position | undefined {
    const index = this.damagedIndex;
    this.damagedIndex = undefined;
    if (index === undefined || index >= this.items.length) return undefined;
    const formerEnd = this.end;
    this.#cutTo(index);
    this.durableCount = this.items.length;
    this.#rebuildLog();
    return formerEnd;
  }

  /** Whether `position` is held by the written log (for commit checks). */
  holds(position: Position): boolean {
    return holdsPosition(this.log, position);
  }

  #cutTo(count: number): void {
    for (let index = count; index < this.items.length; index++) {
      this.#index.delete(positionKey(this.items[index].end));
    }
    this.items.length = count;
  }

  #reindex(): void {
    this.#index.clear();
    this.items.forEach((stored, index) => this.#index.set(positionKey(stored.end), index));
  }

  #rebuildLog(): void {
    this.log = new MemoryRaftLog(this.base);
    for (const stored of this.items) this.log.append(stored.item);
  }
}

/**
 * @module DelayIndex: the delayed messages waiting in `__delay-0`, by delivery time, without
 * their payloads. Each message is a slot in typed arrays (delivery time, where its record lies
 * in the log and how long it is, its id, its target partition), found by id through an
 * open-addressing hash table and ordered by (delivery time, id) in a binary heap: about 60 bytes
 * of memory per message whatever its size, so a million pending messages take tens of
 * megabytes and their payloads stay on disk until they are delivered.
 *
 * A slot is pending (waiting for its time), firing (a firing record names it: on its way to its
 * partition), or free. The heap holds pending slots only; `popDue` takes the earliest due one
 * out of it (the writer queues it for its partition) and `restore` puts one back. Pure: no I/O,
 * no time; the caller says what "now" is.
 */
import { assert } from "../../assert.ts";

const FREE = 0;
const PENDING = 1;
const FIRING = 2;
/** Slots allocated at first; the arrays double when full. */
const INITIAL_SLOTS = 1024;

export interface IndexEntry {
  readonly id: bigint;
  readonly deliverAtMs: number;
  /** Where the message's record starts in the log, and its bytes (header included). */
  readonly offset: number;
  readonly length: number;
  /** The target partition, as a number from the caller's table of targets. */
  readonly target: number;
}

export class DelayIndex {
  #capacity = 0;
  #deliverAt = new Float64Array(0);
  #offset = new Float64Array(0);
  #length = new Int32Array(0);
  #idHigh = new Int32Array(0);
  #idLow = new Int32Array(0);
  #target = new Int32Array(0);
  #state = new Uint8Array(0);
  /** Position in the heap, or -1; for a free slot, the next free slot (or -1). */
  #heapPos = new Int32Array(0);
  /** Bumped each time a slot is freed, so a queued slot number can be checked later. */
  #generation = new Uint32Array(0);
  #heap = new Int32Array(0);
  #heapSize = 0;
  #freeHead = -1;
  /** Hash table of slot + 1 (0: empty, -1: deleted), linear probing, at most half full. */
  #table = new Int32Array(0);
  #tableUsed = 0;
  #size = 0;
  #firing = 0;
  #bytes = 0;

  constructor() {
    this.#grow(INITIAL_SLOTS);
    this.#rehash(INITIAL_SLOTS * 2);
  }

  /** Messages held (pending and firing). */
  get size(): number {
    return this.#size;
  }

  /** Messages named by a firing record and not yet delivered. */
  get firingCount(): number {
    return this.#firing;
  }

  /** Bytes of the records of the messages held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Bytes of memory the index holds (its arrays), for stats and the bench. */
  get memoryBytes(): number {
    return this.#capacity * (8 + 8 + 4 + 4 + 4 + 4 + 1 + 4 + 4 + 4) + this.#table.length * 4;
  }

  /**
   * Adds a message, or (its id is held already) records that its record now lies at `offset`:
   * the writer moved it forward. Returns its slot.
   */
  add(entry: IndexEntry): number {
    const found = this.find(entry.id);
    if (found >= 0) {
      this.#bytes += entry.length - this.#length[found];
      this.#offset[found] = entry.offset;
      this.#length[found] = entry.length;
      return found;
    }
    assert(Number.isFinite(entry.deliverAtMs));
    const slot = this.#allocate();
    const unsigned = BigInt.asUintN(64, entry.id);
    this.#idHigh[slot] = Number(unsigned >> 32n) | 0;
    this.#idLow[slot] = Number(unsigned & 0xffffffffn) | 0;
    this.#deliverAt[slot] = entry.deliverAtMs;
    this.#offset[slot] = entry.offset;
    this.#length[slot] = entry.length;
    this.#target[slot] = entry.target;
    this.#state[slot] = PENDING;
    this.#size += 1;
    this.#bytes += entry.length;
    this.#tableInsert(slot);
    this.#heapPush(slot);
    return slot;
  }

  /** The slot holding message `id`, or -1. */
  find(id: bigint): number {
    const unsigned = BigInt.asUintN(64, id);
    const high = Number(unsigned >> 32n) | 0;
    const low = Number(unsigned & 0xffffffffn) | 0;
    const mask = this.#table.length - 1;
    for (let at = hashOf(high, low) & mask;; at = (at + 1) & mask) {
      const value = this.#table[at];
      if (value === 0) return -1;
      if (value > 0) {
        const slot = value - 1;
        if (this.#idHigh[slot] === high && this.#idLow[slot] === low) return slot;
      }
    }
  }

  /** Forgets a message (delivered or cancelled). */
  remove(slot: number): void {
    assert(this.#state[slot] !== FREE);
    if (this.#heapPos[slot] >= 0) this.#heapRemove(slot);
    if (this.#state[slot] === FIRING) this.#firing -= 1;
    this.#tableDelete(slot);
    this.#size -= 1;
    this.#bytes -= this.#length[slot];
    this.#state[slot] = FREE;
    this.#generation[slot] = (this.#generation[slot] + 1) >>> 0;
    this.#heapPos[slot] = this.#freeHead;
    this.#freeHead = slot;
  }

  /** A firing record names the message: it is on its way, no longer waiting for its time. */
  startFiring(slot: number): void {
    if (this.#state[slot] !== PENDING) return;
    if (this.#heapPos[slot] >= 0) this.#heapRemove(slot);
    this.#state[slot] = FIRING;
    this.#firing += 1;
  }

  isPending(slot: number): boolean {
    return this.#state[slot] === PENDING;
  }

  isFiring(slot: number): boolean {
    return this.#state[slot] === FIRING;
  }

  /** Pending and in the heap: not taken by `popDue` (the writer has not queued it). */
  isWaiting(slot: number): boolean {
    return this.#state[slot] === PENDING && this.#heapPos[slot] >= 0;
  }

  /** Changes when the slot is freed: a slot number kept elsewhere is checked with it. */
  generationOf(slot: number): number {
    return this.#generation[slot];
  }

  idOf(slot: number): bigint {
    return BigInt.asIntN(
      64,
      (BigInt(this.#idHigh[slot] >>> 0) << 32n) | BigInt(this.#idLow[slot] >>> 0),
    );
  }

  deliverAtOf(slot: number): number {
    return this.#deliverAt[slot];
  }

  offsetOf(slot: number): number {
    return this.#offset[slot];
  }

  lengthOf(slot: number): number {
    return this.#length[slot];
  }

  targetOf(slot: number): number {
    return this.#target[slot];
  }

  /** The earliest delivery time among pending messages still in the heap. */
  nextDueMs(): number | undefined {
    return this.#heapSize > 0 ? this.#deliverAt[this.#heap[0]] : undefined;
  }

  /**
   * Takes the earliest pending message due at `nowMs` out of the heap and returns its slot (it
   * stays pending: `restore` puts it back), or -1 when none is due.
   */
  popDue(nowMs: number): number {
    if (this.#heapSize === 0) return -1;
    const top = this.#heap[0];
    if (this.#deliverAt[top] > nowMs) return -1;
    this.#heapRemove(top);
    return top;
  }

  /**
   * Takes a waiting message out of the heap (a cancel is being written for it), so `popDue`
   * never returns it; false when it is not waiting (queued for a firing, or firing).
   */
  hold(slot: number): boolean {
    if (!this.isWaiting(slot)) return false;
    this.#heapRemove(slot);
    return true;
  }

  /** Puts a pending message taken by `popDue` or `hold` back into the heap (no-op otherwise). */
  restore(slot: number): void {
    if (this.#state[slot] === PENDING && this.#heapPos[slot] < 0) this.#heapPush(slot);
  }

  /** The lowest log offset of any message held, or undefined when none is. */
  lowestOffset(): number | undefined {
    let lowest = Infinity;
    for (let slot = 0; slot < this.#capacity; slot++) {
      if (this.#state[slot] !== FREE && this.#offset[slot] < lowest) lowest = this.#offset[slot];
    }
    return lowest === Infinity ? undefined : lowest;
  }

  /** Up to `max` pending slots whose records start below `offset`, lowest offset first. */
  pendingBelow(offset: number, max: number): number[] {
    const found: number[] = [];
    for (let slot = 0; slot < this.#capacity; slot++) {
      if (this.#state[slot] === PENDING && this.#offset[slot] < offset) found.push(slot);
    }
    found.sort((a, b) => this.#offset[a] - this.#offset[b]);
    return found.slice(0, max);
  }

  /** Every held slot (tests and listings; a full scan). */
  *slots(): Generator<number> {
    for (let slot = 0; slot < this.#capacity; slot++) {
      if (this.#state[slot] !== FREE) yield slot;
    }
  }

  #allocate(): number {
    if (this.#freeHead < 0) this.#grow(this.#capacity * 2);
    const slot = this.#freeHead;
    this.#freeHead = this.#heapPos[slot];
    this.#heapPos[slot] = -1;
    return slot;
  }

  #grow(capacity: number): void {
    const old = this.#capacity;
    const grown = <T extends Float64Array | Int32Array | Uint32Array | Uint8Array>(
      array: T,
      make: (length: number) => T,
    ): T => {
      const next = make(capacity);
      next.set(array as never);
      return next;
    };
    this.#deliverAt = grown(this.#deliverAt, (n) => new Float64Array(n));
    this.#offset = grown(this.#offset, (n) => new Float64Array(n));
    this.#length = grown(this.#length, (n) => new Int32Array(n));
    this.#idHigh = grown(this.#idHigh, (n) => new Int32Array(n));
    this.#idLow = grown(this.#idLow, (n) => new Int32Array(n));
    this.#target = grown(this.#target, (n) => new Int32Array(n));
    this.#state = grown(this.#state, (n) => new Uint8Array(n));
    this.#heapPos = grown(this.#heapPos, (n) => new Int32Array(n));
    this.#generation = grown(this.#generation, (n) => new Uint32Array(n));
    this.#heap = grown(this.#heap, (n) => new Int32Array(n));
    // The new slots join the free list, lowest first.
    for (let slot = capacity - 1; slot >= old; slot--) {
      this.#heapPos[slot] = this.#freeHead;
      this.#freeHead = slot;
    }
    this.#capacity = capacity;
  }

  #tableInsert(slot: number): void {
    if ((this.#tableUsed + 1) * 2 > this.#table.length) {
      this.#rehash(Math.max(this.#table.length, nextPowerOfTwo((this.#size + 1) * 4)));
    }
    const mask = this.#table.length - 1;
    let at = hashOf(this.#idHigh[slot], this.#idLow[slot]) & mask;
    while (this.#table[at] > 0) at = (at + 1) & mask;
    if (this.#table[at] === 0) this.#tableUsed += 1;
    this.#table[at] = slot + 1;
  }

  #tableDelete(slot: number): void {
    const mask = this.#table.length - 1;
    for (let at = hashOf(this.#idHigh[slot], this.#idLow[slot]) & mask;; at = (at + 1) & mask) {
      const value = this.#table[at];
      assert(value !== 0, "a held message is missing from the id table");
      if (value === slot + 1) {
        this.#table[at] = -1;
        return;
      }
    }
  }

  /** Rebuilds the table at `length` slots (a power of two), dropping deleted marks. */
  #rehash(length: number): void {
    const old = this.#table;
    this.#table = new Int32Array(length);
    this.#tableUsed = 0;
    const mask = length - 1;
    for (const value of old) {
      if (value <= 0) continue;
      const slot = value - 1;
      let at = hashOf(this.#idHigh[slot], this.#idLow[slot]) & mask;
      while (this.#table[at] !== 0) at = (at + 1) & mask;
      this.#table[at] = value;
      this.#tableUsed += 1;
    }
  }

  /** Heap order: earlier delivery first, then the lower id (the earlier accepted). */
  #before(a: number, b: number): boolean {
    const at = this.#deliverAt[a] - this.#deliverAt[b];
    if (at !== 0) return at < 0;
    if (this.#idHigh[a] !== this.#idHigh[b]) return this.#idHigh[a] < this.#idHigh[b];
    return (this.#idLow[a] >>> 0) < (this.#idLow[b] >>> 0);
  }

  #heapPush(slot: number): void {
    const position = this.#heapSize++;
    this.#heap[position] = slot;
    this.#heapPos[slot] = position;
    this.#siftUp(position);
  }

  #heapRemove(slot: number): void {
    const position = this.#heapPos[slot];
    assert(position >= 0 && this.#heap[position] === slot);
    const last = this.#heap[--this.#heapSize];
    this.#heapPos[slot] = -1;
    if (last === slot) return;
    this.#heap[position] = last;
    this.#heapPos[last] = position;
    this.#siftUp(position);
    this.#siftDown(this.#heapPos[last]);
  }

  #siftUp(start: number): void {
    let position = start;
    const slot = this.#heap[position];
    while (position > 0) {
      const parentAt = (position - 1) >> 1;
      const parent = this.#heap[parentAt];
      if (!this.#before(slot, parent)) break;
      this.#heap[position] = parent;
      this.#heapPos[parent] = position;
      position = parentAt;
    }
    this.#heap[position] = slot;
    this.#heapPos[slot] = position;
  }

  #siftDown(start: number): void {
    let position = start;
    const slot = this.#heap[position];
    const size = this.#heapSize;
    for (;;) {
      const left = position * 2 + 1;
      if (left >= size) break;
      const right = left + 1;
      const child = right < size && this.#before(this.#heap[right], this.#heap[left])
        ? right
        : left;
      if (!this.#before(this.#heap[child], slot)) break;
      this.#heap[position] = this.#heap[child];
      this.#heapPos[this.#heap[child]] = position;
      position = child;
    }
    this.#heap[position] = slot;
    this.#heapPos[slot] = position;
  }
}

/** MurmurHash3's finalizer over both halves of an id. */
function hashOf(high: number, low: number): number {
  let h = Math.imul(high ^ 0x9e3779b9, 0x85ebca6b) ^ low;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function nextPowerOfTwo(value: number): number {
  let power = 1;
  while (power < value) power *= 2;
  return power;
}

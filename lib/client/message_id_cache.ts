/**
 * @module MessageIdCache: MetaQ's duplicate suppression. Remembers the ids of messages a group has
 * processed, so a rewind (a rebalance that resumes from an older committed offset, a re-read after
 * a bad record) does not hand the same message to the handler twice. Bounded: the least recently
 * used ids are forgotten first, so it hides recent duplicates only. In-process, like MetaQ's.
 */
import { assert } from "../assert.ts";

/** MetaQ's default cache size. */
export const MESSAGE_ID_CACHE_ENTRIES_DEFAULT = 4096;

export interface MessageIdCache {
  /** Whether `group` already processed message `id`; a hit counts as a use. */
  has(group: string, id: bigint): boolean;
  add(group: string, id: bigint): void;
}

/** An LRU of (group, id) keys; MetaQ glued them with no separator, which could collide. */
export class LruMessageIdCache implements MessageIdCache {
  readonly entriesMax: number;
  readonly #keys = new Map<string, true>();

  constructor(entriesMax = MESSAGE_ID_CACHE_ENTRIES_DEFAULT) {
    assert(Number.isInteger(entriesMax) && entriesMax > 0);
    this.entriesMax = entriesMax;
  }

  get size(): number {
    return this.#keys.size;
  }

  has(group: string, id: bigint): boolean {
    const key = `${group}\u0000${id}`;
    if (!this.#keys.has(key)) return false;
    this.#keys.delete(key); // a Map keeps insertion order: re-inserting marks it recent
    this.#keys.set(key, true);
    return true;
  }

  add(group: string, id: bigint): void {
    const key = `${group}\u0000${id}`;
    this.#keys.delete(key);
    this.#keys.set(key, true);
    if (this.#keys.size > this.entriesMax) {
      this.#keys.delete(this.#keys.keys().next().value!);
    }
    assert(this.#keys.size <= this.entriesMax);
  }
}

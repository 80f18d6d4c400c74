/**
 * @module MessageIdCache: MetaQ's duplicate suppression. Remembers the ids of messages a group has
 * processed, so a rewind (a rebalance that resumes from an older committed offset, a re-read after
 * a bad record) does not hand the same message to the handler twice. Bounded: the least recently
 * used ids are forgotten first, so it hides recent duplicates only. In-process, like MetaQ's.
 */
import { assert } from "../assert.ts";

/** MetaQ's default cache size. */
export const MESSAGE_ID_CACHE_ENTRIES_DEFAULT = 4096;
/** Groups one cache tracks; the least recently added group is forgotten beyond it. */
const GROUPS_MAX = 64;

export interface MessageIdCache {
  /** Whether `group` already processed message `id`; a hit counts as a use. */
  has(group: string, id: bigint): boolean;
  add(group: string, id: bigint): void;
}

/**
 * An LRU per group, keyed by the id itself (a bigint key compares by value, so no string is
 * built per message). MetaQ glued group and id into one string, which could collide.
 */
export class LruMessageIdCache implements MessageIdCache {
  readonly entriesMax: number;
  readonly #groups = new Map<string, Map<bigint, true>>();

  /** `entriesMax` ids are kept per group; a consumer has one group. */
  constructor(entriesMax = MESSAGE_ID_CACHE_ENTRIES_DEFAULT) {
    assert(Number.isInteger(entriesMax) && entriesMax > 0);
    this.entriesMax = entriesMax;
  }

  get size(): number {
    let size = 0;
    for (const ids of this.#groups.values()) size += ids.size;
    return size;
  }

  has(group: string, id: bigint): boolean {
    const ids = this.#groups.get(group);
    if (!ids?.has(id)) return false;
    ids.delete(id); // a Map keeps insertion order: re-inserting marks it recent
    ids.set(id, true);
    return true;
  }

  add(group: string, id: bigint): void {
    let ids = this.#groups.get(group);
    if (!ids) {
      if (this.#groups.size >= GROUPS_MAX) this.#groups.delete(this.#groups.keys().next().value!);
      this.#groups.set(group, ids = new Map());
    }
    ids.delete(id);
    ids.set(id, true);
    if (ids.size > this.entriesMax) ids.delete(ids.keys().next().value!);
    assert(ids.size <= this.entriesMax);
  }
}

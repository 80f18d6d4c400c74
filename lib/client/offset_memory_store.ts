/**
 * @module OffsetMemoryStore: a consumer's committed offsets in a map, lost when the process ends.
 * For consumers that keep no position between runs (`offsets: "memory"`) and for tests. Same
 * contract as every OffsetStore (lib/protocol/group_wire.ts).
 */
import {
  checkEntries,
  checkForward,
  compareEntries,
  type OffsetEntry,
  type OffsetKey,
  offsetKeyText,
  type OffsetStore,
} from "../protocol/group_wire.ts";

export class OffsetMemoryStore implements OffsetStore {
  readonly #offsets = new Map<string, OffsetEntry>();

  get(key: OffsetKey): number | undefined {
    return this.#offsets.get(offsetKeyText(key))?.offset;
  }

  entries(): OffsetEntry[] {
    return [...this.#offsets.values()].sort(compareEntries);
  }

  commit(entries: readonly OffsetEntry[]): Promise<void> {
    try {
      checkEntries(entries);
      checkForward(entries, (key) => this.get(key));
    } catch (error) {
      return Promise.reject(error);
    }
    this.#put(entries);
    return Promise.resolve();
  }

  reset(entries: readonly OffsetEntry[]): Promise<void> {
    try {
      checkEntries(entries);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#put(entries);
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  #put(entries: readonly OffsetEntry[]): void {
    for (const entry of entries) {
      const { group, topic, partition, offset } = entry;
      this.#offsets.set(offsetKeyText(entry), { group, topic, partition, offset });
    }
  }
}

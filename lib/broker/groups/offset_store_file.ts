/**
 * @module FileOffsetStore: committed offsets in a Journal (append-only, checksummed, fsynced by
 * group commit), replayed into memory at open and compacted to one snapshot then and whenever the
 * history grows well past the live state. The broker keeps its groups' offsets in one under
 * `<dataPath>/_groups/` (a name the message store never mistakes for `<topic>-<partition>`);
 * broadcast consumers keep theirs in one on the client's machine.
 *
 * Each journal body is JSON: `{"kind":"commit"|"reset"|"snapshot","entries":[[group, topic,
 * partition, offset], ...]}`. Replay applies bodies in order; `commit` bodies never go backwards
 * because the store checked them before writing.
 */
import { assert } from "../../assert.ts";
import { BrokerError, describeError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import {
  checkEntries,
  checkForward,
  compareEntries,
  type OffsetEntry,
  type OffsetKey,
  offsetKeyText,
  type OffsetStore,
} from "../../protocol/group_wire.ts";
import type { Storage } from "../../store/storage.ts";
import { Journal } from "./journal.ts";

export interface FileOffsetStoreOptions {
  readonly storage: Storage;
  /** The journal file, e.g. `<dataPath>/_groups/offsets.log`. */
  readonly path: string;
  readonly logger: Logger;
  /** Cut a corrupt journal at the damage instead of refusing to open. */
  readonly repair?: boolean;
  /** Hold a pid lock on the file (client-side stores, where two processes could share it). */
  readonly lock?: boolean;
}

/** Largest journal body: room for ENTRIES_PER_BODY_MAX entries with names at their limits. */
const BODY_BYTES_MAX = 4 * 1024 * 1024;
/** Most entries in one commit (one journal body, so all or nothing) or one snapshot body. */
export const ENTRIES_PER_BODY_MAX = 4096;
/** Compact when the journal is this much larger than the last snapshot, and above the floor. */
const COMPACT_GROWTH_FACTOR = 4;
const COMPACT_BYTES_MIN = 1024 * 1024;

type Kind = "commit" | "reset" | "snapshot";
type WireEntry = [string, string, number, number];

export class FileOffsetStore implements OffsetStore {
  readonly #journal: Journal;
  readonly #logger: Logger;
  readonly #offsets = new Map<string, OffsetEntry>();
  #snapshotBytes = 0;
  #compacting: Promise<void> | undefined;

  private constructor(journal: Journal, logger: Logger) {
    this.#journal = journal;
    this.#logger = logger;
  }

  static async open(options: FileOffsetStoreOptions): Promise<FileOffsetStore> {
    const { journal, bodies } = await Journal.open({
      storage: options.storage,
      path: options.path,
      bodyBytesMax: BODY_BYTES_MAX,
      repair: options.repair,
      lock: options.lock,
      logger: options.logger,
    });
    const store = new FileOffsetStore(journal, options.logger);
    for (const body of bodies) store.#replay(body, options.path);
    await store.#compact();
    return store;
  }

  get(key: OffsetKey): number | undefined {
    return this.#offsets.get(offsetKeyText(key))?.offset;
  }

  entries(): OffsetEntry[] {
    return [...this.#offsets.values()].sort(compareEntries);
  }

  /** Journal bytes on disk (for tests and stats). */
  get sizeBytes(): number {
    return this.#journal.sizeBytes;
  }

  async commit(entries: readonly OffsetEntry[]): Promise<void> {
    checkEntries(entries);
    checkForward(entries, (key) => this.get(key));
    await this.#write("commit", entries);
  }

  async reset(entries: readonly OffsetEntry[]): Promise<void> {
    checkEntries(entries);
    await this.#write("reset", entries);
  }

  async close(): Promise<void> {
    await this.#compacting;
    await this.#journal.close();
  }

  /** Applies to memory first, so a later commit is checked against this one, then persists. */
  async #write(kind: Kind, entries: readonly OffsetEntry[]): Promise<void> {
    if (entries.length === 0) return;
    if (entries.length > ENTRIES_PER_BODY_MAX) {
      throw new BrokerError("badRequest", `more than ${ENTRIES_PER_BODY_MAX} offsets in one batch`);
    }
    const previous = entries.map((entry) => this.#offsets.get(offsetKeyText(entry)));
    this.#apply(entries);
    try {
      await this.#journal.append([encodeBody(kind, entries)]);
    } catch (error) {
      this.#undo(entries, previous);
      throw error;
    }
    this.#compactIfGrown();
  }

  #apply(entries: readonly OffsetEntry[]): void {
    for (const { group, topic, partition, offset } of entries) {
      const entry = { group, topic, partition, offset };
      this.#offsets.set(offsetKeyText(entry), entry);
    }
  }

  /**
   * A write that failed (a full disk) did not happen: memory goes back to what the journal
   * holds, except where a later write already moved an entry on.
   */
  #undo(entries: readonly OffsetEntry[], previous: readonly (OffsetEntry | undefined)[]): void {
    entries.forEach((entry, index) => {
      const key = offsetKeyText(entry);
      const now = this.#offsets.get(key);
      if (now?.offset !== entry.offset) return;
      const before = previous[index];
      if (before) this.#offsets.set(key, before);
      else this.#offsets.delete(key);
    });
  }

  #replay(body: Uint8Array, path: string): void {
    let parsed: { kind: Kind; entries: WireEntry[] };
    try {
      parsed = JSON.parse(new TextDecoder().decode(body));
    } catch (error) {
      // The checksum matched, so these bytes are what we wrote: a bug, not damage.
      assert(false, `offset journal ${path} holds an entry that is not JSON: ${error}`);
    }
    this.#apply(parsed.entries.map(([group, topic, partition, offset]) => ({
      group,
      topic,
      partition,
      offset,
    })));
  }

  #compactIfGrown(): void {
    const size = this.#journal.sizeBytes;
    if (this.#compacting || size < COMPACT_BYTES_MIN) return;
    if (size < this.#snapshotBytes * COMPACT_GROWTH_FACTOR) return;
    this.#compacting = this.#compact().catch((error) =>
      this.#logger.log("error", "Cannot compact offsets journal", { reason: describeError(error) })
    ).finally(() => (this.#compacting = undefined));
  }

  async #compact(): Promise<void> {
    const entries = this.entries();
    const bodies: Uint8Array[] = [];
    for (let i = 0; i < entries.length; i += ENTRIES_PER_BODY_MAX) {
      bodies.push(encodeBody("snapshot", entries.slice(i, i + ENTRIES_PER_BODY_MAX)));
    }
    await this.#journal.compact(bodies);
    this.#snapshotBytes = this.#journal.sizeBytes;
  }
}

function encodeBody(kind: Kind, entries: readonly OffsetEntry[]): Uint8Array {
  const wire: WireEntry[] = entries.map((entry) => [
    entry.group,
    entry.topic,
    entry.partition,
    entry.offset,
  ]);
  return new TextEncoder().encode(JSON.stringify({ kind, entries: wire }));
}

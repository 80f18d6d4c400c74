/**
 * @module OffsetFileStore: a consumer's committed offsets in a RecordFile on its own machine
 * (broadcast consumers, and group consumers with `offsets: "file"`). Replayed into memory at
 * open and compacted to one snapshot then, and again whenever the file grows well past the live
 * state. Same contract as every OffsetStore (lib/protocol/group_wire.ts).
 *
 * Each record's data is JSON: `{"kind":"commit"|"reset"|"snapshot","entries":[[group, topic,
 * partition, offset], ...]}`. Replay applies records in order; `commit` records never go
 * backwards because the store checked them before writing.
 */
import { BrokerError, describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import {
  checkEntries,
  checkForward,
  compareEntries,
  type OffsetEntry,
  type OffsetKey,
  offsetKeyText,
  type OffsetStore,
} from "../protocol/group_wire.ts";
import { RecordFile } from "./record_file.ts";

export interface OffsetFileStoreOptions {
  /** The file, e.g. `~/.metaq/offsets/<group>@<instance>/offsets.records`. */
  readonly path: string;
  readonly logger: Logger;
  /** Cut a damaged file at the damage instead of refusing to open it. */
  readonly repair?: boolean;
  /** Hold a pid lock on the file, so two processes never write it (default true). */
  readonly lock?: boolean;
}

/** Largest record: room for ENTRIES_PER_RECORD_MAX entries with names at their limits. */
const RECORD_DATA_BYTES_MAX = 4 * 1024 * 1024;
/** Most entries in one commit (one record, so all or nothing) or one snapshot record. */
export const ENTRIES_PER_RECORD_MAX = 4096;
/** Compact when the file is this much larger than the last snapshot, and above the floor. */
const COMPACT_GROWTH_FACTOR = 4;
const COMPACT_BYTES_MIN = 1024 * 1024;

type Kind = "commit" | "reset" | "snapshot";
type WireEntry = [string, string, number, number];

export class OffsetFileStore implements OffsetStore {
  readonly #file: RecordFile;
  readonly #logger: Logger;
  readonly #offsets = new Map<string, OffsetEntry>();
  #snapshotBytes = 0;
  #compacting: Promise<void> | undefined;

  private constructor(file: RecordFile, logger: Logger) {
    this.#file = file;
    this.#logger = logger;
  }

  static async open(options: OffsetFileStoreOptions): Promise<OffsetFileStore> {
    const { file, bodies } = await RecordFile.open({
      path: options.path,
      dataBytesMax: RECORD_DATA_BYTES_MAX,
      repair: options.repair,
      lock: options.lock ?? true,
      logger: options.logger,
    });
    const store = new OffsetFileStore(file, options.logger);
    try {
      for (const body of bodies) store.#apply(decodeBody(body, options.path));
      await store.#compact();
    } catch (error) {
      await file.close();
      throw error;
    }
    return store;
  }

  get(key: OffsetKey): number | undefined {
    return this.#offsets.get(offsetKeyText(key))?.offset;
  }

  entries(): OffsetEntry[] {
    return [...this.#offsets.values()].sort(compareEntries);
  }

  /** File bytes on disk (for tests and stats). */
  get sizeBytes(): number {
    return this.#file.sizeBytes;
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
    await this.#file.close();
  }

  /**
   * Applies to memory first, so a later commit is checked against this one and a compaction
   * started meanwhile includes it, then persists.
   */
  async #write(kind: Kind, entries: readonly OffsetEntry[]): Promise<void> {
    if (entries.length === 0) return;
    if (entries.length > ENTRIES_PER_RECORD_MAX) {
      throw new BrokerError(
        "badRequest",
        `more than ${ENTRIES_PER_RECORD_MAX} offsets in one batch`,
      );
    }
    const previous = entries.map((entry) => this.#offsets.get(offsetKeyText(entry)));
    this.#apply(entries);
    try {
      await this.#file.append([encodeBody(kind, entries)]);
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
   * A write that failed (a full disk) did not happen: memory goes back to what the file holds,
   * except where a later write already moved an entry on.
   */
  #undo(entries: readonly OffsetEntry[], previous: readonly (OffsetEntry | undefined)[]): void {
    entries.forEach((entry, index) => {
      const key = offsetKeyText(entry);
      if (this.#offsets.get(key)?.offset !== entry.offset) return;
      const before = previous[index];
      if (before) this.#offsets.set(key, before);
      else this.#offsets.delete(key);
    });
  }

  #compactIfGrown(): void {
    const size = this.#file.sizeBytes;
    if (this.#compacting || size < COMPACT_BYTES_MIN) return;
    if (size < this.#snapshotBytes * COMPACT_GROWTH_FACTOR) return;
    this.#compacting = this.#compact().catch((error) =>
      this.#logger.log("error", "Cannot compact the offsets file", {
        reason: describeError(error),
      })
    ).finally(() => (this.#compacting = undefined));
  }

  async #compact(): Promise<void> {
    const entries = this.entries();
    const bodies: Uint8Array[] = [];
    for (let i = 0; i < entries.length; i += ENTRIES_PER_RECORD_MAX) {
      bodies.push(encodeBody("snapshot", entries.slice(i, i + ENTRIES_PER_RECORD_MAX)));
    }
    await this.#file.compact(bodies);
    this.#snapshotBytes = this.#file.sizeBytes;
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

/**
 * The entries of one record. The checksum matched, so a record that does not decode was written
 * by something else: the file is not an offsets file, which is an operator's problem to see.
 */
function decodeBody(body: Uint8Array, path: string): OffsetEntry[] {
  let parsed: { kind?: unknown; entries?: unknown };
  try {
    parsed = JSON.parse(new TextDecoder().decode(body));
  } catch (error) {
    throw notOffsets(path, describeError(error));
  }
  if (!Array.isArray(parsed?.entries)) throw notOffsets(path, "a record has no entries");
  return parsed.entries.map((wire: unknown) => {
    if (!isWireEntry(wire)) throw notOffsets(path, `${JSON.stringify(wire)} is not an entry`);
    const [group, topic, partition, offset] = wire;
    return { group, topic, partition, offset };
  });
}

function isWireEntry(wire: unknown): wire is WireEntry {
  return Array.isArray(wire) && wire.length === 4 && typeof wire[0] === "string" &&
    typeof wire[1] === "string" && Number.isSafeInteger(wire[2]) && Number.isSafeInteger(wire[3]);
}

function notOffsets(path: string, detail: string): BrokerError {
  return new BrokerError("corruption", `${path} is not an offsets file: ${detail}`);
}

/**
 * @module The state kept in the `__meta-0` group: consumer groups' committed offsets. Records in
 * that log are ordinary MetaQ records whose data is one JSON command; every node applies the
 * committed ones in order, so every node holds the same offsets and a new coordinator starts
 * from them after a failover. Applying is deterministic and enforces the offset rule itself:
 * a commit never moves an offset backwards; only an operator's reset does.
 *
 * ```json
 * {"op":"commit","entries":[{"group":"g","topic":"t","partition":0,"offset":1234}]}
 * {"op":"reset","entries":[...]}
 * {"op":"snapshot","base":40960,"entries":[...every committed offset...]}
 * ```
 *
 * A snapshot lets the log be compacted: the whole table as it stands after every record before
 * the snapshot's own position, which it names as `base`. The coordinator writes one only when
 * nothing else is in flight (the log ends where it has applied), so the record lands exactly at
 * `base`; applying it replaces the table. A node that starts anywhere at or below `base` (a
 * compacted log, or a follower reset to its leader's start) therefore ends with the same table
 * as one that applied the whole log, which is why compaction may drop everything below the
 * latest snapshot and no further. A snapshot found anywhere but at its base is ignored.
 */
import { BrokerError } from "../errors.ts";
import {
  checkEntries,
  checkForward,
  compareEntries,
  type OffsetEntry,
  type OffsetKey,
  offsetKeyText,
  type OffsetStore,
} from "../broker/groups/offset_store.ts";
import { crc32 } from "../crc32.ts";
import { decodeRecords, encodeRecord, RECORD_HEADER_BYTES } from "../protocol/record.ts";
import type { Replica } from "./replica.ts";

export type MetaCommand =
  | { readonly op: "commit" | "reset"; readonly entries: readonly OffsetEntry[] }
  | { readonly op: "snapshot"; readonly base: number; readonly entries: readonly OffsetEntry[] };

/** A snapshot larger than this is not written (the log then keeps growing; logged once). */
export const SNAPSHOT_BYTES_MAX = 16 * 1024 * 1024;

const READ_BYTES = 1024 * 1024;

/** What `cluster status` shows of a node's table, to compare nodes. */
export interface OffsetsSummary {
  readonly entries: number;
  readonly applied: number;
  readonly snapshotBase: number;
  /** CRC-32 of the sorted table, hex: equal on nodes that applied the same records. */
  readonly digest: string;
}

/** Applies committed `__meta-0` records to an in-memory table of offsets. */
export class MetaState {
  readonly #offsets = new Map<string, OffsetEntry>();
  #applied = 0;
  #snapshotBase = 0;
  #snapshotEnd = 0;
  #summary: OffsetsSummary | undefined;
  readonly #listeners = new Set<(appliedOffset: number) => void>();

  constructor(startOffset: number) {
    this.#applied = startOffset;
    this.#snapshotEnd = startOffset;
  }

  /** Offset up to which committed records are applied. */
  get appliedOffset(): number {
    return this.#applied;
  }

  /** The log may start anywhere at or below this offset (the latest snapshot's base). */
  get snapshotBase(): number {
    return this.#snapshotBase;
  }

  /** Bytes of records applied since the latest snapshot record (or the log's start). */
  get bytesSinceSnapshot(): number {
    return this.#applied - this.#snapshotEnd;
  }

  get(key: OffsetKey): number | undefined {
    return this.#offsets.get(offsetKeyText(key))?.offset;
  }

  entries(): OffsetEntry[] {
    return [...this.#offsets.values()].sort(compareEntries);
  }

  /** Computed once per applied position: status pages and the dashboard ask every second. */
  summary(): OffsetsSummary {
    if (this.#summary?.applied === this.#applied) return this.#summary;
    const table = JSON.stringify(this.entries());
    this.#summary = {
      entries: this.#offsets.size,
      applied: this.#applied,
      snapshotBase: this.#snapshotBase,
      digest: crc32(new TextEncoder().encode(table)).toString(16).padStart(8, "0"),
    };
    return this.#summary;
  }

  /** The snapshot command of the table as applied now, to be written at the applied offset. */
  snapshot(): MetaCommand {
    return { op: "snapshot", base: this.#applied, entries: this.entries() };
  }

  /** Reads and applies the records of `replica` between what was applied and its commit. */
  catchUp(replica: Replica): void {
    const log = replica.log;
    const commit = replica.commitOffset;
    // A follower reset to its leader's (compacted) start: the records there begin with a
    // snapshot's coverage, so the table is rebuilt correctly from them (see the module note).
    if (this.#applied < log.startOffset) this.#applied = log.startOffset;
    let readBytes = READ_BYTES;
    while (this.#applied < commit) {
      const bytes = log.read(this.#applied, readBytes, commit);
      const records = decodeRecords(bytes, this.#applied, SNAPSHOT_BYTES_MAX);
      if (records.length === 0) {
        // The next record is larger than the read (a big snapshot): read it whole.
        const length = bytes.length >= 4
          ? new DataView(bytes.buffer, bytes.byteOffset).getInt32(0)
          : 0;
        const needed = RECORD_HEADER_BYTES + length;
        if (length <= 0 || needed <= readBytes) break;
        readBytes = needed;
        continue;
      }
      for (const record of records) {
        const command = JSON.parse(new TextDecoder().decode(record.data)) as MetaCommand;
        this.apply(command, record.offset, record.offset + RECORD_HEADER_BYTES + record.length);
      }
      readBytes = READ_BYTES;
    }
    for (const listener of this.#listeners) listener(this.#applied);
  }

  /** Applies one committed record that starts at `offset` and ends at `end`. */
  apply(command: MetaCommand, offset: number, end: number): void {
    if (command.op !== "snapshot") this.#applyChanges(command.op, command.entries);
    else if (command.base === offset) {
      this.#offsets.clear();
      this.#applyChanges("reset", command.entries);
      this.#snapshotBase = offset;
      this.#snapshotEnd = end;
    }
    this.#applied = end;
  }

  /** Resolves once records up to `offset` are applied (or rejects after `timeoutMs`). */
  waitApplied(offset: number, timeoutMs: number): Promise<void> {
    if (this.#applied >= offset) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#listeners.delete(listener);
        reject(new BrokerError("timeout", "the offset commit was not applied in time"));
      }, timeoutMs);
      const listener = (applied: number) => {
        if (applied < offset) return;
        clearTimeout(timer);
        this.#listeners.delete(listener);
        resolve();
      };
      this.#listeners.add(listener);
    });
  }

  #applyChanges(op: "commit" | "reset", entries: readonly OffsetEntry[]): void {
    for (const entry of entries) {
      const key = offsetKeyText(entry);
      const stored = this.#offsets.get(key)?.offset;
      if (op === "commit" && stored !== undefined && entry.offset < stored) continue;
      this.#offsets.set(key, copyEntry(entry));
    }
  }
}

function copyEntry(entry: OffsetEntry): OffsetEntry {
  return {
    group: entry.group,
    topic: entry.topic,
    partition: entry.partition,
    offset: entry.offset,
  };
}

/**
 * The OffsetStore of the group coordinator in a cluster: a commit is a record proposed to
 * `__meta-0`, durable once a majority stored it, applied on every node.
 */
export class ReplicatedOffsetStore implements OffsetStore {
  readonly #replica: () => Replica | undefined;
  readonly #state: MetaState;
  #nextId = 1n;

  constructor(replica: () => Replica | undefined, state: MetaState) {
    this.#replica = replica;
    this.#state = state;
  }

  get(key: OffsetKey): number | undefined {
    return this.#state.get(key);
  }

  entries(): OffsetEntry[] {
    return this.#state.entries();
  }

  async commit(entries: readonly OffsetEntry[]): Promise<void> {
    checkEntries(entries);
    checkForward(entries, (key) => this.#state.get(key));
    await this.#propose({ op: "commit", entries });
  }

  async reset(entries: readonly OffsetEntry[]): Promise<void> {
    checkEntries(entries);
    await this.#propose({ op: "reset", entries });
  }

  /**
   * Writes the whole table as a snapshot record, so the log below it may go. Only when the log
   * ends where the table is applied and nothing is queued, so that the record lands exactly at
   * the offset it describes; otherwise (or above SNAPSHOT_BYTES_MAX) writes nothing and
   * resolves undefined. Resolves with the record's size once applied.
   */
  async snapshot(): Promise<number | undefined> {
    const replica = this.#replica();
    if (!replica?.isLeader || replica.hasQueuedProposals) return undefined;
    if (replica.status().last.offset !== this.#state.appliedOffset) return undefined;
    return await this.#propose(this.#state.snapshot(), SNAPSHOT_BYTES_MAX);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  async #propose(command: MetaCommand, bytesMax = Infinity): Promise<number> {
    const replica = this.#replica();
    if (!replica?.isLeader) {
      throw new BrokerError("notLeader", "this node does not coordinate groups now");
    }
    const data = new TextEncoder().encode(JSON.stringify(command));
    if (data.length > bytesMax) {
      throw new Error(`a ${command.op} record of ${data.length} bytes is over ${bytesMax}`);
    }
    const record = encodeRecord({ id: this.#nextId++, flag: 0, data });
    const end = await new Promise<number>((resolve, reject) => {
      replica.propose(record, (outcome) => {
        if (outcome.ok) resolve(outcome.offset + record.length);
        else reject(outcome.error);
      });
    });
    await this.#state.waitApplied(end, 10_000);
    return record.length;
  }
}

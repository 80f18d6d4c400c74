/**
 * @module The committed offsets of consumer groups, kept in the broker's `__meta-0` log (a
 * StateLog): each record's data is one JSON command, applied in order on every node, so every
 * node holds the same offsets and a new coordinator starts from them after a failover. Applying
 * is deterministic and enforces the offset rule itself: a commit never moves an offset
 * backwards; only an operator's reset does.
 *
 * ```json
 * {"op":"commit","entries":[{"group":"g","topic":"t","partition":0,"offset":1234}]}
 * {"op":"reset","entries":[...]}
 * {"op":"remove","entries":[{"group","topic","partition"}...]}   a deleted group's offsets
 * {"op":"snapshot","base":40960,"entries":[...every committed offset...]}
 * ```
 */
import { crc32 } from "../../crc32.ts";
import type { StateLog, StateMachine } from "../../store/state_log.ts";
import {
  checkEntries,
  checkForward,
  compareEntries,
  type OffsetEntry,
  type OffsetKey,
  offsetKeyText,
  type OffsetStore,
} from "../../protocol/group_wire.ts";

export type OffsetsCommand =
  | { readonly op: "commit" | "reset"; readonly entries: readonly OffsetEntry[] }
  | { readonly op: "remove"; readonly entries: readonly OffsetKey[] }
  | { readonly op: "snapshot"; readonly base: number; readonly entries: readonly OffsetEntry[] };

/** What `cluster status` shows of a node's table, to compare nodes. */
export interface OffsetsSummary {
  readonly entries: number;
  readonly applied: number;
  readonly snapshotBase: number;
  /** CRC-32 of the sorted table, hex: equal on nodes that applied the same records. */
  readonly digest: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The table of committed offsets, as applied from the log. */
export class OffsetsState implements StateMachine {
  readonly #offsets = new Map<string, OffsetEntry>();
  #summary: { applied: number; value: OffsetsSummary } | undefined;
  #applied = 0;
  #snapshotBase = 0;

  get(key: OffsetKey): number | undefined {
    return this.#offsets.get(offsetKeyText(key))?.offset;
  }

  entries(): OffsetEntry[] {
    return [...this.#offsets.values()].sort(compareEntries);
  }

  apply(data: Uint8Array, offset: number, end: number): boolean {
    const command = JSON.parse(decoder.decode(data)) as OffsetsCommand;
    this.#applied = end;
    if (command.op === "remove") {
      for (const key of command.entries) this.#offsets.delete(offsetKeyText(key));
      return false;
    }
    if (command.op !== "snapshot") {
      this.#change(command.op, command.entries);
      return false;
    }
    if (command.base !== offset) return false; // a snapshot found elsewhere is ignored
    this.#offsets.clear();
    this.#change("reset", command.entries);
    this.#snapshotBase = offset;
    return true;
  }

  snapshot(base: number): Uint8Array {
    return encode({ op: "snapshot", base, entries: this.entries() });
  }

  /** Computed once per applied position: status pages and the dashboard ask every second. */
  summary(): OffsetsSummary {
    if (this.#summary?.applied === this.#applied) return this.#summary.value;
    const table = JSON.stringify(this.entries());
    const value = {
      entries: this.#offsets.size,
      applied: this.#applied,
      snapshotBase: this.#snapshotBase,
      digest: crc32(encoder.encode(table)).toString(16).padStart(8, "0"),
    };
    this.#summary = { applied: this.#applied, value };
    return value;
  }

  #change(op: "commit" | "reset", entries: readonly OffsetEntry[]): void {
    for (const entry of entries) {
      const key = offsetKeyText(entry);
      const stored = this.#offsets.get(key)?.offset;
      if (op === "commit" && stored !== undefined && entry.offset < stored) continue;
      const { group, topic, partition } = entry;
      this.#offsets.set(key, { group, topic, partition, offset: entry.offset });
    }
  }
}

/**
 * The OffsetStore of the group coordinator: a commit is a record appended to `__meta-0`,
 * durable once the log acknowledges it (a quorum stored it, in a cluster), applied everywhere.
 */
export class LogOffsetStore implements OffsetStore {
  readonly #state: OffsetsState;
  readonly #log: StateLog;
  readonly #replicated: boolean;
  /** The barrier the callers of this macrotask share (appended on the next microtask). */
  #barrier: Promise<void> | undefined;

  /**
   * `replicated`: the log has copies on other nodes, one of which may have been elected its
   * writer while this node still believes it writes (it was paused, say); `confirm` then proves
   * otherwise before a read is answered.
   */
  constructor(state: OffsetsState, log: StateLog, replicated = false) {
    this.#state = state;
    this.#log = log;
    this.#replicated = replicated;
  }

  /**
   * A barrier: an empty commit appended to the log. It is applied here only if this node's term
   * still holds a quorum, which an elected successor's voters no longer grant; after it the
   * table holds every commit acknowledged before the call. Callers arriving before the append
   * is issued share it (each of them arrived before it was issued, so it proves their reads).
   */
  confirm(): Promise<void> {
    if (!this.#replicated) return Promise.resolve();
    this.#barrier ??= Promise.resolve().then(() => {
      this.#barrier = undefined;
      return this.#log.append(encode({ op: "commit", entries: [] }));
    }).then(() => {});
    return this.#barrier;
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
    await this.#log.append(encode({ op: "commit", entries }));
  }

  async reset(entries: readonly OffsetEntry[]): Promise<void> {
    checkEntries(entries);
    await this.#log.append(encode({ op: "reset", entries }));
  }

  async remove(keys: readonly OffsetKey[]): Promise<void> {
    const entries = keys.map(({ group, topic, partition }) => ({ group, topic, partition }));
    await this.#log.append(encode({ op: "remove", entries }));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

function encode(command: OffsetsCommand): Uint8Array {
  return encoder.encode(JSON.stringify(command));
}

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
 * ```
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
} from "../groups/offset_store.ts";
import { decodeRecords, encodeRecord } from "../store/record.ts";
import type { Replica } from "./replica.ts";

type MetaCommand = { readonly op: "commit" | "reset"; readonly entries: readonly OffsetEntry[] };

/** Applies committed `__meta-0` records to an in-memory table of offsets. */
export class MetaState {
  readonly #offsets = new Map<string, OffsetEntry>();
  #applied = 0;
  readonly #listeners = new Set<(appliedOffset: number) => void>();

  constructor(startOffset: number) {
    this.#applied = startOffset;
  }

  /** Offset up to which committed records are applied. */
  get appliedOffset(): number {
    return this.#applied;
  }

  get(key: OffsetKey): number | undefined {
    return this.#offsets.get(offsetKeyText(key))?.offset;
  }

  entries(): OffsetEntry[] {
    return [...this.#offsets.values()].sort(compareEntries);
  }

  /** Reads and applies the records of `replica` between what was applied and its commit. */
  catchUp(replica: Replica): void {
    const log = replica.log;
    const commit = replica.commitOffset;
    if (this.#applied < log.startOffset) this.#applied = log.startOffset;
    while (this.#applied < commit) {
      const bytes = log.read(this.#applied, 1024 * 1024, commit);
      const records = decodeRecords(bytes, this.#applied);
      if (records.length === 0) break; // a record larger than the read: cannot happen (we write small ones)
      for (const record of records) this.#apply(JSON.parse(new TextDecoder().decode(record.data)));
      const last = records[records.length - 1];
      this.#applied = last.offset + 20 + last.length;
    }
    for (const listener of this.#listeners) listener(this.#applied);
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

  #apply(command: MetaCommand): void {
    for (const entry of command.entries) {
      const key = offsetKeyText(entry);
      const stored = this.#offsets.get(key)?.offset;
      if (command.op === "commit" && stored !== undefined && entry.offset < stored) continue;
      this.#offsets.set(key, {
        group: entry.group,
        topic: entry.topic,
        partition: entry.partition,
        offset: entry.offset,
      });
    }
  }
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

  close(): Promise<void> {
    return Promise.resolve();
  }

  async #propose(command: MetaCommand): Promise<void> {
    const replica = this.#replica();
    if (!replica?.isLeader) {
      throw new BrokerError("notLeader", "this node does not coordinate groups now");
    }
    const data = new TextEncoder().encode(JSON.stringify(command));
    const record = encodeRecord({ id: this.#nextId++, flag: 0, data });
    const end = await new Promise<number>((resolve, reject) => {
      replica.propose(record, (outcome) => {
        if (outcome.ok) resolve(outcome.offset + record.length);
        else reject(outcome.error);
      });
    });
    await this.#state.waitApplied(end, 10_000);
  }
}

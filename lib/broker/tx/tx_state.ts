/**
 * @module What the transaction journal (`__tx-0`) says must outlive a coordinator, applied from
 * its records in order on every node (a StateMachine). The recovery table: what a new
 * coordinator (after a restart or a failover) does with each transaction it finds here.
 *
 * | last record of the transaction   | the new coordinator                                    |
 * |----------------------------------|--------------------------------------------------------|
 * | none (open, never prepared)      | knows nothing of it: it is rolled back                 |
 * | prepare (XA)                     | PREPARED again; RECOVER lists it; the client or an     |
 * |                                  | operator commits or rolls it back                      |
 * | commit                           | completes it: each batch's missing records appended    |
 * |                                  | exactly once (Log.appendMissing), then `applied`       |
 * | applied, rollback                | gone (a commit's key is kept among the recent commits) |
 * | heuristic / forget (by XID)      | the heuristic outcome stands until FORGET              |
 */
import { TX_COMMITTED_KEYS_MAX } from "../../limits.ts";
import { parseTxKey } from "../../protocol/parser.ts";
import type { StateMachine } from "../../store/state_log.ts";
import type { HeuristicOutcome } from "./failure.ts";
import {
  type CommitTx,
  decodeTxRecord,
  encodeTxRecord,
  type PreparedTx,
  type TxRecord,
} from "./tx_record.ts";

export class TxState implements StateMachine {
  /** Prepared XA branches awaiting their outcome, by transaction number. */
  readonly prepared = new Map<number, PreparedTx>();
  /** Commits whose batches may not all be in their partitions yet, by transaction number. */
  readonly pending = new Map<number, CommitTx>();
  /** Heuristic outcomes by XID text, until the transaction manager FORGETs them. */
  readonly heuristics = new Map<string, HeuristicOutcome>();
  /**
   * Keys of the last TX_COMMITTED_KEYS_MAX commits, oldest first: a COMMIT that a node sends
   * again to the next coordinator (its first coordinator stopped leading before answering) is
   * answered from here, so the client hears "committed", never "not started", once it was.
   */
  readonly committed = new Set<string>();
  #nextTx = 1;
  #highestMessageId: bigint | undefined;

  /** First transaction number no record has used. */
  get nextTx(): number {
    return this.#nextTx;
  }

  /** Highest message id in the journal, so new ids stay above it after a restart. */
  get highestMessageId(): bigint | undefined {
    return this.#highestMessageId;
  }

  apply(data: Uint8Array, offset: number): boolean {
    const record = decodeTxRecord(data);
    if (record.type === "snapshot") {
      if (record.base !== offset) return false; // a snapshot found elsewhere is ignored
      this.prepared.clear();
      this.pending.clear();
      this.heuristics.clear();
      this.committed.clear();
      for (const key of record.committed) this.#remember(key);
      for (const tx of record.prepared) this.#prepare(tx);
      for (const tx of record.commits) this.#commit(tx);
      for (const entry of record.heuristics) this.heuristics.set(entry.key, entry.outcome);
      this.#nextTx = Math.max(this.#nextTx, record.nextTx);
      return true;
    }
    this.#applyChange(record);
    return false;
  }

  snapshot(base: number): Uint8Array {
    return encodeTxRecord({
      type: "snapshot",
      base,
      nextTx: this.#nextTx,
      prepared: [...this.prepared.values()],
      commits: [...this.pending.values()],
      heuristics: [...this.heuristics].map(([key, outcome]) => ({ key, outcome })),
      committed: [...this.committed],
    });
  }

  #applyChange(record: Exclude<TxRecord, { type: "snapshot" }>): void {
    switch (record.type) {
      case "prepare":
        return this.#prepare(record);
      case "commit":
        this.prepared.delete(record.tx);
        return this.#commit(record);
      case "applied":
        this.pending.delete(record.tx);
        return;
      case "rollback":
        this.prepared.delete(record.tx);
        this.#seen(record.tx);
        return;
      case "heuristic":
        this.heuristics.set(record.key, record.outcome);
        return;
      case "forget":
        this.heuristics.delete(record.key);
        return;
    }
  }

  #prepare(tx: PreparedTx): void {
    checkKey(tx);
    this.prepared.set(tx.tx, strip(tx));
    this.#seen(tx.tx, tx);
  }

  #commit(tx: CommitTx): void {
    checkKey(tx);
    this.pending.set(tx.tx, { ...strip(tx), wasPrepared: tx.wasPrepared, targets: tx.targets });
    this.#remember(tx.key);
    this.#seen(tx.tx, tx);
  }

  /** The journalled commit of the transaction `key` that is not known to be applied yet. */
  pendingCommitOf(key: string): CommitTx | undefined {
    for (const commit of this.pending.values()) if (commit.key === key) return commit;
    return undefined;
  }

  #remember(key: string): void {
    this.committed.delete(key); // a key used again moves to the newest end
    this.committed.add(key);
    if (this.committed.size > TX_COMMITTED_KEYS_MAX) {
      this.committed.delete(this.committed.values().next().value!);
    }
  }

  #seen(number: number, tx?: PreparedTx): void {
    this.#nextTx = Math.max(this.#nextTx, number + 1);
    for (const message of tx?.messages ?? []) {
      if (this.#highestMessageId === undefined || message.id > this.#highestMessageId) {
        this.#highestMessageId = message.id;
      }
    }
  }
}

/** A record whose key does not parse is damage: stop rather than guess (assert-like). */
function checkKey(tx: PreparedTx): void {
  const key = parseTxKey(tx.key);
  if (key.kind === "null") throw new Error(`transaction ${tx.tx} has the null key`);
}

function strip(tx: PreparedTx): PreparedTx {
  return { tx: tx.tx, key: tx.key, messages: tx.messages };
}

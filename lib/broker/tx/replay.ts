/**
 * @module Replay: the records of the live journal file, in order, folded into what recovery
 * must act on. Pure. The recovery table (what happens to each transaction after a crash):
 *
 * | last record of the transaction          | after restart                                   |
 * |-----------------------------------------|-------------------------------------------------|
 * | put (never prepared, never committed)   | rolled back (local or XA): its puts are dropped |
 * | prepare (XA)                            | PREPARED again; RECOVER lists it; the client or |
 * |                                         | an operator commits or rolls it back            |
 * | commit                                  | each batch checked at its recorded location and |
 * |                                         | completed exactly once (reconcile.ts)           |
 * | rollback                                | gone                                            |
 * | heuristic / forget (by XID)             | the heuristic outcome stands until FORGET       |
 */
import { parseTxKey } from "../../protocol/parser.ts";
import type { HeuristicOutcome } from "./failure.ts";
import type { BatchLocation, TxRecord } from "./journal_record.ts";
import type { OpenTxKey, TxMessage } from "./state.ts";

export interface RecoveredTransaction {
  readonly number: number;
  readonly key: OpenTxKey;
  readonly messages: TxMessage[];
  prepared: boolean;
  /** The latest commit record: where its batches were put. */
  commit:
    | { readonly wasPrepared: boolean; readonly locations: readonly BatchLocation[] }
    | undefined;
}

export interface ReplayResult {
  /** Never prepared nor committed: to be rolled back. */
  readonly unfinished: RecoveredTransaction[];
  /** Prepared XA transactions awaiting their outcome. */
  readonly prepared: RecoveredTransaction[];
  /** Committed: their batches must be checked against the partition logs. */
  readonly committed: RecoveredTransaction[];
  readonly heuristics: Map<string, HeuristicOutcome>;
  /** First transaction number not used by any record. */
  readonly nextTxNumber: number;
  /** Highest message id in the journal, so new ids stay above it. */
  readonly highestMessageId: bigint | undefined;
}

export class ReplayError extends Error {
  override readonly name = "ReplayError";
}

export function replay(records: readonly TxRecord[]): ReplayResult {
  const transactions = new Map<number, RecoveredTransaction>();
  const heuristics = new Map<string, HeuristicOutcome>();
  let nextTxNumber = 1;
  let highestMessageId: bigint | undefined;
  for (const record of records) {
    if ("tx" in record) nextTxNumber = Math.max(nextTxNumber, record.tx + 1);
    switch (record.type) {
      case "file":
        break;
      case "checkpoint":
        nextTxNumber = Math.max(nextTxNumber, record.nextTxNumber);
        break;
      case "put": {
        const tx = transactions.get(record.tx) ?? recovered(record.tx, record.key);
        transactions.set(record.tx, tx);
        tx.messages.push(record.message);
        const id = record.message.id;
        if (highestMessageId === undefined || id > highestMessageId) highestMessageId = id;
        break;
      }
      case "prepare": {
        // A branch whose only puts failed is prepared with no puts (MetaQ marks it in use).
        const tx = transactions.get(record.tx) ?? recovered(record.tx, record.key);
        transactions.set(record.tx, tx);
        if (tx.key.kind !== "xa") throw new ReplayError(`prepare of local ${record.key}`);
        tx.prepared = true;
        break;
      }
      case "commit": {
        const tx = transactions.get(record.tx) ?? recovered(record.tx, record.key);
        transactions.set(record.tx, tx);
        tx.commit = { wasPrepared: record.wasPrepared, locations: record.locations };
        break;
      }
      case "rollback":
        transactions.delete(record.tx);
        break;
      case "heuristic":
        heuristics.set(record.key, record.outcome);
        break;
      case "forget":
        heuristics.delete(record.key);
        break;
    }
  }
  const all = [...transactions.values()];
  return {
    unfinished: all.filter((tx) => !tx.commit && !tx.prepared),
    prepared: all.filter((tx) => !tx.commit && tx.prepared),
    committed: all.filter((tx) => tx.commit !== undefined),
    heuristics,
    nextTxNumber,
    highestMessageId,
  };
}

function recovered(number: number, keyText: string): RecoveredTransaction {
  let key;
  try {
    key = parseTxKey(keyText);
  } catch (error) {
    throw new ReplayError(`transaction ${number} has an invalid key: ${(error as Error).message}`);
  }
  if (key.kind === "null") throw new ReplayError(`transaction ${number} has the null key`);
  return { number, key, messages: [], prepared: false, commit: undefined };
}

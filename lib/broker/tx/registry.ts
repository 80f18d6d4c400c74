/**
 * @module The tables of open transactions, as MetaQ keeps them: XA branches broker-wide by XID,
 * local transactions per connection by key, and the heuristic outcomes operators forced, by
 * XID. Answers MetaQ's getTransaction lookups, RECOVER and `metaq tx list`, and counts what the
 * limits bound. No I/O, no journal: the manager journals before it changes anything here.
 */
import type { TxKey } from "../../protocol/commands.ts";
import { heuristicFailure, type HeuristicOutcome, notStarted, type TxFailure } from "./failure.ts";
import type { OpenTransaction, OpenTxKey } from "./state.ts";

/** One line of `metaq tx list`. */
export interface TxListing {
  readonly xid: string;
  readonly state: "prepared" | "heuristically committed" | "heuristically rolled back";
  readonly messages: number;
  readonly bytes: number;
}

export class TxRegistry {
  /** Heuristic outcomes by XID text, until the transaction manager FORGETs them. */
  readonly heuristics = new Map<string, HeuristicOutcome>();
  readonly #xa = new Map<string, OpenTransaction>();
  readonly #local = new Map<number, Map<string, OpenTransaction>>();
  #openCount = 0;
  #timedCount = 0;

  /** Open transactions, local and XA. */
  get openCount(): number {
    return this.#openCount;
  }

  /** Open transactions with a timeout (bounded by maxTxTimeoutTimerCapacity). */
  get timedCount(): number {
    return this.#timedCount;
  }

  lookup(key: OpenTxKey, connectionId: number): OpenTransaction | undefined {
    if (key.kind === "xa") return this.#xa.get(key.text);
    return this.#local.get(connectionId)?.get(key.text);
  }

  /** The prepared XA branch `keyText`, if there is one. */
  prepared(keyText: string): OpenTransaction | undefined {
    const tx = this.#xa.get(keyText);
    return tx?.phase === "prepared" ? tx : undefined;
  }

  /** MetaQ's getTransaction: the open transaction, or the failure a client gets for the key. */
  find(key: TxKey, connectionId: number): OpenTransaction | TxFailure {
    if (key.kind === "null") return notStarted("null", key.text);
    const tx = this.lookup(key, connectionId);
    if (tx) return tx;
    const outcome = key.kind === "xa" ? this.heuristics.get(key.text) : undefined;
    if (outcome) return heuristicFailure(outcome, key.text);
    return notStarted(key.kind, key.text);
  }

  add(tx: OpenTransaction): void {
    if (tx.key.kind === "xa") {
      this.#xa.set(tx.key.text, tx);
    } else {
      const connectionId = tx.connectionId!;
      let table = this.#local.get(connectionId);
      if (!table) this.#local.set(connectionId, table = new Map());
      table.set(tx.key.text, tx);
    }
    this.#openCount += 1;
    if (tx.deadlineMs !== undefined) this.#timedCount += 1;
  }

  /** Takes `tx` out of the tables; false when it was not there. */
  remove(tx: OpenTransaction): boolean {
    const removed = tx.key.kind === "xa"
      ? this.#xa.delete(tx.key.text)
      : this.#local.get(tx.connectionId!)?.delete(tx.key.text) ?? false;
    if (!removed) return false;
    this.#openCount -= 1;
    if (tx.deadlineMs !== undefined) this.#timedCount -= 1;
    return true;
  }

  /** The local transactions of a connection (its table is dropped). */
  takeConnection(connectionId: number): OpenTransaction[] {
    const table = this.#local.get(connectionId);
    if (!table) return [];
    this.#local.delete(connectionId);
    const transactions = [...table.values()];
    for (const tx of transactions) {
      this.#openCount -= 1;
      if (tx.deadlineMs !== undefined) this.#timedCount -= 1;
    }
    return transactions;
  }

  *open(): Generator<OpenTransaction> {
    yield* this.#xa.values();
    for (const table of this.#local.values()) yield* table.values();
  }

  /**
   * RECOVER: prepared XIDs whose unique qualifier (the key's last part) is `uniqueQualifier`,
   * or all when it is undefined, then the heuristically completed ones, as MetaQ lists them.
   */
  recover(uniqueQualifier: string | undefined): string[] {
    const matches = (keyText: string) =>
      uniqueQualifier === undefined ||
      keyText.slice(keyText.lastIndexOf(":") + 1) === uniqueQualifier;
    const keys: string[] = [];
    for (const tx of this.#xa.values()) {
      if (tx.phase === "prepared" && matches(tx.key.text)) keys.push(tx.key.text);
    }
    for (const key of this.heuristics.keys()) if (matches(key)) keys.push(key);
    return keys;
  }

  /** Prepared XA branches and heuristic outcomes, for operators. */
  list(): TxListing[] {
    const listing: TxListing[] = [];
    for (const tx of this.#xa.values()) {
      if (tx.phase !== "prepared") continue;
      listing.push({
        xid: tx.key.text,
        state: "prepared",
        messages: tx.messages.length,
        bytes: tx.bytes,
      });
    }
    for (const [xid, outcome] of this.heuristics) {
      const state = outcome === "commit" ? "heuristically committed" : "heuristically rolled back";
      listing.push({ xid, state, messages: 0, bytes: 0 });
    }
    return listing;
  }
}

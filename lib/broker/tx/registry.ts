/**
 * @module The tables of open transactions, as MetaQ keeps them: XA branches broker-wide by XID,
 * local transactions per connection by key. Heuristic outcomes operators forced are the
 * journal's (TxState), read here. Answers MetaQ's getTransaction lookups, RECOVER and
 * `metaq tx list`, and counts what the limits bound. No I/O: the manager journals first.
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
  readonly heuristics: ReadonlyMap<string, HeuristicOutcome>;
  readonly #xa = new Map<string, OpenTransaction>();
  readonly #local = new Map<string, Map<string, OpenTransaction>>();
  #openCount = 0;
  #timedCount = 0;

  constructor(heuristics: ReadonlyMap<string, HeuristicOutcome>) {
    this.heuristics = heuristics;
  }

  /** Open transactions, local and XA. */
  get openCount(): number {
    return this.#openCount;
  }

  /** Open transactions with a timeout (bounded by maxTxTimeoutTimerCapacity). */
  get timedCount(): number {
    return this.#timedCount;
  }

  lookup(key: OpenTxKey, connection: string): OpenTransaction | undefined {
    if (key.kind === "xa") return this.#xa.get(key.text);
    return this.#local.get(connection)?.get(key.text);
  }

  /** The prepared XA branch `keyText`, if there is one. */
  prepared(keyText: string): OpenTransaction | undefined {
    const tx = this.#xa.get(keyText);
    return tx?.phase === "prepared" ? tx : undefined;
  }

  /** MetaQ's getTransaction: the open transaction, or the failure a client gets for the key. */
  find(key: TxKey, connection: string): OpenTransaction | TxFailure {
    if (key.kind === "null") return notStarted("null", key.text);
    const tx = this.lookup(key, connection);
    if (tx) return tx;
    const outcome = key.kind === "xa" ? this.heuristics.get(key.text) : undefined;
    if (outcome) return heuristicFailure(outcome, key.text);
    return notStarted(key.kind, key.text);
  }

  add(tx: OpenTransaction): void {
    if (tx.key.kind === "xa") {
      this.#xa.set(tx.key.text, tx);
    } else {
      const connection = tx.connection!;
      let table = this.#local.get(connection);
      if (!table) this.#local.set(connection, table = new Map());
      table.set(tx.key.text, tx);
    }
    this.#openCount += 1;
    if (tx.deadlineMs !== undefined) this.#timedCount += 1;
  }

  /** Takes `tx` out of the tables; false when it was not there. */
  remove(tx: OpenTransaction): boolean {
    const removed = tx.key.kind === "xa"
      ? this.#xa.delete(tx.key.text)
      : this.#local.get(tx.connection!)?.delete(tx.key.text) ?? false;
    if (!removed) return false;
    this.#openCount -= 1;
    if (tx.deadlineMs !== undefined) this.#timedCount -= 1;
    return true;
  }

  /** The local transactions of a connection (its table is dropped). */
  takeConnection(connection: string): OpenTransaction[] {
    const table = this.#local.get(connection);
    if (!table) return [];
    this.#local.delete(connection);
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

/**
 * @module The state of one open transaction and MetaQ's rules for moving it (its Transaction,
 * LocalTransaction and XATransaction classes): START → IN_USE (first put) → PREPARED (XA only)
 * → finished. A finished transaction is removed, so "finished" is not a phase here. Each
 * `decide*` function is pure: it reads a transaction and says what the command does, or which
 * failure MetaQ answers; the manager carries that out. Not here: journal, partitions, replies.
 */
import type { TxKey } from "../../protocol/commands.ts";
import { XA } from "../../protocol/xa.ts";
import { type TxFailure, xaFailure } from "./failure.ts";

export type OpenTxKey = Exclude<TxKey, { kind: "null" }>;

/** MetaQ's START_STATE, IN_USE_STATE and PREPARED_STATE. */
export type TxPhase = "start" | "inUse" | "prepared";

/** A message put inside a transaction: its id is given at put time, its offset at commit. */
export interface TxMessage {
  readonly topic: string;
  readonly partition: number;
  readonly id: bigint;
  readonly flag: number;
  readonly data: Uint8Array;
}

export interface OpenTransaction {
  /** Number naming the transaction in the journal (local keys can repeat). */
  readonly number: number;
  readonly key: OpenTxKey;
  /**
   * Connection that began a local transaction (`<node>:<connection>`, see connectionKey);
   * XA transactions belong to no connection.
   */
  readonly connection: string | undefined;
  phase: TxPhase;
  readonly messages: TxMessage[];
  /** Message data bytes held. */
  bytes: number;
  /** Monotonic deadline of an unprepared transaction; undefined = no timeout. */
  deadlineMs: number | undefined;
}

export type PrepareDecision =
  | { readonly kind: "readOnly" }
  | { readonly kind: "prepare" }
  | { readonly kind: "failed"; readonly failure: TxFailure };

export type CommitDecision =
  /** Nothing to append: the transaction just finishes. */
  | { readonly kind: "empty" }
  | { readonly kind: "commit"; readonly wasPrepared: boolean }
  | { readonly kind: "failed"; readonly failure: TxFailure };

/** PREPARE: XA_RDONLY without work, XA_OK with work, refused for local and prepared ones. */
export function decidePrepare(tx: OpenTransaction): PrepareDecision {
  if (tx.key.kind === "local") {
    return failed(xaFailure(XA.RMERR, "Prepare not implemented on Local Transactions."));
  }
  switch (tx.phase) {
    case "start":
      return { kind: "readOnly" };
    case "inUse":
      return { kind: "prepare" };
    case "prepared":
      return failed(xaFailure(XA.PROTO, "Cannot call prepare now."));
  }
}

/**
 * COMMIT_ONE_PHASE / COMMIT_TWO_PHASE. A local transaction commits either way (MetaQ ignores
 * the flag); an XA one needs PREPARE before a two-phase commit, and may commit a prepared
 * transaction in one phase too, as MetaQ allows.
 */
export function decideCommit(tx: OpenTransaction, onePhase: boolean): CommitDecision {
  const work = tx.messages.length > 0;
  if (tx.key.kind === "local") {
    if (tx.phase === "prepared") {
      return failed(xaFailure(XA.PROTO, "Prepare cannot be called now."));
    }
    return work ? { kind: "commit", wasPrepared: false } : { kind: "empty" };
  }
  if (tx.phase === "prepared") return { kind: "commit", wasPrepared: true };
  if (!onePhase) {
    return failed(
      xaFailure(XA.PROTO, "Cannot do 2 phase commit if the transaction has not been prepared."),
    );
  }
  return work ? { kind: "commit", wasPrepared: false } : { kind: "empty" };
}

/** Why a put cannot join this transaction, or undefined when it can. */
export function refusePut(
  tx: OpenTransaction,
  dataBytes: number,
  limits: { messagesMax: number; bytesMax: number },
): TxFailure | undefined {
  const key = tx.key.text;
  if (tx.phase === "prepared") {
    return xaFailure(XA.PROTO, `Cannot add message to transaction '${key}': it is prepared`);
  }
  if (tx.messages.length >= limits.messagesMax) {
    return xaFailure(
      XA.RMERR,
      `Cannot add message to transaction '${key}': it holds ${limits.messagesMax} messages, the most allowed`,
    );
  }
  if (tx.bytes + dataBytes > limits.bytesMax) {
    return xaFailure(
      XA.RMERR,
      `Cannot add message to transaction '${key}': it would hold more than ${limits.bytesMax} bytes`,
    );
  }
  return undefined;
}

/** Timeouts roll back only what is not prepared: a prepared branch waits for its manager. */
export function isExpired(tx: OpenTransaction, nowMs: number): boolean {
  return tx.phase !== "prepared" && tx.deadlineMs !== undefined && nowMs >= tx.deadlineMs;
}

/** MetaQ caps the client's timeout at maxTxTimeoutInSeconds; 0 (or less) means none. */
export function deadlineFor(
  nowMs: number,
  timeoutSeconds: number,
  maxSeconds: number,
): number | undefined {
  if (timeoutSeconds <= 0) return undefined;
  return nowMs + Math.min(timeoutSeconds, maxSeconds) * 1000;
}

/** Messages grouped by partition (`topic-partition`), in first-appearance order. */
export function messagesByPartition(
  messages: readonly TxMessage[],
): Map<string, TxMessage[]> {
  const groups = new Map<string, TxMessage[]>();
  for (const message of messages) {
    const name = `${message.topic}-${message.partition}`;
    const group = groups.get(name);
    if (group) group.push(message);
    else groups.set(name, [message]);
  }
  return groups;
}

function failed(failure: TxFailure): { kind: "failed"; failure: TxFailure } {
  return { kind: "failed", failure };
}

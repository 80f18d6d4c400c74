/**
 * @module TransactionManager: MetaQ's `transaction` command and transactional puts, as its
 * TransactionalCommandProcessor answers them, on the node that writes the transaction journal
 * (`__tx-0`; the only node on a broker that runs alone). XA transactions live in one table (a
 * transaction manager may finish them from any connection, through any node); local ones in a
 * table per client connection, and (unlike MetaQ, whose listener for this was never
 * registered) they are rolled back as soon as their connection closes.
 *
 * What must outlive this coordinator is journalled before the reply: a PREPARE (with the
 * branch's messages), a commit (with where its batches go), a prepared branch's rollback, and
 * heuristic outcomes. A commit then appends each partition's batch through the PartitionWriter
 * (on the partition's leader, wherever it is), exactly once, and journals `applied`. Decisions
 * come from state.ts; the journal's meaning from tx_state.ts.
 */
import { BrokerError, describeError } from "../../errors.ts";
import type { Clock } from "../../clock.ts";
import { TX_BYTES_MAX, TX_HELD_BYTES_MAX, TX_MESSAGES_MAX, TX_OPEN_MAX } from "../../limits.ts";
import type { Logger } from "../../log.ts";
import type { PutCommand, TransactionCommand } from "../../protocol/commands.ts";
import { parseTxKey } from "../../protocol/parser.ts";
import {
  connectionKey,
  errorReply,
  type RequestContext,
  type Respond,
  result,
} from "../../protocol/reply.ts";
import { XA } from "../../protocol/xa.ts";
import { OUTCOME_AT_NEXT_LEADER } from "../../protocol/command_table.ts";
import type { Broker } from "../broker.ts";
import type { StateLog } from "../../store/state_log.ts";
import { encodeBatches } from "./batch.ts";
import {
  commandFailureText,
  type HeuristicOutcome,
  plainFailure,
  putFailureText,
  type TxFailure,
  xaFailure,
} from "./failure.ts";
import { type TxListing, TxRegistry } from "./registry.ts";
import {
  deadlineFor,
  decideCommit,
  decidePrepare,
  isExpired,
  type OpenTransaction,
  type OpenTxKey,
  refusePut,
  type TxMessage,
} from "./state.ts";
import type { CommitTx } from "./tx_record.ts";
import { encodeTxRecord, type TxRecord } from "./tx_record.ts";
import type { TxState } from "./tx_state.ts";

/** Appends a commit's batches to their partitions, wherever their leaders are. */
export interface PartitionWriter {
  /**
   * Appends the records of `batch` that `topic`-`partition` does not hold at or after `since`;
   * resolves once every record of the batch is readable there. Rejects with a BrokerError.
   */
  appendMissing(topic: string, partition: number, batch: Uint8Array, since: number): Promise<void>;
  /** Where a batch for the partition can first land: its readable end as this node knows it. */
  sinceOf(topic: string, partition: number): number;
  /**
   * TEST ONLY (METAQ_TEST_CRASH_AFTER_COMMIT_BYTES): writes `bytes` (a prefix of a batch, so
   * possibly a torn record) straight to the local partition, then resolves once written.
   */
  appendRawForTest?(topic: string, partition: number, bytes: Uint8Array): Promise<void>;
}

export interface ManagerOptions {
  readonly broker: Broker;
  readonly journal: StateLog;
  readonly state: TxState;
  readonly writer: PartitionWriter;
  readonly clock: Clock;
  readonly logger: Logger;
  /** This node's id, for connection keys (0 on a broker that runs alone). */
  readonly nodeId: number;
  /** TEST ONLY: append this many bytes of the next commit's batches, then call `crash`. */
  readonly crashAfterCommitBytes?: number;
  readonly crash?: () => void;
}

export class TransactionManager {
  readonly #options: ManagerOptions;
  readonly #broker: Broker;
  readonly #registry: TxRegistry;
  /** Commits being completed now, by number (a retry joins the attempt in progress). */
  readonly #completing = new Map<number, Promise<void>>();
  #nextTx: number;
  #heldBytes = 0;
  #closed = false;

  constructor(options: ManagerOptions) {
    this.#options = options;
    this.#broker = options.broker;
    this.#registry = new TxRegistry(options.state.heuristics);
    this.#nextTx = options.state.nextTx;
    for (const prepared of options.state.prepared.values()) this.#adoptPrepared(prepared);
    const highest = options.state.highestMessageId;
    if (highest !== undefined) options.broker.ids.observe(highest);
  }

  /** Open (begun, not finished) transactions, local and XA. */
  get openCount(): number {
    return this.#registry.openCount;
  }

  /** Message bytes held by open and prepared transactions. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** Commits journalled whose batches are not known to be in their partitions yet. */
  get pendingCommitCount(): number {
    return this.#options.state.pending.size;
  }

  /** This node stopped coordinating: nothing more is journalled or answered from here. */
  close(): void {
    this.#closed = true;
  }

  /** Every `transaction` command arrives here. */
  handle(command: TransactionCommand, context: RequestContext, respond: Respond): void {
    const fail = (failure: TxFailure) =>
      respond(errorReply(BrokerError.verbatim("transactionFailed", commandFailureText(failure))));
    switch (command.type) {
      case "BEGIN":
        return this.#begin(command, context, respond, fail);
      case "END":
        return; // one-way in MetaQ: nothing to do and nothing to answer
      case "PREPARE":
        return this.#prepare(command, context, respond, fail);
      case "COMMIT_ONE_PHASE":
      case "COMMIT_TWO_PHASE":
        return this.#commit(command, context, respond, fail);
      case "ROLLBACK":
        return this.#rollback(command, context, respond, fail);
      case "RECOVER":
        return respond(result(200, this.#registry.recover(command.uniqueQualifier).join("\r\n")));
      case "FORGET":
        return this.#forget(command, respond, fail);
    }
  }

  /**
   * A COMMIT another node sends again here, the next coordinator, because the one it first went
   * to stopped leading before it answered: that one may have journalled the commit. The journal
   * says so (the commit is among the recent ones, or still being completed): then it is
   * answered as committed, once its batches are in. Otherwise it was not journalled, and never
   * will be (this coordinator applied everything its predecessor committed before starting):
   * answered as a first COMMIT here (a prepared branch commits; an open one is gone).
   */
  commitAgain(command: TransactionCommand, context: RequestContext, respond: Respond): void {
    const key = command.txKey.text;
    const open = command.txKey.kind !== "null" &&
      this.#registry.lookup(command.txKey, this.#connection(context));
    if (open) return this.handle(command, context, respond);
    const pending = this.#options.state.pendingCommitOf(key);
    if (pending) {
      this.#complete(pending).then(
        () => respond(result(200)),
        (error) =>
          respond(errorReply(BrokerError.verbatim(
            "transactionFailed",
            commandFailureText(xaFailure(
              XA.RMERR,
              `Cannot append committed transaction '${key}': ${describeError(error)}; ` +
                "it is journalled and will be completed",
            )),
          ))),
      );
      return;
    }
    if (this.#options.state.committed.has(key)) return respond(result(200));
    this.handle(command, context, respond);
  }

  /** A put carrying a transaction key: held until commit, answered with offset -1. */
  put(command: PutCommand, context: RequestContext, done: Respond): void {
    this.#broker.stats.counters.cmdPut += 1; // MetaQ counts a transactional put as a put
    const fail = (failure: TxFailure) =>
      done(errorReply(BrokerError.verbatim("transactionFailed", putFailureText(failure))));
    const found = this.#registry.find(command.txKey!, this.#connection(context));
    if ("message" in found) return fail(found);
    const tx = found;
    if (tx.phase === "start") tx.phase = "inUse"; // MetaQ marks it before any other check
    if (command.partition === -1) {
      return fail(plainFailure("Invalid partition for transaction command:-1"));
    }
    const checked = this.#broker.checkPut(command);
    if (!checked.ok) return done(checked.reply);
    const refused = refusePut(tx, command.body.length, {
      messagesMax: TX_MESSAGES_MAX,
      bytesMax: TX_BYTES_MAX,
    }) ?? this.#refuseHeld(command.body.length);
    if (refused) return fail(refused);
    const { partition, settings } = checked;
    const message: TxMessage = {
      topic: command.topic,
      partition,
      id: this.#broker.ids.next(),
      flag: command.flag,
      data: command.body,
    };
    tx.messages.push(message);
    tx.bytes += message.data.length;
    this.#heldBytes += message.data.length;
    this.#broker.countPut(command.topic, partition, message.data.length, settings);
    done(result(200, `${message.id} ${partition} -1`));
  }

  /** Rolls back the local transactions of a client connection that closed. */
  connectionClosed(context: RequestContext): void {
    for (const tx of this.#registry.takeConnection(this.#connection(context))) {
      this.#logger("info", "Rolling back transaction: its connection closed", tx);
      this.#drop(tx);
    }
  }

  /** Rolls back every unprepared transaction past its timeout (called by a timer). */
  expire(): void {
    const now = this.#options.clock.monotonicMs();
    for (const tx of [...this.#registry.open()]) {
      if (!isExpired(tx, now)) continue;
      this.#logger("info", "Rolling back transaction: it timed out", tx);
      this.#registry.remove(tx);
      this.#drop(tx);
    }
  }

  /**
   * Completes every journalled commit not yet applied (at start, then by a timer); resolves
   * when each has been tried once. A failure is logged: the next call tries again.
   */
  async completePending(): Promise<void> {
    const attempts = [...this.#options.state.pending.values()]
      .filter((commit) => !this.#completing.has(commit.tx))
      .map((commit) =>
        this.#complete(commit).catch((error) =>
          this.#options.logger.log("warn", "Cannot complete a committed transaction yet", {
            transaction: commit.key,
            reason: describeError(error),
          })
        )
      );
    await Promise.all(attempts);
  }

  /** Prepared XA branches and heuristic outcomes, for operators. */
  list(): TxListing[] {
    return this.#registry.list();
  }

  /**
   * Commits or rolls back a prepared XA transaction on an operator's word (MetaQ's JMX
   * commitTransactionHeuristically / rollbackTransactionHeuristically). Its XID then answers
   * XA_HEURCOM or XA_HEURRB until the transaction manager sends FORGET.
   */
  async completeHeuristically(
    keyText: string,
    outcome: HeuristicOutcome,
  ): Promise<TxFailure | undefined> {
    const tx = this.#registry.prepared(keyText);
    if (!tx) {
      return plainFailure(
        `Cannot ${outcome} ${keyText} heuristically: no such prepared transaction`,
      );
    }
    return outcome === "commit"
      ? await this.#commitTransaction(tx, true, outcome)
      : await this.#rollbackPrepared(tx, outcome);
  }

  #begin(command: TransactionCommand, context: RequestContext, respond: Respond, fail: Fail) {
    const counters = this.#broker.stats.counters;
    counters.txBegin += 1;
    const key = command.txKey;
    if (key.kind === "xa") counters.txXaBegin += 1;
    if (key.kind === "null") {
      return fail(plainFailure("Cannot begin transaction: the key 'null' names no transaction"));
    }
    const connection = this.#connection(context);
    if (this.#registry.lookup(key, connection)) return respond(result(200));
    const system = this.#broker.config.system;
    const now = this.#options.clock.monotonicMs();
    const deadlineMs = deadlineFor(now, command.timeout, system.maxTxTimeoutInSeconds);
    const { openCount, timedCount } = this.#registry;
    if (openCount >= TX_OPEN_MAX) {
      return fail(plainFailure(`Cannot begin ${key.text}: ${TX_OPEN_MAX} transactions are open`));
    }
    if (deadlineMs !== undefined && timedCount >= system.maxTxTimeoutTimerCapacity) {
      return fail(
        plainFailure(
          `Cannot begin ${key.text}: ${timedCount} transactions with timeouts are open (maxTxTimeoutTimerCapacity)`,
        ),
      );
    }
    const number = this.#nextTx++;
    this.#registry.add({
      number,
      key,
      connection: key.kind === "local" ? connection : undefined,
      phase: "start",
      messages: [],
      bytes: 0,
      deadlineMs,
    });
    respond(result(200));
  }

  #prepare(command: TransactionCommand, context: RequestContext, respond: Respond, fail: Fail) {
    const found = this.#registry.find(command.txKey, this.#connection(context));
    if ("message" in found) return fail(found);
    const tx = found;
    const decision = decidePrepare(tx);
    if (decision.kind === "failed") return fail(decision.failure);
    if (decision.kind === "readOnly") {
      this.#registry.remove(tx);
      return respond(result(200, String(XA.RDONLY)));
    }
    // Prepared once the record is durable; until then the branch takes no other command.
    tx.phase = "prepared";
    const record: TxRecord = {
      type: "prepare",
      tx: tx.number,
      key: tx.key.text,
      messages: tx.messages,
    };
    this.#journal(record).then(
      () => respond(result(200, String(XA.OK))),
      (error) => {
        tx.phase = "inUse";
        fail(xaFailure(XA.RMERR, `Cannot prepare '${tx.key.text}': ${describeError(error)}`));
      },
    );
  }

  #commit(command: TransactionCommand, context: RequestContext, respond: Respond, fail: Fail) {
    this.#broker.stats.counters.txCommit += 1;
    const found = this.#registry.find(command.txKey, this.#connection(context));
    if ("message" in found) return fail(found);
    const decision = decideCommit(found, command.type === "COMMIT_ONE_PHASE");
    if (decision.kind === "failed") return fail(decision.failure);
    if (decision.kind === "empty") {
      this.#registry.remove(found);
      return respond(result(200));
    }
    this.#commitTransaction(found, decision.wasPrepared).then(
      (failure) => failure ? fail(failure) : respond(result(200)),
      (error) => fail(xaFailure(XA.RMERR, describeError(error))),
    );
  }

  /**
   * Takes `tx` out of the open tables, journals its commit, then appends its batches. Resolves
   * with a failure or nothing. A commit that could not be journalled is rolled back (a
   * prepared branch stays prepared in the journal: only an explicit outcome may end it).
   */
  async #commitTransaction(
    tx: OpenTransaction,
    wasPrepared: boolean,
    heuristic?: HeuristicOutcome,
  ): Promise<TxFailure | undefined> {
    this.#registry.remove(tx);
    this.#heldBytes -= tx.bytes;
    const writer = this.#options.writer;
    const targets = encodeBatches(tx.messages).map((batch) => ({
      topic: batch.topic,
      partition: batch.partition,
      since: writer.sinceOf(batch.topic, batch.partition),
    }));
    const commit: CommitTx = {
      tx: tx.number,
      key: tx.key.text,
      wasPrepared,
      targets,
      messages: tx.messages,
    };
    try {
      await this.#journal({ type: "commit", ...commit });
      if (heuristic) {
        await this.#journal({ type: "heuristic", key: tx.key.text, outcome: heuristic });
      }
    } catch (error) {
      this.#logger("error", "Cannot journal a commit", tx, describeError(error));
      if (!surelyNotAppended(error)) {
        // Leadership of the journal was lost with the record on its way: it may still be
        // committed by the next coordinator, which alone can tell (a COMMIT sent there again).
        return xaFailure(
          XA.RMERR,
          `Cannot tell whether '${tx.key.text}' committed: ${describeError(error)}; ` +
            OUTCOME_AT_NEXT_LEADER,
        );
      }
      if (wasPrepared) {
        this.#adoptPrepared({ tx: tx.number, key: tx.key.text, messages: tx.messages });
        return xaFailure(XA.RMERR, `Cannot commit '${tx.key.text}' now: ${describeError(error)}`);
      }
      return xaFailure(XA.RBOTHER, "STORE COMMIT FAILED: Transaction rolled back.");
    }
    try {
      await this.#complete(commit);
    } catch (error) {
      this.#logger("error", "Committed transaction not fully appended", tx, describeError(error));
      return xaFailure(
        XA.RMERR,
        `Cannot append committed transaction '${tx.key.text}': ${describeError(error)}; ` +
          "it is journalled and will be completed",
      );
    }
    return undefined;
  }

  /** Appends each batch of a journalled commit (only what is missing), then journals `applied`. */
  #complete(commit: CommitTx): Promise<void> {
    const running = this.#completing.get(commit.tx);
    if (running) return running;
    const completion = this.#appendCommit(commit).finally(() => this.#completing.delete(commit.tx));
    this.#completing.set(commit.tx, completion);
    return completion;
  }

  async #appendCommit(commit: CommitTx): Promise<void> {
    const batches = encodeBatches(commit.messages);
    const { writer, crashAfterCommitBytes, crash } = this.#options;
    if (crashAfterCommitBytes !== undefined) {
      // On a cluster nothing is appended by hand: the crash comes right after the journal.
      let budget = writer.appendRawForTest ? crashAfterCommitBytes : 0;
      for (const batch of batches) {
        if (budget <= 0) break;
        const bytes = batch.bytes.subarray(0, Math.min(budget, batch.bytes.length));
        budget -= bytes.length;
        await writer.appendRawForTest!(batch.topic, batch.partition, bytes);
      }
      crash?.();
      return;
    }
    await Promise.all(batches.map((batch) => {
      const target = commit.targets.find((t) =>
        t.topic === batch.topic && t.partition === batch.partition
      );
      return writer.appendMissing(batch.topic, batch.partition, batch.bytes, target?.since ?? 0);
    }));
    // Not awaited by the client: the batches are readable; a lost `applied` only means the
    // next coordinator checks them once more and finds them there.
    this.#journal({ type: "applied", tx: commit.tx }).catch(() => {});
  }

  #rollback(command: TransactionCommand, context: RequestContext, respond: Respond, fail: Fail) {
    this.#broker.stats.counters.txRollback += 1;
    const found = this.#registry.find(command.txKey, this.#connection(context));
    if ("message" in found) return fail(found);
    if (found.phase !== "prepared") {
      this.#registry.remove(found);
      this.#drop(found);
      return respond(result(200));
    }
    this.#rollbackPrepared(found).then(
      (failure) => failure ? fail(failure) : respond(result(200)),
      (error) => fail(xaFailure(XA.RMERR, describeError(error))),
    );
  }

  /** Journals the rollback of a prepared branch, then drops it. */
  async #rollbackPrepared(
    tx: OpenTransaction,
    heuristic?: HeuristicOutcome,
  ): Promise<TxFailure | undefined> {
    try {
      await this.#journal({ type: "rollback", tx: tx.number, key: tx.key.text });
      if (heuristic) {
        await this.#journal({ type: "heuristic", key: tx.key.text, outcome: heuristic });
      }
    } catch (error) {
      return xaFailure(XA.RMERR, `Cannot roll back '${tx.key.text}' now: ${describeError(error)}`);
    }
    if (this.#registry.remove(tx)) this.#heldBytes -= tx.bytes;
    return undefined;
  }

  #forget(command: TransactionCommand, respond: Respond, fail: Fail) {
    const key = command.txKey;
    if (key.kind !== "xa") return fail(xaFailure(XA.NOTA, `${key.text} is not a valid xid`));
    if (!this.#registry.heuristics.has(key.text)) return respond(result(200));
    this.#journal({ type: "forget", key: key.text }).then(
      () => respond(result(200)),
      (error) => fail(xaFailure(XA.RMERR, describeError(error))),
    );
  }

  #adoptPrepared(prepared: { tx: number; key: string; messages: readonly TxMessage[] }): void {
    const key = parseKey(prepared.key);
    const messages = [...prepared.messages];
    const bytes = messages.reduce((sum, message) => sum + message.data.length, 0);
    this.#registry.add({
      number: prepared.tx,
      key,
      connection: undefined,
      phase: "prepared",
      messages,
      bytes,
      deadlineMs: undefined,
    });
    this.#heldBytes += bytes;
  }

  /** Forgets an unprepared transaction: nothing of it was journalled. */
  #drop(tx: OpenTransaction): void {
    this.#heldBytes -= tx.bytes;
  }

  #refuseHeld(bytes: number): TxFailure | undefined {
    if (this.#heldBytes + bytes <= TX_HELD_BYTES_MAX) return undefined;
    return xaFailure(
      XA.RMERR,
      `Cannot add message: open transactions already hold ${this.#heldBytes} bytes`,
    );
  }

  /** Journals one record; resolves once it is durable and applied here. */
  async #journal(record: TxRecord): Promise<void> {
    if (this.#closed) {
      throw new BrokerError("unavailable", "this node no longer coordinates transactions");
    }
    await this.#options.journal.append(encodeTxRecord(record));
  }

  #connection(context: RequestContext): string {
    return connectionKey(context, this.#options.nodeId);
  }

  #logger(level: "info" | "error", message: string, tx: OpenTransaction, reason?: string): void {
    this.#options.logger.log(level, message, {
      transaction: tx.key.text,
      messages: tx.messages.length,
      reason,
    });
  }
}

type Fail = (failure: TxFailure) => void;

/** Whether a failed journal append certainly left nothing behind (refused before appending). */
function surelyNotAppended(error: unknown): boolean {
  if (!(error instanceof BrokerError)) return false;
  return error.notAppended || error.kind === "notLeader" || error.kind === "queueFull" ||
    error.kind === "messageTooLarge" || error.kind === "unavailable";
}

/** The key of a journalled transaction (the journal checked it when it was applied). */
function parseKey(text: string): OpenTxKey {
  const key = parseTxKey(text);
  if (key.kind === "null") throw new Error("the journal holds the null key");
  return key;
}

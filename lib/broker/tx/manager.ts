/**
 * @module TransactionManager: MetaQ's `transaction` command and transactional puts, as its
 * TransactionalCommandProcessor answers them. XA transactions live in one broker-wide table
 * (a transaction manager may finish them from any connection); local ones in a table per
 * connection, and (unlike MetaQ, whose listener for this was never registered) they are rolled
 * back as soon as their connection closes. Every put, prepare, commit, rollback and heuristic
 * outcome is journalled; prepare, commit and rollback are made durable before the reply when
 * flushTxLogAtCommit=1. Decisions come from state.ts, the commit path from commit.ts.
 */
import type { Broker, TransactionalPutHandler } from "../broker.ts";
import type { Reply, RequestContext } from "../../protocol/reply.ts";
import { result } from "../../protocol/reply.ts";
import type { Clock } from "../../clock.ts";
import { describeError } from "../../errors.ts";
import {
  TX_BYTES_MAX,
  TX_HELD_BYTES_MAX,
  TX_JOURNAL_FILE_BYTES_MAX,
  TX_MESSAGES_MAX,
  TX_OPEN_MAX,
} from "../../limits.ts";
import type { Logger } from "../../log.ts";
import type { PutCommand, TransactionCommand } from "../../protocol/commands.ts";
import { commitBatches, type CommitParts, isDurable, type PendingCommit } from "./commit.ts";
import {
  commandFailureText,
  type HeuristicOutcome,
  plainFailure,
  putFailureText,
  type TxFailure,
  XA,
  xaFailure,
} from "./failure.ts";
import type { TxJournal } from "./journal.ts";
import type { TxRecord } from "./journal_record.ts";
import { type TxListing, TxRegistry } from "./registry.ts";
import {
  deadlineFor,
  decideCommit,
  decidePrepare,
  isExpired,
  type OpenTransaction,
  refusePut,
} from "./state.ts";

export interface ManagerOptions {
  readonly broker: Broker;
  readonly journal: TxJournal;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Called when the journal cannot be synced: the process must stop (recovery runs next). */
  readonly onFatal: (error: Error) => void;
  /** Journal files are checkpointed once they grow past this (tests use small values). */
  readonly journalFileBytesMax?: number;
  /** TEST ONLY: see CommitParts.crashAfterBytes. */
  readonly crashAfterCommitBytes?: number;
  readonly crash?: () => void;
}

/** What recovery hands over: prepared transactions, heuristic outcomes, blocked commits. */
export interface RecoveredState {
  readonly prepared: readonly OpenTransaction[];
  readonly heuristics: ReadonlyMap<string, HeuristicOutcome>;
  readonly pendingCommits: readonly PendingCommit[];
  readonly nextTxNumber: number;
}

type Respond = (reply: Reply) => void;

export class TransactionManager implements TransactionalPutHandler {
  readonly #options: ManagerOptions;
  readonly #broker: Broker;
  readonly #journal: TxJournal;
  readonly #registry = new TxRegistry();
  readonly #pending = new Set<PendingCommit>();
  /** Committed transactions whose commit record is not written yet. */
  readonly #committing = new Set<OpenTransaction>();
  readonly #commitParts: CommitParts;
  #nextTxNumber: number;
  #heldBytes = 0;
  #checkpointing: Promise<void> | undefined;
  #checkpointQueued = false;

  constructor(options: ManagerOptions, recovered: RecoveredState) {
    this.#options = options;
    this.#broker = options.broker;
    this.#journal = options.journal;
    this.#nextTxNumber = recovered.nextTxNumber;
    for (const tx of recovered.prepared) this.#adopt(tx);
    for (const [key, outcome] of recovered.heuristics) this.#registry.heuristics.set(key, outcome);
    for (const pending of recovered.pendingCommits) this.#pending.add(pending);
    this.#commitParts = {
      store: options.broker.store,
      journal: options.journal,
      syncAtCommit: options.broker.config.system.flushTxLogAtCommit === 1,
      crashAfterBytes: options.crashAfterCommitBytes,
      crash: options.crash ?? (() => {}),
    };
  }

  /** Open (begun, not finished) transactions, local and XA. */
  get openCount(): number {
    return this.#registry.openCount;
  }

  /** Message bytes held by open and prepared transactions. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** The router's transaction handler: every `transaction` command arrives here. */
  handle(command: TransactionCommand, context: RequestContext, respond: Respond): void {
    const fail = (failure: TxFailure) => respond(result(500, commandFailureText(failure)));
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

  /** A put carrying a transaction key: journalled, held until commit, answered with offset -1. */
  put(command: PutCommand, context: RequestContext, _partition: number, done: Respond): void {
    const fail = (failure: TxFailure) => done(result(500, putFailureText(failure)));
    const found = this.#registry.find(command.txKey!, context.connectionId);
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
    const message = {
      topic: command.topic,
      partition,
      id: this.#broker.ids.next(),
      flag: command.flag,
      data: command.body,
    };
    const failure = this.#write([{ type: "put", tx: tx.number, key: tx.key.text, message }]);
    if (failure) return fail(failure);
    tx.messages.push(message);
    tx.bytes += message.data.length;
    this.#heldBytes += message.data.length;
    this.#broker.countPut(command.topic, partition, message.data.length, settings);
    done(result(200, `${message.id} ${partition} -1`));
  }

  /** Rolls back the local transactions of a connection that closed. */
  connectionClosed(context: RequestContext): void {
    for (const tx of this.#registry.takeConnection(context.connectionId)) {
      this.#abandon(tx, "its connection closed");
    }
  }

  /**
   * Rolls back every unprepared transaction past its timeout, and forgets commits whose
   * batches became durable (called by a timer).
   */
  expire(): void {
    const now = this.#options.clock.monotonicMs();
    for (const tx of [...this.#registry.open()]) {
      if (isExpired(tx, now)) this.#abandon(tx, "it timed out");
    }
    for (const pending of [...this.#pending]) if (isDurable(pending)) this.#pending.delete(pending);
  }

  /** Commits journalled and not yet known durable in their partitions. */
  get pendingCommitCount(): number {
    return this.#pending.size;
  }

  /** Prepared XA transactions and heuristic outcomes, for operators. */
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
      : await this.#rollbackTransaction(tx, outcome);
  }

  /** Syncs the journal (flushTxLogAtCommit=2 calls this every second). */
  async syncJournal(): Promise<void> {
    await this.#journal.sync();
  }

  /**
   * The live state as journal records: open transactions' puts (and prepares), commits whose
   * batches may not be durable yet, heuristic outcomes. A new journal file starts with these.
   */
  snapshot(): TxRecord[] {
    const records: TxRecord[] = [];
    for (const tx of this.#allLive()) {
      if (tx.messages.length === 0 && tx.phase !== "prepared") continue;
      const key = tx.key.text;
      for (const message of tx.messages) records.push({ type: "put", tx: tx.number, key, message });
      if (tx.phase === "prepared") records.push({ type: "prepare", tx: tx.number, key });
    }
    for (const pending of [...this.#pending]) {
      if (isDurable(pending)) {
        this.#pending.delete(pending);
        continue;
      }
      const { number, key, messages, wasPrepared } = pending.request;
      for (const message of messages) {
        records.push({ type: "put", tx: number, key: key.text, message });
      }
      const locations = pending.locations;
      records.push({ type: "commit", tx: number, key: key.text, wasPrepared, locations });
    }
    for (const [key, outcome] of this.#registry.heuristics) {
      records.push({ type: "heuristic", key, outcome });
    }
    return records;
  }

  /** Starts a new journal file from a snapshot; one checkpoint runs at a time. */
  checkpoint(): Promise<void> {
    this.#checkpointing ??= (async () => {
      try {
        await this.#journal.checkpoint(this.snapshot(), this.#nextTxNumber);
      } finally {
        this.#checkpointing = undefined;
      }
    })();
    return this.#checkpointing;
  }

  /** Checkpoints when anything was journalled since the last checkpoint (a timer's job). */
  checkpointIfChanged(): Promise<void> {
    return this.#journal.bytesSinceCheckpoint > 0 ? this.checkpoint() : Promise.resolve();
  }

  /** Checkpoints when the active file has grown enough since the last checkpoint. */
  maybeCheckpoint(): void {
    const limit = Math.max(
      this.#options.journalFileBytesMax ?? TX_JOURNAL_FILE_BYTES_MAX,
      this.#journal.checkpointBytes,
    );
    if (this.#journal.bytesSinceCheckpoint < limit || this.#checkpointing) return;
    this.checkpoint().catch((error) => this.#fatalOrLog(error, "Cannot checkpoint"));
  }

  #begin(command: TransactionCommand, context: RequestContext, respond: Respond, fail: Fail) {
    const counters = this.#broker.stats.counters;
    counters.txBegin += 1;
    const key = command.txKey;
    if (key.kind === "xa") counters.txXaBegin += 1;
    if (key.kind === "null") {
      return fail(plainFailure("Cannot begin transaction: the key 'null' names no transaction"));
    }
    if (this.#registry.lookup(key, context.connectionId)) return respond(result(200));
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
    const connectionId = key.kind === "local" ? context.connectionId : undefined;
    const number = this.#nextTxNumber++;
    this.#adopt({ number, key, connectionId, phase: "start", messages: [], bytes: 0, deadlineMs });
    respond(result(200));
  }

  #prepare(command: TransactionCommand, context: RequestContext, respond: Respond, fail: Fail) {
    const found = this.#registry.find(command.txKey, context.connectionId);
    if ("message" in found) return fail(found);
    const tx = found;
    const decision = decidePrepare(tx);
    if (decision.kind === "failed") return fail(decision.failure);
    if (decision.kind === "readOnly") {
      this.#registry.remove(tx);
      return respond(result(200, String(XA.RDONLY)));
    }
    const failure = this.#write([{ type: "prepare", tx: tx.number, key: tx.key.text }]);
    if (failure) return fail(failure);
    tx.phase = "prepared";
    this.#durably(() => respond(result(200, String(XA.OK))));
  }

  #commit(command: TransactionCommand, context: RequestContext, respond: Respond, fail: Fail) {
    this.#broker.stats.counters.txCommit += 1;
    const found = this.#registry.find(command.txKey, context.connectionId);
    if ("message" in found) return fail(found);
    const decision = decideCommit(found, command.type === "COMMIT_ONE_PHASE");
    if (decision.kind === "failed") return fail(decision.failure);
    if (decision.kind === "empty") {
      this.#registry.remove(found);
      return respond(result(200));
    }
    this.#commitTransaction(found, decision.wasPrepared).then(
      (failure) => failure ? fail(failure) : respond(result(200)),
      (error) => this.#options.onFatal(error as Error),
    );
  }

  /**
   * Removes `tx` from the open tables, then commits it; resolves with a failure or nothing.
   * Until its commit record is written it stays in #committing, so a checkpoint taken
   * meanwhile still carries its puts.
   */
  async #commitTransaction(
    tx: OpenTransaction,
    wasPrepared: boolean,
    heuristic?: HeuristicOutcome,
  ): Promise<TxFailure | undefined> {
    this.#registry.remove(tx);
    this.#committing.add(tx);
    const alsoRecord: TxRecord[] = heuristic
      ? [{ type: "heuristic", key: tx.key.text, outcome: heuristic }]
      : [];
    let outcome;
    try {
      outcome = await commitBatches(
        this.#commitParts,
        { number: tx.number, key: tx.key, messages: tx.messages, wasPrepared, alsoRecord },
        (pending) => {
          // Same turn as the commit record: no checkpoint can fall in between.
          this.#committing.delete(tx);
          this.#pending.add(pending);
          if (heuristic) this.#registry.heuristics.set(tx.key.text, heuristic);
        },
      );
    } finally {
      this.#committing.delete(tx);
    }
    this.#checkpointSoon();
    if (outcome.kind === "committed" && isDurable(outcome.pending)) {
      this.#pending.delete(outcome.pending);
    }
    if (outcome.kind === "notWritten") {
      this.#logger("error", "Cannot commit transaction; rolled back", tx, outcome.reason);
      this.#write([{ type: "rollback", tx: tx.number, key: tx.key.text }]);
      this.#heldBytes -= tx.bytes;
      return xaFailure(XA.RBOTHER, "STORE COMMIT FAILED: Transaction rolled back.");
    }
    this.#heldBytes -= tx.bytes;
    if (outcome.kind === "notApplied") {
      this.#logger("error", "Committed transaction not fully appended", tx, outcome.reason);
      return xaFailure(
        XA.RMERR,
        `Cannot append committed transaction '${tx.key.text}': ${outcome.reason}; ` +
          "it is journalled and will be completed when the broker restarts",
      );
    }
    return undefined;
  }

  #rollback(command: TransactionCommand, context: RequestContext, respond: Respond, fail: Fail) {
    this.#broker.stats.counters.txRollback += 1;
    const found = this.#registry.find(command.txKey, context.connectionId);
    if ("message" in found) return fail(found);
    this.#rollbackTransaction(found).then(
      (failure) => failure ? fail(failure) : respond(result(200)),
      (error) => this.#options.onFatal(error as Error),
    );
  }

  /** Journals the rollback (when anything was journalled) and drops the transaction. */
  async #rollbackTransaction(
    tx: OpenTransaction,
    heuristic?: HeuristicOutcome,
  ): Promise<TxFailure | undefined> {
    const records: TxRecord[] = [];
    if (tx.messages.length > 0 || tx.phase === "prepared") {
      records.push({ type: "rollback", tx: tx.number, key: tx.key.text });
    }
    if (heuristic) records.push({ type: "heuristic", key: tx.key.text, outcome: heuristic });
    const failure = this.#write(records);
    if (failure) return failure;
    if (heuristic) this.#registry.heuristics.set(tx.key.text, heuristic);
    this.#registry.remove(tx);
    this.#heldBytes -= tx.bytes;
    if (this.#commitParts.syncAtCommit) await this.#syncOrThrow();
    return undefined;
  }

  #forget(command: TransactionCommand, respond: Respond, fail: Fail) {
    const key = command.txKey;
    if (key.kind !== "xa") return fail(xaFailure(XA.NOTA, `${key.text} is not a valid xid`));
    const heuristics = this.#registry.heuristics;
    if (heuristics.has(key.text)) {
      const failure = this.#write([{ type: "forget", key: key.text }]);
      if (failure) return fail(failure);
      heuristics.delete(key.text);
    }
    this.#durably(() => respond(result(200)));
  }

  #adopt(tx: OpenTransaction): void {
    this.#registry.add(tx);
    this.#heldBytes += tx.bytes;
  }

  /** Rolls back without a client waiting (timeout, closed connection). */
  #abandon(tx: OpenTransaction, why: string): void {
    this.#logger("info", `Rolling back transaction: ${why}`, tx);
    this.#rollbackTransaction(tx).then(
      (failure) => {
        if (failure) this.#logger("error", "Cannot roll back transaction", tx, failure.message);
      },
      (error) => this.#options.onFatal(error as Error),
    );
  }

  /** Open transactions plus those on their way to a commit record: what a snapshot keeps. */
  *#allLive(): Generator<OpenTransaction> {
    yield* this.#registry.open();
    yield* this.#committing;
  }

  #refuseHeld(bytes: number): TxFailure | undefined {
    if (this.#heldBytes + bytes <= TX_HELD_BYTES_MAX) return undefined;
    return xaFailure(
      XA.RMERR,
      `Cannot add message: open transactions already hold ${this.#heldBytes} bytes`,
    );
  }

  /** Appends records; a failure comes back as MetaQ's plain error (the journal is unchanged). */
  #write(records: readonly TxRecord[]): TxFailure | undefined {
    try {
      this.#journal.append(records);
    } catch (error) {
      return plainFailure(describeError(error));
    }
    this.#checkpointSoon();
    return undefined;
  }

  /**
   * Checks for a checkpoint once the current turn is over: the caller of #write changes the
   * state after the record is written, and a snapshot must see that change.
   */
  #checkpointSoon(): void {
    if (this.#checkpointQueued) return;
    this.#checkpointQueued = true;
    queueMicrotask(() => {
      this.#checkpointQueued = false;
      this.maybeCheckpoint();
    });
  }

  /** Runs `then` once the journal is durable (flushTxLogAtCommit=1), or at once otherwise. */
  #durably(then: () => void): void {
    if (!this.#commitParts.syncAtCommit) return then();
    this.#syncOrThrow().then(then, (error) => this.#options.onFatal(error as Error));
  }

  async #syncOrThrow(): Promise<void> {
    try {
      await this.#journal.sync();
    } catch (error) {
      throw new Error(`Cannot sync the transaction journal: ${describeError(error)}`, {
        cause: error,
      });
    }
  }

  #fatalOrLog(error: unknown, message: string): void {
    if (error instanceof Error && error.name === "JournalWriteError") {
      this.#options.logger.log("error", message, { reason: describeError(error) });
      return;
    }
    this.#options.onFatal(error as Error);
  }

  #logger(
    level: "info" | "error",
    message: string,
    tx: OpenTransaction,
    reason?: string,
  ): void {
    this.#options.logger.log(level, message, {
      transaction: tx.key.text,
      messages: tx.messages.length,
      reason,
    });
  }
}

type Fail = (failure: TxFailure) => void;

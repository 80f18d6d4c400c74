/**
 * @module The transactions part of a broker: opens the journal, recovers (replay, then
 * completing journalled commits, then a fresh checkpoint) before the port opens, and wires the
 * manager into the router (`transaction` commands, transactional puts, closed connections,
 * `heuristic`) with its timers: timeouts every TX_TIMEOUT_TICK_MS, the journal sync every
 * second under flushTxLogAtCommit=2, and a checkpoint every checkpointInterval.
 */
import process from "node:process";
import { describeError } from "../../errors.ts";
import { TX_TIMEOUT_TICK_MS } from "../../limits.ts";
import type { BrokerPlugin, RunningBroker } from "../../server/start_broker.ts";
import { joinPath } from "../../store/storage.ts";
import { registerHeuristicCommand } from "./admin.ts";
import type { PendingCommit } from "./commit.ts";
import { type FileTxJournal, openJournal } from "./journal.ts";
import { TransactionManager } from "./manager.ts";
import { completeCommits } from "./reconcile.ts";
import { type RecoveredTransaction, replay } from "./replay.ts";
import type { OpenTransaction } from "./state.ts";

export const TRANSACTIONS_DIR = "transactions";

export interface TransactionsPluginOptions {
  /** Journal files are checkpointed past this size (default TX_JOURNAL_FILE_BYTES_MAX). */
  readonly journalFileBytesMax?: number;
  /** TEST ONLY: append this many bytes of the next commit, then call `crash`. */
  readonly crashAfterCommitBytes?: number;
  readonly crash?: () => void;
  /** A journal that cannot be synced stops the broker (default: log and exit 70). */
  readonly onFatal?: (error: Error) => void;
}

export interface TransactionsPlugin extends BrokerPlugin {
  /** The manager, once started (for tests and stats). */
  readonly manager: TransactionManager | undefined;
}

export function transactionsPlugin(options: TransactionsPluginOptions = {}): TransactionsPlugin {
  let manager: TransactionManager | undefined;
  let journal: FileTxJournal | undefined;
  const timers: ReturnType<typeof setInterval>[] = [];
  return {
    name: "transactions",
    get manager() {
      return manager;
    },
    async start(running) {
      const opened = await recover(running, options);
      journal = opened.journal;
      manager = opened.manager;
      wire(running, manager);
      timers.push(...startTimers(running, manager, options));
    },
    async stop() {
      for (const timer of timers.splice(0)) clearInterval(timer);
      await journal?.close();
    },
  };
}

async function recover(running: RunningBroker, options: TransactionsPluginOptions) {
  const { config, store, logger, clock, broker } = running;
  const onFatal = options.onFatal ?? ((error: Error) => {
    logger.log("error", "Stopping: the transaction journal failed", {
      reason: describeError(error),
    });
    process.exit(70);
  });
  const dir = joinPath(config.system.dataLogPath, TRANSACTIONS_DIR);
  const { journal, records } = await openJournal({
    storage: store.options.storage,
    dir,
    clock,
    logger,
  });
  const replayed = replay(records);
  if (replayed.highestMessageId !== undefined) broker.ids.observe(replayed.highestMessageId);
  const blocked = await completeCommits({ committed: replayed.committed, store, journal, logger });
  const manager = new TransactionManager({ ...options, broker, journal, clock, logger, onFatal }, {
    prepared: replayed.prepared.map(reopen),
    heuristics: replayed.heuristics,
    pendingCommits: blocked.map(stillPending),
    nextTxNumber: replayed.nextTxNumber,
  });
  await manager.checkpoint();
  logger.log("info", "Transactions recovered", {
    journal: journal.activePath,
    rolledBack: replayed.unfinished.length,
    prepared: replayed.prepared.length,
    commitsChecked: replayed.committed.length,
    commitsBlocked: blocked.length,
    heuristic: replayed.heuristics.size,
  });
  return { journal, manager };
}

function wire(running: RunningBroker, manager: TransactionManager): void {
  running.broker.transactions = manager;
  running.router.setTransactionHandler((command, context, respond) =>
    manager.handle(command, context, respond)
  );
  running.router.onConnectionClosed((context) => manager.connectionClosed(context));
  registerHeuristicCommand(running.router, manager);
}

function startTimers(
  running: RunningBroker,
  manager: TransactionManager,
  options: TransactionsPluginOptions,
): ReturnType<typeof setInterval>[] {
  const { config, logger } = running;
  const fatal = (error: unknown) =>
    options.onFatal
      ? options.onFatal(error as Error)
      : logger.log("error", "Transaction journal upkeep failed", { reason: describeError(error) });
  const timers = [setInterval(() => manager.expire(), TX_TIMEOUT_TICK_MS)];
  if (config.system.flushTxLogAtCommit === 2) {
    timers.push(setInterval(() => manager.syncJournal().catch(fatal), 1000));
  }
  const checkpointMs = config.system.checkpointInterval;
  timers.push(setInterval(() => manager.checkpointIfChanged().catch(fatal), checkpointMs));
  for (const timer of timers) (timer as { unref?: () => void }).unref?.();
  return timers;
}

/** A prepared transaction from the journal, open again in PREPARED. */
function reopen(tx: RecoveredTransaction): OpenTransaction {
  return {
    number: tx.number,
    key: tx.key,
    connectionId: undefined,
    phase: "prepared",
    messages: tx.messages,
    bytes: tx.messages.reduce((sum, message) => sum + message.data.length, 0),
    deadlineMs: undefined,
  };
}

/** A commit a damaged partition blocked: kept in every snapshot until a start completes it. */
function stillPending(tx: RecoveredTransaction): PendingCommit {
  const commit = tx.commit!;
  return {
    request: {
      number: tx.number,
      key: tx.key,
      messages: tx.messages,
      wasPrepared: commit.wasPrepared,
    },
    locations: commit.locations,
    logs: [],
    settled: false,
  };
}

/**
 * @module The transactions part of a broker: the `transaction` command, transactional puts,
 * `heuristic` (behind `metaq tx`) and `commitbatch` (a commit's batch, sent by the coordinator
 * to a partition's leader). The journal is the broker's own log `__tx-0`, applied on every node
 * (TxState); the node that writes it coordinates every transaction, and the edge sends these
 * commands there. When a node becomes the writer it builds a TransactionManager from the
 * applied journal and completes the commits left unfinished; when it stops being the writer,
 * its manager is dropped with the open transactions it held (their clients see them gone).
 *
 * Timers: timeouts every TX_TIMEOUT_TICK_MS, and every second the journal's upkeep (snapshot,
 * compaction) and another try at commits that could not be completed yet.
 */
import type { Clock } from "../../clock.ts";
import { BrokerError, describeError } from "../../errors.ts";
import { TX_TIMEOUT_TICK_MS } from "../../limits.ts";
import { COORDINATOR_WAIT_MS } from "../../limits.ts";
import type { Logger } from "../../log.ts";
import type { ExtensionCommand, PutCommand, TransactionCommand } from "../../protocol/commands.ts";
import {
  type CommandTable,
  type ForwardPlan,
  HERE,
  type Home,
  OUTCOME_AT_NEXT_LEADER,
} from "../../protocol/command_table.ts";
import type { MessageIdGenerator } from "../../protocol/message_id.ts";
import { DecodeError, parseTxKey } from "../../protocol/parser.ts";
import { walkRecords } from "../../protocol/record.ts";
import { errorReply, type RequestContext, type Respond, result } from "../../protocol/reply.ts";
import { RECORD_DATA_BYTES_MAX } from "../../limits.ts";
import type { Log, Logs } from "../../store/log.ts";
import type { Broker } from "../broker.ts";
import { CoordinatorSlot } from "../coordinator_slot.ts";
import { StateLog, whenOpen } from "../../store/state_log.ts";
import { type PartitionWriter, TransactionManager } from "./manager.ts";
import { TxState } from "./tx_state.ts";
import { metaqChecksum } from "../../crc32.ts";

/** The broker's own log that keeps the transaction journal. */
export const TX_TOPIC = "__tx";
export const HEURISTIC_VERB = "heuristic";
/** `commitbatch <topic> <partition> <since> <length> <opaque>` + the batch's records. */
export const COMMIT_BATCH_VERB = "commitbatch";
/**
 * `commitagain <key> <session> <COMMIT_ONE_PHASE|COMMIT_TWO_PHASE> <attempt> <opaque>`: a client's
 * COMMIT that a node sends again to the next coordinator (TransactionManager.commitAgain).
 */
export const COMMIT_AGAIN_VERB = "commitagain";
/** The context of requests the transactions part sends itself (never a client's). */
export const TX_INTERNAL_PEER = "transactions";

/** How often unfinished commits are tried again and the journal's upkeep runs. */
const UPKEEP_MS = 1000;

export interface TxPartOptions {
  readonly broker: Broker;
  readonly logs: Logs;
  readonly ids: MessageIdGenerator;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Appends commits' batches on their partitions' leaders (through the edge). */
  readonly writer: PartitionWriter;
  /** This node's id (0 on a broker that runs alone). */
  readonly nodeId: number;
  /** A journal snapshot is due after this many bytes of records. */
  readonly snapshotEveryBytes: number;
  /** Resolve `start` only once `__tx-0` is attached (default true; a cluster passes false). */
  readonly waitForLog?: boolean;
  /** TEST ONLY: see ManagerOptions.crashAfterCommitBytes. */
  readonly crashAfterCommitBytes?: number;
  readonly crash?: () => void;
}

export class TxPart {
  readonly name = "transactions";
  readonly commands: CommandTable;
  readonly #options: TxPartOptions;
  readonly #state = new TxState();
  #journal: StateLog | undefined;
  readonly #slot = new CoordinatorSlot<TransactionManager>();
  #managerEpoch = 0;
  readonly #timers: ReturnType<typeof setInterval>[] = [];
  #unsubscribe: (() => void) | undefined;
  #cancelOpen: (() => void) | undefined;
  /** The first completion of unfinished commits by this node's manager. */
  #recovering: Promise<void> | undefined;
  #stopped = false;

  constructor(options: TxPartOptions) {
    this.#options = options;
    const coordinator: Home = { kind: "leader", topic: TX_TOPIC, partition: 0 };
    this.commands = {
      transaction: {
        // END is one-way: nothing to forward, nothing to answer.
        home: (command: TransactionCommand) => command.type === "END" ? HERE : coordinator,
        forward: (command: TransactionCommand) => commitPlan(command),
        handle: (command: TransactionCommand, context: RequestContext, respond: Respond) =>
          this.#live(respond, (manager) => manager.handle(command, context, respond)),
      },
      [`ext:${COMMIT_AGAIN_VERB}`]: {
        spec: { args: 4 },
        nodesOnly: true,
        home: () => coordinator,
        handle: (command: ExtensionCommand, context: RequestContext, respond: Respond) =>
          this.#commitAgain(command, context, respond),
      },
      "tx-put": {
        // A put whose body was too large was not buffered: answer its size error here.
        home: (command: PutCommand) => command.oversizedBytes !== undefined ? HERE : coordinator,
        handle: (command: PutCommand, context: RequestContext, respond: Respond) =>
          this.#live(respond, (manager) => manager.put(command, context, respond)),
      },
      [`ext:${HEURISTIC_VERB}`]: {
        spec: { args: 2 },
        home: () => coordinator,
        handle: (command: ExtensionCommand, _context: RequestContext, respond: Respond) =>
          this.#heuristic(command, respond),
      },
      [`ext:${COMMIT_BATCH_VERB}`]: {
        spec: { args: 4, bodyLengthArg: 3 },
        home: (command: ExtensionCommand) => ({
          kind: "leader",
          topic: command.args[0],
          partition: Number(command.args[1]),
        }),
        handle: (command: ExtensionCommand, context: RequestContext, respond: Respond) =>
          this.#commitBatch(command, context, respond),
      },
    };
  }

  /**
   * The `stats transactions` item: what this node coordinates now (`coordinating false` on a
   * node that does not), and what the journal holds.
   */
  statsLines(): string[] {
    const manager = this.#slot.value;
    return [
      `coordinating ${manager !== undefined}`,
      `open ${manager?.openCount ?? 0}`,
      `held_bytes ${manager?.heldBytes ?? 0}`,
      `prepared ${this.#state.prepared.size}`,
      `commits_to_complete ${this.#state.pending.size}`,
      `heuristic ${this.#state.heuristics.size}`,
    ];
  }

  /** The manager on this node now, if this node writes the journal (tests, stats). */
  get manager(): TransactionManager | undefined {
    return this.#slot.value;
  }

  /** Resolves once `__tx-0` is attached (at once on one node; a cluster node may wait). */
  async start(): Promise<void> {
    this.#startTimers();
    if (this.#options.waitForLog !== false) {
      // One node: the journal is here (or damaged, and the broker must not start without it);
      // unfinished commits are completed before the broker serves anyone.
      this.#attach(await this.#options.logs.open(TX_TOPIC, 0));
      await this.#recovering;
      return;
    }
    this.#cancelOpen = whenOpen(this.#options.logs, TX_TOPIC, 0, (log) => this.#attach(log));
  }

  #startTimers(): void {
    const timers = [
      setInterval(() => this.#slot.value?.expire(), TX_TIMEOUT_TICK_MS),
      setInterval(() => this.#upkeep(), UPKEEP_MS),
    ];
    for (const timer of timers) (timer as { unref?: () => void }).unref?.();
    this.#timers.push(...timers);
  }

  #attach(log: Log): void {
    const { ids, logger } = this.#options;
    this.#journal = new StateLog({
      log,
      machine: this.#state,
      ids,
      logger,
      now: () => this.#options.clock.monotonicMs(),
      snapshotEveryBytes: this.#options.snapshotEveryBytes,
    });
    this.#unsubscribe = log.onChange(() => this.#update());
    this.#update();
  }

  stop(): void {
    this.#stopped = true;
    this.#cancelOpen?.();
    for (const timer of this.#timers.splice(0)) clearInterval(timer);
    this.#unsubscribe?.();
    this.#journal?.stop();
    this.#slot.take()?.close();
    this.#slot.close();
  }

  /** A client connection ended: its local transactions are rolled back. */
  connectionClosed(context: RequestContext): void {
    this.#slot.value?.connectionClosed(context);
  }

  /** On every change of `__tx-0`: apply, then start or stop coordinating. */
  #update(): void {
    const journal = this.#journal;
    if (!journal || this.#stopped) return;
    journal.catchUp();
    const writer = journal.log.writer;
    if (this.#slot.value && (!writer.writable || writer.epoch !== this.#managerEpoch)) {
      this.#slot.take()!.close();
    }
    if (writer.ready && !this.#slot.value && journal.appliedOffset >= journal.log.endOffset) {
      this.#startManager(journal, writer.epoch);
    }
  }

  #startManager(journal: StateLog, epoch: number): void {
    const { broker, clock, logger, writer, nodeId } = this.#options;
    const manager = new TransactionManager({
      broker,
      journal,
      state: this.#state,
      writer,
      clock,
      logger,
      nodeId,
      crashAfterCommitBytes: this.#options.crashAfterCommitBytes,
      crash: this.#options.crash,
    });
    this.#managerEpoch = epoch;
    this.#slot.set(manager);
    logger.log("info", "Coordinating transactions", {
      epoch,
      prepared: this.#state.prepared.size,
      commitsToComplete: this.#state.pending.size,
      heuristic: this.#state.heuristics.size,
    });
    this.#recovering = manager.completePending();
  }

  #upkeep(): void {
    if (this.#stopped) return;
    this.#update();
    void this.#slot.value?.completePending();
    this.#journal?.maintain();
  }

  /**
   * Runs `then` with the manager: now, or once this node (just made the journal's writer) is
   * ready; a 503 to `respond` when this node does not coordinate transactions.
   */
  #live(
    respond: Respond,
    then: (manager: TransactionManager) => void,
    absent = new BrokerError(
      "unavailable",
      "this node does not coordinate transactions now; retry",
    ),
  ): void {
    const manager = this.#slot.value;
    if (manager) return then(manager);
    const waitMs = this.#journal?.log.writer.writable ? COORDINATOR_WAIT_MS : 0;
    void this.#slot.when(waitMs).then((ready) => {
      if (ready) return then(ready);
      respond(errorReply(absent));
    });
  }

  #commitAgain(command: ExtensionCommand, context: RequestContext, respond: Respond): void {
    if (context.originNode === undefined) {
      const detail = `${COMMIT_AGAIN_VERB} is sent between cluster nodes only`;
      return respond(errorReply(new BrokerError("forbidden", detail)));
    }
    const commit = parseCommitAgain(command);
    if (!commit) {
      const detail = `bad ${COMMIT_AGAIN_VERB} arguments: ${command.args.join(" ")}`;
      return respond(errorReply(new BrokerError("badRequest", detail)));
    }
    // Not a 503 when no manager comes: the first attempt may have committed.
    const unknown = new BrokerError(
      "internal",
      `this node does not coordinate transactions now; ${OUTCOME_AT_NEXT_LEADER}`,
    );
    this.#live(
      respond,
      (manager) => manager.commitAgain(commit, context, respond),
      unknown,
    );
  }

  /** `heuristic list -` | `heuristic commit|rollback <xid>`: an operator's word on a branch. */
  #heuristic(command: ExtensionCommand, respond: Respond): void {
    this.#live(respond, (manager) => this.#heuristicWith(manager, command, respond));
  }

  #heuristicWith(manager: TransactionManager, command: ExtensionCommand, respond: Respond): void {
    const [action, xid] = command.args;
    if (action === "list") return respond(result(200, JSON.stringify(manager.list())));
    if (action !== "commit" && action !== "rollback") {
      const detail = `heuristic ${action}: expected list, commit or rollback`;
      return respond(errorReply(new BrokerError("badRequest", detail)));
    }
    const problem = xidProblem(xid);
    if (problem) {
      return respond(errorReply(new BrokerError("badRequest", `${action} '${xid}': ${problem}`)));
    }
    manager.completeHeuristically(parseTxKey(xid).text, action).then(
      (failure) =>
        respond(
          failure ? errorReply(BrokerError.verbatim("internal", failure.message)) : result(200),
        ),
      (error) => respond(errorReply(new BrokerError("internal", describeError(error)))),
    );
  }

  /**
   * A commit's batch, on the partition's leader: appends the records the partition does not
   * hold since `since`. Only the transactions part sends it (here or from another node); a
   * client may not, since its records would bypass every check of a put.
   */
  #commitBatch(command: ExtensionCommand, context: RequestContext, respond: Respond): void {
    if (!context.internal) {
      const error = new BrokerError("forbidden", `${COMMIT_BATCH_VERB} is sent between nodes only`);
      return respond(errorReply(error));
    }
    const [topic, partitionText, sinceText] = command.args;
    const partition = Number(partitionText);
    const since = Number(sinceText);
    const problem = batchProblem(command.body);
    if (!Number.isSafeInteger(partition) || !Number.isSafeInteger(since) || problem) {
      const detail = problem ?? `bad partition or offset in ${command.args.join(" ")}`;
      return respond(errorReply(new BrokerError("badRequest", detail)));
    }
    this.#options.logs.open(topic, partition).then(
      (log) =>
        log.appendMissing(
          command.body,
          since,
          (outcome) =>
            respond(outcome.ok ? result(200, String(outcome.offset)) : errorReply(outcome.error)),
        ),
      (error) => respond(errorReply(asBrokerError(error))),
    );
  }
}

/** Why `body` is not whole, valid records, or undefined when it is. */
function batchProblem(body: Uint8Array): string | undefined {
  try {
    let bad: string | undefined;
    const walk = walkRecords(body, RECORD_DATA_BYTES_MAX, (position, length) => {
      const view = new DataView(body.buffer, body.byteOffset + position);
      const data = body.subarray(position + 20, position + 20 + length);
      if (metaqChecksum(data) !== view.getInt32(4)) {
        bad = `record at byte ${position} fails its checksum`;
        return false;
      }
    });
    if (bad) return bad;
    if (walk.records === 0 || walk.bytes !== body.length) return "the batch is not whole records";
    return undefined;
  } catch (error) {
    return describeError(error);
  }
}

function asBrokerError(error: unknown): BrokerError {
  return error instanceof BrokerError ? error : new BrokerError("internal", describeError(error));
}

function xidProblem(text: string): string | undefined {
  try {
    return parseTxKey(text).kind === "xa"
      ? undefined
      : "not an XID (XID:format:gtrid:bqual:qualifier)";
  } catch (error) {
    if (error instanceof DecodeError) return error.message;
    throw error;
  }
}

/**
 * How a `transaction` command is forwarded to the coordinator: a COMMIT is sent again to the
 * next one (as `commitagain`) when the first stops leading before it answered, since only the
 * journal can tell whether it committed; every other command goes once.
 */
function commitPlan(command: TransactionCommand): ForwardPlan {
  if (command.type !== "COMMIT_ONE_PHASE" && command.type !== "COMMIT_TWO_PHASE") {
    return { command };
  }
  const again = (attempt: number): ExtensionCommand => ({
    kind: "extension",
    verb: COMMIT_AGAIN_VERB,
    args: [command.txKey.text, command.sessionId, command.type, String(attempt)],
    opaque: command.opaque,
    body: new Uint8Array(0),
  });
  return { command, again };
}

/** The COMMIT a `commitagain` carries; undefined when malformed. */
function parseCommitAgain(command: ExtensionCommand): TransactionCommand | undefined {
  const [keyText, sessionId, type, attemptText] = command.args;
  if (type !== "COMMIT_ONE_PHASE" && type !== "COMMIT_TWO_PHASE") return undefined;
  if (!/^\d{1,3}$/.test(attemptText)) return undefined;
  try {
    const txKey = parseTxKey(keyText);
    return { kind: "transaction", txKey, sessionId, type, timeout: 0, opaque: command.opaque };
  } catch {
    return undefined;
  }
}

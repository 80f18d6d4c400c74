/**
 * @module Replica: the driver of one Raft group whose log is a partition's MetaQ segment log.
 * The only place the pure core (raft.ts) meets disk, network and time for that group: it turns
 * each Ready into durable writes (hard state, epoch list, segment appends), sends messages,
 * advances the readable end to the commit offset, and answers proposals. The same class runs
 * the `__meta` group and every partition group.
 *
 * Ready handling follows the core's contract, in order: hard state (awaited), cut (awaited),
 * appends (markers into the epoch file before the bytes after them; the fsync is started, and
 * `persisted()` is called when it completes), messages, commit and outcomes, `advance()`.
 */
import { assert } from "../assert.ts";
import type { Clock } from "../clock.ts";
import { crc32 } from "../crc32.ts";
import { BrokerError, describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Random } from "../prng.ts";
import type { PartitionLog } from "../store/partition_log.ts";
import {
  RAFT_PROPOSAL_BATCH_BYTES_MAX,
  RECORD_DATA_BYTES_MAX,
  RECORD_HEADER_BYTES,
} from "../limits.ts";
import { recordBytesAt, walkRecords } from "../protocol/record.ts";
import type { Storage } from "../store/storage.ts";
import type { HardState, Message, NodeId } from "./messages.ts";
import {
  type ProposalOutcome,
  Raft,
  type RaftStatus,
  type RaftTiming,
  type Ready,
} from "./raft.ts";
import {
  epochsFrom,
  type EpochStart,
  epochStartOf,
  epochThrough,
  type LogItem,
  type Position,
  type RaftLogView,
} from "./raft_log.ts";
import { rangesWithin } from "./atomic_entries.ts";
import {
  appendAtomicEntries,
  type ByteRange,
  readEpochs,
  readHardState,
  writeAtomicEntries,
  writeEpochs,
  writeHardState,
} from "./state_files.ts";
import type { Tracer } from "./trace.ts";

/** Old notes the note file may hold before it is rewritten without them. */
const ATOMIC_NOTES_STALE_MAX = 256;

/** When a put is answered: after a quorum stored it, or after the leader alone did. */
export type AckMode = "quorum" | "leader";

/**
 * Deliberate bugs in the driver for the simulator's mutation tests, as the core has its own
 * (raft.ts `Canary`). Each breaks one rule of the driver contract; the simulator must report
 * the invariant it breaks. Never set outside tests.
 *
 * - `sendBeforeHardState`: a Ready's messages leave while its hard state is still being written.
 * - `applyAboveCommit`: readers see everything this copy stored, committed or not.
 * - `persistedBeforeSync`: appends are reported durable to the core before their fsync ends.
 * - `removedNodeVotes`: a copy whose own log no longer names it a voter (removed, or a learner
 *   not yet added) still grants votes and campaigns (the core's `removedVotes`).
 */
export type DriverCanary =
  | "sendBeforeHardState"
  | "applyAboveCommit"
  | "persistedBeforeSync"
  | "removedNodeVotes";

export interface ReplicaOptions {
  /** `<topic>-<partition>`, or `__meta-0`. */
  readonly name: string;
  readonly nodeId: NodeId;
  /** The group's voters until its log names others (see Raft). */
  readonly voters: readonly NodeId[];
  /** The copies the group should have (its placement): voters-to-be receive the log first. */
  readonly target?: readonly NodeId[];
  readonly log: PartitionLog;
  readonly storage: Storage;
  readonly timing: RaftTiming;
  readonly random: Random;
  /** For "elections in the last minute" (monotonic time). */
  readonly clock: Clock;
  readonly ack: AckMode;
  readonly logger: Logger;
  readonly tracer: Tracer;
  readonly send: (to: NodeId, message: Message) => void;
  /** Start without voting rights (a node that came back with an empty disk). */
  readonly nonVoting?: boolean;
  /** Set when the log was found damaged and cut at this start: repair mode. */
  readonly repair?: { formerEndOffset?: number };
  /** The atomic entries noted on disk that the log holds (settleAtomicEntries). */
  readonly atomicEntries: readonly ByteRange[];
  /** Called after the readable (committed) end moved forward. */
  readonly onCommit?: (commitOffset: number) => void;
  /** Called on every role change. */
  readonly onRole?: (role: string, term: number, leaderId: NodeId) => void;
  /**
   * Let the group sleep when idle (Raft quiescence): the node then calls `leaderUnreachable`
   * when the leader's node goes silent.
   */
  readonly quiesce?: boolean;
  /** Called when the group goes to sleep here or wakes up. */
  readonly onQuiet?: (quiet: boolean) => void;
  /** Called when a configuration is committed; `removed`: this node is no voter any more. */
  readonly onConfiguration?: (voters: readonly NodeId[], removed: boolean) => void;
  /** TEST ONLY: a deliberate bug (DriverCanary). */
  readonly canary?: DriverCanary;
}

/** What a proposer hears back for each record it handed to `propose`. */
export type ProposeCallback = (
  result: { ok: true; offset: number } | { ok: false; error: BrokerError },
) => void;

interface PendingBatch {
  readonly offset: number;
  readonly endOffset: number;
  /** Byte position of each record inside the batch, and its callback. */
  readonly records: { readonly position: number; readonly callback: ProposeCallback }[];
  answered: boolean;
}

/** Records proposed this turn, to become one entry at its end. */
interface OpenBatch {
  /** The entry's bytes so far: `used` of them; the first record's own buffer until another joins. */
  bytes: Uint8Array;
  used: number;
  records: PendingBatch["records"];
  atomic: boolean;
}

/** Makes room for `length` more bytes in `batch` (doubling, so a turn's copies stay linear). */
function reserve(batch: OpenBatch, length: number): void {
  if (batch.bytes.length - batch.used >= length) return;
  const grown = new Uint8Array(
    Math.max(64 * 1024, batch.bytes.length * 2, batch.used + length),
  );
  grown.set(batch.bytes.subarray(0, batch.used));
  batch.bytes = grown;
}

export class Replica {
  readonly name: string;
  readonly options: ReplicaOptions;
  readonly raft: Raft;
  readonly log: PartitionLog;
  #epochs: EpochStart[];
  /** End of what has been reported durable to the core: reads never go past it. */
  #reportedDurable: number;
  #commitOffset: number;
  #processing = false;
  #inFlight: Promise<void> = Promise.resolve();
  #epochWrites: Promise<void> = Promise.resolve();
  #again = false;
  #closed = false;
  #nextTag = 1;
  #pending = new Map<number, PendingBatch>();
  /** The readable end listeners last heard. */
  #notifiedCommit = 0;
  /** Batches appended by this leader, oldest first, for `ack=leader` answers. */
  #unacked: number[] = [];
  #batch: OpenBatch | undefined;
  /**
   * Atomic entries noted on disk and still of use: not yet both committed and durable here (a
   * crash may leave part of one; a follower catching up must get one whole).
   */
  #atomic: ByteRange[];
  /** Lines in the note file: it is rewritten without the old notes once they pile up. */
  #atomicFileLines: number;
  /** Readies whose items wait, in order, behind an atomic entry's note (see #append). */
  #queued: { ready: Ready; notes: ByteRange[] }[] = [];
  /** Writes #queued while it has anything (undefined: nothing is queued). */
  #queueWriter: Promise<void> | undefined;
  #flushScheduled = false;
  #role = "follower";
  /** When this replica started real (not pre-vote) campaigns, for "elections in the last minute". */
  #campaigns: number[] = [];
  #term = 0;
  #leaderId: NodeId = 0;

  private constructor(options: ReplicaOptions, raft: Raft, epochs: EpochStart[]) {
    this.name = options.name;
    this.options = options;
    this.log = options.log;
    this.raft = raft;
    this.#epochs = epochs;
    this.#atomic = [...options.atomicEntries];
    this.#atomicFileLines = options.atomicEntries.length;
    this.#reportedDurable = options.log.writtenEnd;
    this.#commitOffset = options.log.startOffset;
  }

  /** Reads the replica's state from disk and starts the core as a follower. */
  static open(options: ReplicaOptions): Replica {
    const { log, storage } = options;
    const dir = log.options.dir;
    const epochs = loadEpochs(storage, dir, log, options.logger);
    const stored = readHardState(storage, dir);
    const hardState: HardState | "unreadable" = stored ?? { term: 0, votedFor: 0 };
    const repair = options.repair ?? (stored !== "unreadable" ? stored?.repair : undefined);
    const holder: { replica?: Replica } = {};
    const view: RaftLogView = {
      startOffset: log.startOffset,
      endOffset: log.writtenEnd,
      epochs,
      read: (offset, bytesMax) => holder.replica!.#readEntries(offset, bytesMax),
      atomicAt: (offset) => holder.replica!.#atomic.some((range) => range.start === offset),
    };
    const raft = new Raft({
      id: options.nodeId,
      voters: options.voters,
      log: view,
      random: options.random,
      timing: options.timing,
      durable: { hardState, repair },
      nonVoting: options.nonVoting,
      learners: learnersOf(options.target, options.nodeId),
      quiesce: options.quiesce,
      canary: options.canary === "removedNodeVotes" ? "removedVotes" : undefined,
    });
    if (options.target) raft.setTargetVoters(options.target);
    const replica = new Replica(options, raft, epochs);
    holder.replica = replica;
    if (options.tracer.enabled) {
      options.tracer.record(options.name, { event: "truncate", to: log.writtenEnd });
    }
    replica.#schedule();
    return replica;
  }

  get role(): string {
    return this.#role;
  }

  get term(): number {
    return this.#term;
  }

  get leaderId(): NodeId {
    return this.#leaderId;
  }

  get isLeader(): boolean {
    return this.#role === "leader";
  }

  /** End of committed data: readers never see past it. */
  get commitOffset(): number {
    if (this.options.canary === "applyAboveCommit") return this.log.ackedEnd;
    return Math.min(this.#commitOffset, this.log.ackedEnd);
  }

  status(): RaftStatus {
    return this.raft.status();
  }

  /** The leader-epoch list as this replica keeps it (base first). */
  get epochs(): readonly EpochStart[] {
    return [...this.#epochs];
  }

  /** The group's voters now (those its log names). */
  get voters(): readonly NodeId[] {
    return this.raft.voters;
  }

  /**
   * Whether this copy ever counted as a voter: the voters it started from or a marker in its log
   * named this node. A copy that never did was only ever a learner.
   */
  get everVoter(): boolean {
    const self = this.options.nodeId;
    return this.options.voters.includes(self) ||
      this.#epochs.some((epoch) => epoch.voters?.includes(self) === true);
  }

  /**
   * The copies the group should have (a new placement): the leader sends the log to each of
   * them and moves the voters there one change at a time. `alsoLearners` receive the log too
   * without ever becoming voters.
   */
  setTarget(target: readonly NodeId[], alsoLearners: readonly NodeId[] = []): void {
    if (this.#closed) return;
    const learners = learnersOf([...new Set([...target, ...alsoLearners])], this.options.nodeId);
    this.raft.setLearners(learners.sort((a, b) => a - b));
    this.raft.setTargetVoters(target);
    this.#schedule();
  }

  /** True while proposals wait to be handed to Raft (they are, on the next microtask). */
  get hasQueuedProposals(): boolean {
    return (this.#batch?.records.length ?? 0) > 0;
  }

  /** Elections this replica started in the last minute. */
  get electionsLastMinute(): number {
    const now = this.options.clock.monotonicMs();
    return this.#campaigns.filter((at) => now - at < 60_000).length;
  }

  /** True once a storage error stopped this replica. */
  get stopped(): boolean {
    return this.#closed;
  }

  /** Bytes from node `from` are arriving (see Raft.leaderAlive). */
  leaderAlive(from: NodeId): void {
    if (this.#closed) return;
    this.raft.leaderAlive(from);
  }

  /** Whether the group sleeps here (no ticks needed until something happens). */
  get quiet(): boolean {
    return this.raft.quiet;
  }

  /** The node of this group's leader went silent: a sleeping copy wakes and may elect. */
  leaderUnreachable(): void {
    if (this.#closed || !this.raft.quiet) return;
    this.raft.leaderUnreachable();
    this.#schedule();
  }

  /** The nodes of a majority of this group's voters went silent: a sleeping leader wakes. */
  quorumUnreachable(): void {
    if (this.#closed || !this.raft.quiet) return;
    this.raft.quorumUnreachable();
    this.#schedule();
  }

  /** `peer`'s node restarted, was replaced or repairs: a sleeping leader wakes to look. */
  peerChanged(peer: NodeId): void {
    if (this.#closed || !this.raft.quiet) return;
    this.raft.peerChanged(peer);
    this.#schedule();
  }

  tick(): void {
    if (this.#closed || this.raft.quiet) return;
    this.raft.tick();
    this.#schedule();
  }

  step(message: Message): void {
    if (this.#closed) return;
    if (message.kind === "vote" && this.options.tracer.enabled) {
      // Stepping a vote request changes no configuration: the answer is decided on this one.
      this.options.tracer.record(this.name, {
        event: "voteRequest",
        from: message.from,
        term: message.term,
        pre: message.pre,
        voters: this.raft.voters,
      });
    }
    try {
      this.raft.step(message);
    } catch (error) {
      // A broken invariant: say where, then let it end the process.
      const status = this.raft.status();
      this.options.logger.log("error", "Raft invariant broken", {
        group: this.name,
        message: message.kind,
        from: message.from,
        term: message.term,
        prev: message.kind === "append"
          ? `${message.prev.offset}/${message.prev.epoch}`
          : undefined,
        commit: `${status.commit.offset}/${status.commit.epoch}`,
        last: `${status.last.offset}/${status.last.epoch}`,
      });
      throw error;
    }
    this.#schedule();
  }

  /**
   * Queues one encoded record for replication; records queued in one turn become one entry.
   * The callback hears the record's offset once it is committed (or stored by the leader with
   * `ack=leader`), or an error: `notLeader`/`queueFull` (nothing was appended) or `internal`
   * with an "indeterminate" text (leadership was lost first: it may or may not survive).
   *
   * With `atomic`, `record` may be several whole records (a transaction's batch): they go as one
   * atomic entry of their own, which no copy keeps in part, even through a crash
   * (atomic_entries.ts); the callback hears the offset of the first.
   */
  propose(record: Uint8Array, callback: ProposeCallback, atomic = false): void {
    if (!this.isLeader) {
      callback({ ok: false, error: notLeaderError(this.name, this.#leaderId) });
      return;
    }
    if (
      this.#batch && (atomic || this.#batch.used + record.length > RAFT_PROPOSAL_BATCH_BYTES_MAX)
    ) {
      this.#flushBatch();
    }
    if (atomic || (!this.#batch && record.length >= RAFT_PROPOSAL_BATCH_BYTES_MAX)) {
      // An entry of its own, proposed from the caller's buffer (no copy).
      const records = [{ position: 0, callback }];
      this.#batch = { bytes: record, used: record.length, records, atomic };
      this.#flushBatch();
      return;
    }
    const batch = this.#batch;
    if (!batch) {
      // The first record of a turn is kept as it came, not copied: a batched put arrives as
      // one already, and often nothing joins it. A second record copies both (below).
      this.#batch = {
        bytes: record,
        used: record.length,
        records: [{ position: 0, callback }],
        atomic: false,
      };
    } else {
      reserve(batch, record.length);
      batch.bytes.set(record, batch.used);
      batch.records.push({ position: batch.used, callback });
      batch.used += record.length;
    }
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.#flushBatch());
    }
  }

  /**
   * Like propose, for one record of `length` bytes that `write` puts into the buffer it is given
   * at `at`. A record after the turn's first is written straight into the turn's entry instead
   * of a buffer of its own that the entry would copy (a plain put: ReplicatedLog.appendRecord;
   * at 1 KiB that was an allocation and a copy per put on the leader).
   */
  proposeWritten(
    length: number,
    write: (into: Uint8Array, at: number) => void,
    callback: ProposeCallback,
  ): void {
    const batch = this.#batch;
    // A batch at rest is never atomic (an atomic one is flushed at once) and its flush is
    // already scheduled; anything else goes through propose.
    if (!this.isLeader || !batch || batch.used + length > RAFT_PROPOSAL_BATCH_BYTES_MAX) {
      const bytes = new Uint8Array(length);
      write(bytes, 0);
      return this.propose(bytes, callback);
    }
    reserve(batch, length);
    write(batch.bytes, batch.used);
    batch.records.push({ position: batch.used, callback });
    batch.used += length;
  }

  /**
   * A brand-new group (term 0, no leader heard) that a client is waiting for campaigns at once
   * instead of after a full election timeout: the same as letting that much time pass.
   */
  campaignIfNew(): void {
    const status = this.raft.status();
    if (status.term !== 0 || status.leaderId !== 0 || this.#closed) return;
    for (let tick = 0; tick <= this.options.timing.electionTicksMax; tick++) this.raft.tick();
    this.#schedule();
  }

  /**
   * Retention's question: may this replica's log start at `offset` (a segment end)? Only below
   * the commit offset, and on a follower only below what its leader already dropped (design
   * 5.6: the leader decides, a follower's clock cannot delete data on its own). When yes, the
   * core and the epoch file move their base there, before the caller deletes the segments.
   */
  compactTo(offset: number): boolean {
    const status = this.raft.status();
    if (offset > this.commitOffset) return false;
    if (!this.isLeader && offset > status.leaderStartOffset) return false;
    const base = { offset, epoch: epochThrough(this.#epochs, offset) };
    if (!this.raft.compact(base)) return false;
    this.#epochs = epochsFrom(this.#epochs, base);
    void this.#saveEpochs().catch((error) =>
      this.options.logger.log("error", "Cannot write the epoch file after retention", {
        group: this.name,
        reason: describeError(error),
      })
    );
    this.#schedule();
    return true;
  }

  /** Hands leadership to `target` (graceful shutdown); false when it cannot start. */
  transferLeadership(target: NodeId): boolean {
    const started = this.raft.transferLeadership(target);
    this.#schedule();
    return started;
  }

  /** Stops the replica: answers pending proposals as indeterminate, waits for the Ready in hand. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#inFlight;
    await this.#appendsWritten();
    this.#flushBatch();
    for (const batch of this.#pending.values()) {
      this.#answer(batch, { ok: false, error: indeterminate(this.name) });
    }
    this.#pending.clear();
  }

  #flushBatch(): void {
    this.#flushScheduled = false;
    const batch = this.#batch;
    this.#batch = undefined;
    if (!batch || batch.records.length === 0) return;
    const tag = this.#nextTag++;
    const result = this.#closed
      ? { kind: "notLeader" as const, leaderId: 0 }
      : this.raft.propose(batch.bytes.subarray(0, batch.used), tag, batch.atomic);
    if (result.kind !== "appended") {
      const error = result.kind === "busy"
        ? new BrokerError(
          "queueFull",
          `partition ${this.name} has too many puts waiting for replication`,
        )
        : notLeaderError(this.name, result.leaderId);
      for (const record of batch.records) record.callback({ ok: false, error });
      return;
    }
    assert(result.endOffset - result.offset === batch.used);
    const pending: PendingBatch = {
      offset: result.offset,
      endOffset: result.endOffset,
      records: batch.records,
      answered: false,
    };
    this.#pending.set(tag, pending);
    if (this.options.ack === "leader") this.#unacked.push(tag);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#processing) {
      this.#again = true;
      return;
    }
    if (!this.raft.hasReady()) return;
    this.#processing = true;
    this.#inFlight = this.#process().catch((error) => {
      // A failed write leaves the log in an unknown state: stop this replica, as design 5.2 says.
      this.options.logger.log("error", "Replica stopped after a storage error", {
        group: this.name,
        reason: describeError(error),
      });
      this.#closed = true;
    });
  }

  async #process(): Promise<void> {
    try {
      do {
        this.#again = false;
        while (!this.#closed && this.raft.hasReady()) {
          const ready = this.raft.ready();
          await this.#handle(ready);
          this.raft.advance(ready);
        }
      } while (this.#again && !this.#closed);
    } finally {
      this.#processing = false;
    }
  }

  async #handle(ready: Ready): Promise<void> {
    const { storage } = this.options;
    const dir = this.log.options.dir;
    const early = this.options.canary === "sendBeforeHardState";
    const hardState = ready.hardState && writeHardState(storage, dir, ready.hardState);
    if (early) this.#sendMessages(ready);
    if (hardState) await hardState;
    if (ready.resetTo) await this.#resetTo(ready.resetTo, ready.resetVoters);
    if (ready.truncateTo) await this.#truncateTo(ready.truncateTo);
    await this.#append(ready);
    if (!early) this.#sendMessages(ready);
    // The proposers hear first, then the readers: a client that both produces and follows
    // (a long poll on the same connection) gets its ack before the data it just wrote.
    if (ready.commit) this.#moveCommit(ready.commit.offset);
    for (const outcome of ready.outcomes) this.#onOutcome(outcome);
    if (ready.commit) this.#notifyCommit();
    this.#onEvents(ready);
  }

  #sendMessages(ready: Ready): void {
    for (const message of ready.messages) this.options.send(message.to, message);
  }

  /**
   * Writes the Ready's items. An atomic entry's note must be durable before its bytes are
   * written, and the entries after it follow it in the log: then this Ready's items (and those
   * of later Readies until the queue drains) are written in order behind the note, while
   * messages, commits and heartbeats go on. Awaiting the note here would hold every message of
   * the group for an fsync; a slow disk would cost it its leader.
   */
  async #append(ready: Ready): Promise<void> {
    const notes = atomicRangesOf(ready.appends);
    if (this.options.tracer.enabled) {
      // Traced as they join the log (in order, before any later cut), written or queued.
      for (const item of ready.appends) {
        if (item.kind === "entry") this.#traceRecords(item.offset, item.epoch, item.bytes);
      }
    }
    if (notes.length === 0 && !this.#queueWriter) return await this.#writeItems(ready);
    this.#queued.push({ ready, notes });
    if (!this.#queueWriter) this.#startQueueWriter();
  }

  #startQueueWriter(): void {
    const writer: Promise<void> = this.#writeQueued().catch((error) => {
      if (this.#closed) return;
      this.options.logger.log("error", "Replica stopped: cannot store replicated entries", {
        group: this.name,
        reason: describeError(error),
      });
      this.#closed = true;
    }).finally(() => {
      if (this.#queueWriter === writer) this.#queueWriter = undefined;
      // A Ready queued after the last round looked, before this ran, still needs a writer.
      if (this.#queued.length > 0 && !this.#closed && !this.#queueWriter) {
        this.#startQueueWriter();
      }
    });
    this.#queueWriter = writer;
  }

  /**
   * Writes the queued Readies in order. The notes of every Ready queued so far go in one fsync
   * (several commits arriving during a note share the next one), then their items.
   */
  async #writeQueued(): Promise<void> {
    // Each round takes every Ready queued so far; Readies arrive only while the group runs.
    while (this.#queued.length > 0 && !this.#closed) {
      const queued = this.#queued.splice(0);
      const notes = queued.flatMap((each) => each.notes);
      if (notes.length > 0) await this.#noteAtomicEntries(notes);
      for (const { ready } of queued) {
        if (this.#closed) return;
        await this.#writeItems(ready);
      }
    }
  }

  /** Waits for the appends queued behind a note (before a cut, a reset or a close). */
  async #appendsWritten(): Promise<void> {
    // Callers hold the Ready loop, so nothing new is queued meanwhile: this ends.
    while (this.#queueWriter) await this.#queueWriter;
  }

  async #writeItems(ready: Ready): Promise<void> {
    let epochsDirty = false;
    let lastDone: Promise<void> | undefined;
    for (const item of ready.appends) {
      if (item.kind === "marker") {
        this.#epochs.push(epochStartOf(item));
        epochsDirty = true;
        continue;
      }
      if (epochsDirty) {
        await this.#saveEpochs();
        epochsDirty = false;
      }
      assert(
        this.log.nextOffset === item.offset,
        `${this.name}: entry at ${item.offset}, log at ${this.log.nextOffset}`,
      );
      lastDone = this.log.appendEncoded(
        item.bytes,
        walkRecords(item.bytes, RECORD_DATA_BYTES_MAX).records,
      ).done;
    }
    if (epochsDirty) await this.#saveEpochs();
    const end = ready.appendsEnd;
    if (!end) return;
    const report = () => {
      if (this.#closed) return;
      this.#reportedDurable = Math.max(this.#reportedDurable, end.offset);
      this.raft.persisted(end);
      this.#answerLeaderAcks();
      // A follower may learn a commit before its own copy is durable: readers see it only now.
      if (this.commitOffset > this.#notifiedCommit) this.#notifyCommit();
      this.#schedule();
    };
    if (lastDone && this.options.canary === "persistedBeforeSync") {
      report();
    } else if (lastDone) {
      lastDone.then(report, (error) => {
        // The log was cut back to its last durable end: the core's view no longer matches it.
        // Stop this replica; the node's restart runs recovery (replication.md 5.2).
        this.options.logger.log("error", "Replica stopped: cannot store replicated entries", {
          group: this.name,
          reason: describeError(error),
        });
        this.#closed = true;
      });
    } else {
      report();
    }
  }

  /**
   * Notes `added` durably: appended to the note file (one fsync), which is rewritten with only
   * the notes still of use (not yet both committed and durable here) once old ones pile up.
   * Only #writeQueued calls this, one call at a time.
   */
  async #noteAtomicEntries(added: readonly ByteRange[]): Promise<void> {
    const settled = Math.min(this.#commitOffset, this.#reportedDurable);
    const kept = this.#atomic.filter((range) =>
      range.end > settled && range.start >= this.log.startOffset
    );
    this.#atomic = [...kept, ...added];
    const { storage } = this.options;
    const dir = this.log.options.dir;
    if (this.#atomicFileLines - kept.length > ATOMIC_NOTES_STALE_MAX) {
      await writeAtomicEntries(storage, dir, this.#atomic);
      this.#atomicFileLines = this.#atomic.length;
    } else {
      await appendAtomicEntries(storage, dir, added);
      this.#atomicFileLines += added.length;
    }
  }

  /** After a cut or reset to [start, end): forgets the notes of bytes gone, durably. */
  async #forgetAtomicEntriesBeyond(end: number): Promise<void> {
    const kept = rangesWithin(this.#atomic, this.log.startOffset, end);
    if (kept.length === this.#atomic.length) return;
    this.#atomic = kept;
    await writeAtomicEntries(this.options.storage, this.log.options.dir, kept);
    this.#atomicFileLines = kept.length;
  }

  /**
   * Writes the epoch list as it is now. Writes are chained: two at once would race on the
   * same temporary file.
   */
  #saveEpochs(): Promise<void> {
    const epochs = [...this.#epochs];
    const write = this.#epochWrites.then(() =>
      writeEpochs(this.options.storage, this.log.options.dir, epochs)
    );
    this.#epochWrites = write.catch(() => {});
    return write;
  }

  /**
   * One trace event per record: records are the unit every replica agrees on (entries may be
   * chunked differently when a follower catches up), so the checker can compare them.
   */
  #traceRecords(offset: number, term: number, bytes: Uint8Array): void {
    walkRecords(bytes, RECORD_DATA_BYTES_MAX, (position, length) => {
      const end = position + RECORD_HEADER_BYTES + length;
      this.options.tracer.record(this.name, {
        event: "append",
        term,
        from: offset + position,
        to: offset + end,
        crc: crc32(bytes.subarray(position, end)),
      });
    });
  }

  async #resetTo(position: Position, voters: readonly NodeId[] | undefined): Promise<void> {
    await this.#appendsWritten();
    await this.log.resetTo(position.offset);
    await this.#forgetAtomicEntriesBeyond(position.offset);
    this.#epochs = [epochStartOf({ offset: position.offset, epoch: position.epoch, voters })];
    await this.#saveEpochs();
    this.#reportedDurable = position.offset;
    this.#commitOffset = Math.max(this.#commitOffset, position.offset);
    if (this.options.tracer.enabled) {
      this.options.tracer.record(this.name, { event: "truncate", to: position.offset });
    }
  }

  async #truncateTo(position: Position): Promise<void> {
    assert(
      position.offset >= this.#commitOffset || this.#commitOffset === this.log.startOffset,
      `${this.name}: truncation to ${position.offset} below commit ${this.#commitOffset}`,
    );
    await this.#appendsWritten();
    await this.log.truncate(position.offset);
    await this.#forgetAtomicEntriesBeyond(position.offset);
    this.#epochs = this.#epochs.filter((epoch) =>
      epoch.startOffset < position.offset ||
      (epoch.startOffset === position.offset && epoch.epoch <= position.epoch)
    );
    await this.#saveEpochs();
    this.#reportedDurable = Math.min(this.#reportedDurable, position.offset);
    if (this.options.tracer.enabled) {
      this.options.tracer.record(this.name, { event: "truncate", to: position.offset });
    }
  }

  /**
   * A new commit position, not yet told: #notifyCommit tells the listeners of every one (an epoch
   * change matters too, not only the offset).
   */
  #moveCommit(offset: number): void {
    if (offset > this.#commitOffset) {
      this.#commitOffset = offset;
      if (this.options.tracer.enabled) {
        this.options.tracer.record(this.name, { event: "commit", offset });
      }
    }
  }

  #notifyCommit(): void {
    this.#notifiedCommit = this.commitOffset;
    this.options.onCommit?.(this.#notifiedCommit);
  }

  #onOutcome(outcome: ProposalOutcome): void {
    const batch = this.#pending.get(outcome.clientTag);
    if (!batch) return;
    this.#pending.delete(outcome.clientTag);
    if (outcome.kind === "ok") this.#answer(batch, { ok: true, offset: 0 });
    else this.#answer(batch, { ok: false, error: indeterminate(this.name) });
  }

  /** With ack=leader, answers every batch the leader's own log has made durable. */
  #answerLeaderAcks(): void {
    while (this.#unacked.length > 0) {
      const batch = this.#pending.get(this.#unacked[0]);
      if (batch && batch.endOffset > this.#reportedDurable) break;
      this.#unacked.shift();
      if (batch) this.#answer(batch, { ok: true, offset: 0 });
    }
  }

  #answer(
    batch: PendingBatch,
    result: { ok: true; offset: number } | { ok: false; error: BrokerError },
  ): void {
    if (batch.answered) return;
    batch.answered = true;
    for (const record of batch.records) {
      record.callback(result.ok ? { ok: true, offset: batch.offset + record.position } : result);
    }
  }

  #onEvents(ready: Ready): void {
    for (const event of ready.events) {
      if (event.kind === "campaign" && !event.pre) {
        const now = this.options.clock.monotonicMs();
        this.#campaigns = this.#campaigns.filter((at) => now - at < 60_000);
        this.#campaigns.push(now);
      }
      if (event.kind === "role") {
        this.#role = event.role;
        this.#term = event.term;
        this.#leaderId = event.leaderId;
        if (this.options.tracer.enabled) {
          // A new leader's marker is in the same Ready: it names the leader's voters.
          const marker = event.role === "leader"
            ? ready.appends.find((item) => item.kind === "marker" && item.epoch === event.term)
            : undefined;
          this.options.tracer.record(this.name, {
            event: "role",
            role: event.role,
            term: event.term,
            ...(event.role === "leader"
              ? { voters: marker?.kind === "marker" && marker.voters || this.raft.voters }
              : {}),
          });
        }
        this.options.onRole?.(event.role, event.term, event.leaderId);
        if (event.role !== "leader") this.#unacked = [];
      } else if (event.kind === "quiet") {
        if (this.options.tracer.enabled) {
          this.options.tracer.record(this.name, { event: "quiet", quiet: event.quiet });
        }
        this.options.onQuiet?.(event.quiet);
      } else if (event.kind === "configurationCommitted") {
        if (this.options.tracer.enabled) {
          this.options.tracer.record(this.name, {
            event: "configuration",
            epoch: event.epoch,
            voters: event.voters,
          });
        }
        this.options.onConfiguration?.(event.voters, event.removed);
      } else if (event.kind === "repairEntered" || event.kind === "repairExited") {
        if (this.options.tracer.enabled) {
          this.options.tracer.record(this.name, {
            event: "repair",
            enter: event.kind === "repairEntered",
          });
        }
        this.options.logger.log(
          "warn",
          event.kind === "repairEntered" ? "Replica in repair mode" : "Replica left repair mode",
          { group: this.name },
        );
      }
    }
    const status = this.raft.status();
    this.#leaderId = status.leaderId;
    this.#term = status.term;
  }

  /**
   * Records from `offset`, one entry each, at most `bytesMax` (one record at least), never past
   * what was reported durable nor across an epoch start. The segment log does not keep the
   * boundaries of the original proposals, so the durable log is served as single records: then
   * a commit position (always a record boundary) never falls inside an entry a follower gets.
   */
  #readEntries(offset: number, bytesMax: number): Uint8Array[] {
    let limit = this.#reportedDurable;
    for (const epoch of this.#epochs) {
      if (epoch.startOffset > offset && epoch.startOffset < limit) limit = epoch.startOffset;
    }
    if (offset >= limit) return [];
    // A noted atomic entry goes whole, as one entry (atomicAt flags it), never split.
    const atomic = this.#atomic.find((range) =>
      range.start >= offset && range.start < limit && range.end <= limit
    );
    if (atomic?.start === offset) return [this.#readRange(atomic)];
    if (atomic) limit = atomic.start;
    let slice = this.log.read(offset, Math.max(bytesMax, RECORD_HEADER_BYTES), limit);
    if (walkRecords(slice, RECORD_DATA_BYTES_MAX).records === 0) {
      // The first record is larger than bytesMax: send it alone.
      slice = this.log.read(offset, recordBytesAt(slice) ?? RECORD_HEADER_BYTES, limit);
    }
    return splitRecords(slice);
  }

  /** The bytes of `range` in one buffer (a long batch may span segments). */
  #readRange(range: ByteRange): Uint8Array {
    const out = new Uint8Array(range.end - range.start);
    // Each read returns at least one byte, so this ends within range.end - range.start rounds.
    for (let at = range.start; at < range.end;) {
      const piece = this.log.read(at, range.end - at, range.end);
      out.set(piece, at - range.start);
      at += piece.length;
    }
    return out;
  }
}

/**
 * The ranges of the atomic entries among `items` that must be noted: those of more than one
 * record (recovery never keeps part of a record).
 */
function atomicRangesOf(items: readonly LogItem[]): ByteRange[] {
  const ranges: ByteRange[] = [];
  for (const item of items) {
    if (item.kind !== "entry" || !item.atomic) continue;
    if (walkRecords(item.bytes, RECORD_DATA_BYTES_MAX).records < 2) continue;
    ranges.push({ start: item.offset, end: item.offset + item.bytes.length });
  }
  return ranges;
}

/** Each complete record of `bytes` as its own view. */
function splitRecords(bytes: Uint8Array): Uint8Array[] {
  const records: Uint8Array[] = [];
  walkRecords(bytes, RECORD_DATA_BYTES_MAX, (position, length) => {
    records.push(bytes.subarray(position, position + RECORD_HEADER_BYTES + length));
  });
  return records;
}

/** The epoch list on disk, fitted to the log that recovery left (never ahead of its end). */
function loadEpochs(
  storage: Storage,
  dir: string,
  log: PartitionLog,
  logger: Logger,
): EpochStart[] {
  let epochs = readEpochs(storage, dir);
  if (!epochs || epochs.length === 0) {
    if (log.writtenEnd > log.startOffset) {
      logger.log("warn", "Replica has data but no leader-epoch file: treating it as epoch 0", {
        dir,
      });
    }
    return [{ epoch: 0, startOffset: log.startOffset }];
  }
  epochs = epochs.filter((epoch, index) => index === 0 || epoch.startOffset <= log.writtenEnd);
  if (epochs[0].startOffset !== log.startOffset) {
    const base = { offset: log.startOffset, epoch: epochThrough(epochs, log.startOffset) };
    epochs = epochsFrom(epochs, base);
  }
  return epochs;
}

function notLeaderError(name: string, leaderId: NodeId): BrokerError {
  return new BrokerError(
    "notLeader",
    leaderId
      ? `partition ${name} is led by node ${leaderId}`
      : `partition ${name} has no leader yet`,
  );
}

function indeterminate(name: string): BrokerError {
  return new BrokerError(
    "internal",
    `partition ${name} lost its leader before the put committed; it may or may not be stored`,
  );
}

/** Everyone but this node among the target copies: they receive the log (voters or not). */
function learnersOf(target: readonly NodeId[] | undefined, self: NodeId): NodeId[] {
  return (target ?? []).filter((id) => id !== self);
}

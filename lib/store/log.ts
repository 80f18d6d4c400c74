/**
 * @module The Log port: the one interface between the broker and the bytes of a partition.
 * Two implementations: LocalLog (store/local_log.ts, a segment log on this node's disk) and
 * ReplicatedLog (cluster/replicated_log.ts, the same segment log appended through Raft). The
 * broker, its transactions and its consumer groups are written once against this port, so they
 * work the same on one node and on a cluster; whatever must survive a leader change (group
 * offsets, the transaction journal) is itself a Log, an internal partition.
 *
 * Not here: topics, requests, leaders. A Log that cannot take an append now (a follower's copy)
 * refuses it with a typed error (`notLeader`); deciding where a request goes is the edge's job.
 */
import type { BrokerError } from "../errors.ts";
import type { DeletePolicy } from "../config/retention_policy.ts";
import type { RecordInput } from "../protocol/record.ts";

/** Bytes of a log held for a reply (Log.holdRange); positions count from the range's start. */
export interface HeldRange {
  /** Copies `bytes` of the range, from `from` on, into `target` at `targetOffset`. */
  readInto(target: Uint8Array, targetOffset: number, from: number, bytes: number): void;
  /**
   * Sends up to `bytes` of the range, from `from` on, straight from the segment file into the
   * socket `socketFd` (sendfile); returns the bytes the socket took at once (0: it is full, or
   * the storage cannot).
   */
  sendInto(socketFd: number, from: number, bytes: number): number;
  /** The reply is done with the range (sent, or dropped); idempotent. */
  release(): void;
}

/** What an append hears back: where the batch starts, or why it was not stored. */
export type AppendOutcome =
  | { readonly ok: true; readonly offset: number }
  | { readonly ok: false; readonly error: BrokerError };

export type AppendDone = (outcome: AppendOutcome) => void;

/**
 * Who may write the log now. `epoch` grows each time a new writer takes over (always 1 on one
 * node; the Raft term in a cluster), so a part that keeps state beside the log (a group
 * coordinator) knows when it must rebuild it. `ready` means every record of earlier epochs
 * that will ever be readable already is, so state rebuilt from the log is complete.
 */
export interface LogWriter {
  readonly writable: boolean;
  readonly ready: boolean;
  readonly epoch: number;
}

/** Figures for stats, metrics and the dashboard. */
export interface LogFacts {
  /** Bytes stored from the log's start to its written end. */
  readonly bytes: number;
  /** Records appended (approximate across restarts, as MetaQ's count is). */
  readonly messages: number;
  readonly segments: number;
  /** Offset after the last byte on this node's disk, durable or not. */
  readonly writtenEnd: number;
  /** Offset after the last byte fsynced on this node. */
  readonly durableEnd: number;
}

export interface Log {
  /** `<topic>-<partition>`. */
  readonly name: string;
  /** First offset still stored (retention moves it forward). */
  readonly startOffset: number;
  /**
   * Offset after the last record readers may see: acknowledged records on one node, committed
   * records in a cluster. Always a record boundary.
   */
  readonly endOffset: number;
  readonly writer: LogWriter;

  /** Appends one record; `done` hears its offset once it is acknowledged, or an error. */
  appendRecord(record: RecordInput, done: AppendDone): void;
  /**
   * Appends whole encoded records as one piece: a reader sees all of them or none, and nothing
   * lands between them. `done` hears the offset of the first.
   */
  appendBatch(batch: Uint8Array, records: number, done: AppendDone): void;
  /**
   * Appends those records of `batch` whose message ids are not already in the log at or after
   * `since` (nor on their way into it), as one piece; `done` hears once every record of the
   * batch is readable, with the offset of the first one found or appended. Completes a
   * transaction's commit exactly once after a crash or a change of writer.
   */
  appendMissing(batch: Uint8Array, since: number, done: AppendDone): void;

  /**
   * Bytes readable at `offset` in one piece, at most `maxBytes`: they end at the end of the
   * segment holding `offset` or at `endOffset`, whichever comes first. The caller checks that
   * `startOffset <= offset < endOffset`.
   */
  readableAt(offset: number, maxBytes: number): number;
  /** Copies `length` readable bytes at `offset` into `target` at `targetOffset`. */
  readInto(target: Uint8Array, targetOffset: number, offset: number, length: number): void;
  /**
   * `length` readable bytes at `offset` (within one segment, as readableAt gives them), held
   * for a reply sent later from the file: they stay readable and sendable until `release`, even
   * if retention, a cut or a close lets their segment go meanwhile. Absent where a log has no
   * files (test fakes).
   */
  holdRange?(offset: number, length: number): HeldRange;
  /** MetaQ's `offset` answer: the start of the segment holding `offset`, clamped to the log. */
  segmentStartFor(offset: number): number;
  /**
   * For a read at or past `endOffset`: undefined when waiting cannot help (nothing is on its way
   * here), else a promise that settles once `offset` is readable or after `timeoutMs`. A
   * follower uses it so that a client reads its own acknowledged writes.
   */
  whenReadable(offset: number, timeoutMs: number): Promise<void> | undefined;
  /**
   * Why nothing past `endOffset` can become readable until an operator acts (a replicated log
   * whose group cannot elect a leader), or undefined. A read there is refused with it instead
   * of answering an empty log.
   */
  unavailable?(): BrokerError | undefined;

  /** Calls `listener` when the end moves or the writer changes; returns an unsubscribe. */
  onChange(listener: () => void): () => void;
  /** Calls `listener` with the latency of every fsync of this log on this node. */
  onSync(listener: (latencyMs: number) => void): () => void;
  facts(): LogFacts;
  /**
   * Drops sealed segments from the front that `policy` says have expired, and only as far as
   * the log may start (a replicated log only below what every copy may drop) and, when
   * `keepFrom` is given, never a segment that ends above it (an edge's uplink keeps what its
   * hub has not acknowledged; LocalLog honours it, and the uplink runs only on a broker that
   * runs alone).
   */
  applyRetention(policy: DeletePolicy, nowMs: number, keepFrom?: number): Promise<void>;
  /**
   * Drops sealed segments that end at or below `offset` (the base of a snapshot that covers
   * them). Resolves false when the log may not start there yet (a follower whose leader has
   * not dropped them): the caller tries again later.
   */
  compactBefore(offset: number): Promise<boolean>;
  /** Resolves once everything appended so far is written (and, by policy, synced). */
  flush(): Promise<void>;
}

/** The partitions this node serves, by topic and partition number. */
export interface Logs {
  /** The log of a partition, when it exists here and is open. */
  get(topic: string, partition: number): Log | undefined;
  /** The log of a partition, opened (and created empty) if needed; rejects with a BrokerError. */
  open(topic: string, partition: number): Promise<Log>;
  /** Why a partition was refused at start-up (damage), if it was. */
  failure(topic: string, partition: number): Error | undefined;
  failures(): ReadonlyMap<string, Error>;
  /** Every open log with its topic and partition, sorted by topic, then partition. */
  list(): readonly LogEntry[];
  /** Calls `listener` with every log opened from now on; returns an unsubscribe. */
  onOpen(listener: (entry: LogEntry) => void): () => void;
}

export interface LogEntry {
  readonly topic: string;
  readonly partition: number;
  readonly log: Log;
}

/** Topic names starting with `__` hold the broker's own state; clients never write them. */
export function isInternalTopic(topic: string): boolean {
  return topic.startsWith("__");
}

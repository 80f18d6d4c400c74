/**
 * @module PartitionLog: the append-only log of one topic partition, a directory of segments
 * (`<dataPath>/<topic>-<partition>/<start offset>.meta`). Offsets are absolute byte positions.
 *
 * Appends are assigned their offset at once and queued; one writer per partition drains the
 * queue, writes it, and (with group commit) fsyncs once for everything it took, so a single
 * fdatasync acknowledges every append queued behind it. A record is visible to readers once it
 * is acknowledged. With `threshold` flushing (MetaQ's unflushThreshold > 0) appends are
 * acknowledged after the write and synced by count or time.
 *
 * Not here: topics, message ids, protocol. Recovery rules live in recovery.ts.
 */
import * as os from "node:os";
import { setImmediate } from "node:timers";
import { assert } from "../assert.ts";
import type { Clock } from "../clock.ts";
import { BrokerError, describeError, isNoSpace } from "../errors.ts";
import { RECORD_HEADER_BYTES } from "../limits.ts";
import type { Logger } from "../log.ts";
import { type RecordInput, writeRecord } from "../protocol/record.ts";
import { scanSegment, type ScanVerdict } from "./recovery.ts";
import { parseSegmentFileName, Segment, segmentFileName } from "./segment.ts";
import type { HeldRange } from "./log.ts";
import { joinPath, makeDirDurably, type Storage } from "./storage.ts";
import { cpuBusyProbe, type SyncMode, SyncModeChooser } from "./sync_mode.ts";

export type FlushPolicy =
  | { readonly kind: "group" }
  | { readonly kind: "threshold"; readonly messages: number; readonly intervalMs: number };

/** MetaQ's unflushThreshold <= 0 means group commit; above 0, sync by count or interval. */
export function flushPolicyOf(unflushThreshold: number, unflushInterval: number): FlushPolicy {
  return unflushThreshold <= 0
    ? { kind: "group" }
    : { kind: "threshold", messages: unflushThreshold, intervalMs: unflushInterval };
}

export interface PartitionLogOptions {
  readonly storage: Storage;
  /** The partition's directory. */
  readonly dir: string;
  /** `<topic>-<partition>`, for messages. */
  readonly name: string;
  readonly segmentBytesMax: number;
  /** Largest data length a record may have; longer lengths are treated as damage. */
  readonly recordDataBytesMax: number;
  readonly flush: FlushPolicy;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Where small group commits sync (default: one chooser shared by the process's logs). */
  readonly syncModes?: SyncModeChooser;
}

export interface OpenOptions {
  /** Scan every segment's checksums at open, not only the active one. */
  readonly verifyAll: boolean;
  /** Cut the log at the first damaged record instead of refusing to open. */
  readonly repair: boolean;
  /** Offset of the first segment when the directory is new. */
  readonly initialOffset?: number;
}

export interface AppendTicket {
  /** Partition offset of the first byte appended. */
  readonly offset: number;
  /** Resolves once the append is acknowledged (synced, with group commit). */
  readonly done: Promise<void>;
}

/** What open found and did, for logs and tests. */
export interface RecoveryReport {
  readonly segments: number;
  readonly records: number;
  readonly bytesCut: number;
  readonly lastId?: bigint;
  readonly repairedAt?: number;
}

export class CorruptLogError extends Error {
  override readonly name = "CorruptLogError";
  readonly path: string;
  readonly offset: number;

  constructor(path: string, offset: number, reason: string) {
    super(
      `Cannot open ${path}: ${reason} at offset ${offset}; ` +
        "run 'metaq verify --repair' to cut the log there (data after it is moved aside)",
    );
    this.path = path;
    this.offset = offset;
  }
}

/** Appends that one write (and, with group commit, one sync) acknowledges together. */
class Batch {
  readonly callbacks: ((error?: Error) => void)[] = [];
  #deferred: PromiseWithResolvers<void> | undefined;

  /** A promise for the batch, made only when a caller asks for one. */
  get promise(): Promise<void> {
    this.#deferred ??= settledQuietly(Promise.withResolvers<void>());
    return this.#deferred.promise;
  }

  settle(error?: Error): void {
    for (const callback of this.callbacks) callback(error);
    if (error) this.#deferred?.reject(error);
    else this.#deferred?.resolve();
  }
}

interface Run {
  readonly segmentStart: number;
  readonly chunks: Uint8Array[];
  bytes: number;
}

const FILL_BYTES = 256 * 1024;

/**
 * Writers of every log in this process scheduled for the next turn and not started yet: one
 * event loop runs them all, so a writer that sees others waiting leaves its fsync to the pool.
 */
let writersWaiting = 0;

/** One chooser for the process: what makes either mode slow (CPU contention, the disk) is shared. */
const processSyncModes = new SyncModeChooser({
  busy: cpuBusyProbe({
    nowMs: () => performance.now(),
    cpuTimes: () => {
      let idle = 0;
      let total = 0;
      for (const { times } of os.cpus()) {
        idle += times.idle;
        total += times.user + times.nice + times.sys + times.idle + times.irq;
      }
      return { idle, total };
    },
  }),
});

export class PartitionLog {
  readonly options: PartitionLogOptions;
  readonly recovery: RecoveryReport;
  #segments: Segment[];
  /** Offset the next append gets (includes queued bytes). */
  #nextOffset: number;
  /** Everything below is written to the files. */
  #writtenEnd: number;
  /** Everything below is synced. */
  #durableEnd: number;
  /** Everything below is acknowledged and readable. */
  #ackedEnd: number;
  #messageCount: number;
  #pending: Run[] = [];
  #pendingBytes = 0;
  #pendingRecords = 0;
  /** Start of the segment the newest reserved byte belongs to. */
  #tailSegmentStart: number;
  #fill: Uint8Array = new Uint8Array(0);
  /** Fill buffers holding the queued bytes (handed to the writer with them). */
  #fillBuffers: Uint8Array[] = [];
  /** Fill buffers the writer is done with, reused instead of allocating (and zeroing) new ones. */
  #spareFills: Uint8Array[] = [];
  #fillUsed = 0;
  #fillStart = 0;
  #batch: Batch | undefined;
  #writing = false;
  /** Holds taken by hold() and not yet released; the writer waits while any is held. */
  #holds = 0;
  #unflushedMessages = 0;
  #lastSyncMs: number;
  /** The timed sync of threshold flushing, run beside the writer (see #acknowledge). */
  #timedSync: Promise<void> | undefined;
  /** The last timed sync failed: the next batch syncs before its puts are answered. */
  #timedSyncFailed = false;
  /** Fires when the interval since the last sync has passed and bytes are still unsynced. */
  #syncTimer: ReturnType<typeof setTimeout> | undefined;
  /** Counts cuts of the file: a sync that a cut overtook proves nothing about what follows. */
  #cuts = 0;
  #closed = false;
  #drained: PromiseWithResolvers<void> | undefined;
  #listeners = new Set<(ackedEnd: number) => void>();
  #syncListeners = new Set<(latencyMs: number) => void>();
  #syncCount = 0;
  #lastSyncLatencyMs = 0;

  private constructor(
    options: PartitionLogOptions,
    segments: Segment[],
    recovery: RecoveryReport,
  ) {
    assert(segments.length > 0);
    this.options = options;
    this.recovery = recovery;
    this.#segments = segments;
    const end = segments[segments.length - 1].endOffset;
    this.#nextOffset = end;
    this.#writtenEnd = end;
    this.#durableEnd = end;
    this.#ackedEnd = end;
    this.#tailSegmentStart = segments[segments.length - 1].startOffset;
    this.#messageCount = recovery.records;
    this.#lastSyncMs = options.clock.monotonicMs();
  }

  /** Opens (or creates) the log in `options.dir`, running recovery on what is there. */
  static async open(options: PartitionLogOptions, open: OpenOptions): Promise<PartitionLog> {
    const { storage, dir } = options;
    await makeDirDurably(storage, dir);
    const starts = storage.list(dir)
      .map((name) => parseSegmentFileName(name))
      .filter((start): start is number => start !== undefined)
      .sort((a, b) => a - b);
    if (starts.length === 0) {
      const start = open.initialOffset ?? 0;
      const file = storage.open(joinPath(dir, segmentFileName(start)), { create: true });
      await storage.syncDir(dir);
      return new PartitionLog(options, [new Segment(start, file, 0)], {
        segments: 1,
        records: 0,
        bytesCut: 0,
      });
    }
    return await PartitionLog.#recover(options, open, starts);
  }

  static async #recover(
    options: PartitionLogOptions,
    open: OpenOptions,
    starts: number[],
  ): Promise<PartitionLog> {
    const { segments, report } = await recoverSegments(options, open, starts);
    // After a process crash the kernel still holds bytes that were never synced, and recovery
    // reads them as if they were on disk; a power cut later could still lose them. They count
    // as durable (a replica counts them toward a commit) only once synced. Sealed segments were
    // synced before the next one started.
    // The same for the last segment's directory entry: a process killed in the middle of a roll
    // created the file and never synced the directory. Appends go into that file now, so a power
    // cut would take acknowledged records with the entry (the uplink e2e test's power cuts
    // found this). The two syncs run side by side: start-up waits for one, not two in a row.
    await Promise.all([
      segments[segments.length - 1].file.sync(),
      options.storage.syncDir(options.dir),
    ]);
    return new PartitionLog(options, segments, report);
  }

  get name(): string {
    return this.options.name;
  }

  /** First offset still stored (retention moves it forward). */
  get startOffset(): number {
    return this.#segments[0].startOffset;
  }

  /** End of acknowledged, readable data. */
  get ackedEnd(): number {
    return this.#ackedEnd;
  }

  get writtenEnd(): number {
    return this.#writtenEnd;
  }

  get durableEnd(): number {
    return this.#durableEnd;
  }

  /** Offset the next append will get. */
  get nextOffset(): number {
    return this.#nextOffset;
  }

  /** Records appended (approximate across restarts, as MetaQ's count is). */
  get messageCount(): number {
    return this.#messageCount;
  }

  /** Bytes stored in all segments. */
  get sizeBytes(): number {
    return this.#writtenEnd - this.startOffset;
  }

  get segmentStarts(): number[] {
    return this.#segments.map((segment) => segment.startOffset);
  }

  get syncCount(): number {
    return this.#syncCount;
  }

  get lastSyncLatencyMs(): number {
    return this.#lastSyncLatencyMs;
  }

  /** Bytes queued and not yet written. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Calls `listener` whenever more data becomes readable; returns an unsubscribe function. */
  onAppend(listener: (ackedEnd: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Re-reads every durable record and checks its checksum (a scrub): the first damage found, or
   * undefined. Reads run between writes (this is one thread), so the log stays in service.
   */
  verifyDurable(): { offset: number; reason: string } | undefined {
    for (const segment of this.#segments) {
      const size = Math.min(segment.size, this.#durableEnd - segment.startOffset);
      if (size <= 0) continue;
      const verdict = scanSegment({
        size,
        sealed: true,
        lengthMax: this.options.recordDataBytesMax,
        read: (position, length) => {
          const bytes = new Uint8Array(length);
          segment.file.read(bytes, 0, length, position);
          return bytes;
        },
      });
      if (verdict.kind !== "clean") {
        return { offset: segment.startOffset + verdict.validEnd, reason: verdict.reason };
      }
    }
    return undefined;
  }

  /** Copies the segment files holding `offset` and after to `<name>.damaged` (evidence for operators). */
  async keepDamagedCopies(offset: number): Promise<void> {
    const { storage } = this.options;
    for (const segment of this.#segments) {
      if (segment.endOffset <= offset) continue;
      const bytes = storage.readFile(segment.file.path);
      if (bytes) await storage.writeFileAtomic(`${segment.file.path}.damaged`, bytes);
    }
  }

  /** Calls `listener` with the latency of every sync (for fsync histograms). */
  onSync(listener: (latencyMs: number) => void): () => void {
    this.#syncListeners.add(listener);
    return () => this.#syncListeners.delete(listener);
  }

  /** Queues one record built from its parts. */
  appendRecord(record: RecordInput): AppendTicket {
    const offset = this.append(record);
    return { offset, done: this.#batch!.promise };
  }

  /**
   * Queues one record; `onDone` is called once it is acknowledged (or failed). Returns its
   * offset. The put path uses this form: no promise per message.
   */
  append(record: RecordInput, onDone?: (error?: Error) => void): number {
    const bytes = RECORD_HEADER_BYTES + record.data.length;
    const target = this.#reserve(bytes);
    writeRecord(target.buffer, target.position, record);
    this.#queued(bytes, 1, onDone);
    return target.offset;
  }

  /**
   * Queues already-encoded records (a transaction's messages, a replicated batch); they are
   * written in one piece, so a reader sees all of them or none.
   */
  appendEncoded(bytes: Uint8Array, records: number): AppendTicket {
    assert(bytes.length > 0);
    // A batch that crosses the segment size goes in pieces, each ending where a segment rolls
    // (a transaction's batch may span thousands of small segments: a loop, not recursion).
    let first: AppendTicket | undefined;
    let rest = bytes;
    let restRecords = records;
    while (true) {
      const split = restRecords > 1 ? this.#segmentSplit(rest) : undefined;
      const ticket = split
        ? this.#appendPiece(rest.subarray(0, split.bytes), split.records)
        : this.#appendPiece(rest, restRecords);
      first ??= ticket;
      if (!split) return first;
      rest = rest.subarray(split.bytes);
      restRecords -= split.records;
    }
  }

  /** Queues encoded records that fit the tail segment (or start the next one). */
  #appendPiece(bytes: Uint8Array, records: number): AppendTicket {
    let offset: number;
    if (bytes.length >= FILL_BYTES) {
      // Large (a replicated 64 MiB record): written from the caller's buffer, never copied.
      // Callers hand over their bytes and do not change them afterwards.
      offset = this.#enqueueChunk(bytes);
    } else {
      const target = this.#reserve(bytes.length);
      target.buffer.set(bytes, target.position);
      offset = target.offset;
    }
    this.#queued(bytes.length, records);
    return { offset, done: this.#batch!.promise };
  }

  /**
   * Where a batch of records must be cut so that segments end as they would had its records
   * come one by one (MetaQ rolls after the record that fills a segment): the bytes and records
   * up to and including the record that reaches the segment's size; undefined when the whole
   * batch fits.
   */
  #segmentSplit(bytes: Uint8Array): { bytes: number; records: number } | undefined {
    const max = this.options.segmentBytesMax;
    const used = this.#nextOffset - this.#tailSegmentStart;
    const room = used >= max ? max : max - used; // a full segment rolls before this batch
    if (bytes.length <= room) return undefined;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let position = 0;
    let records = 0;
    while (position < room && position + RECORD_HEADER_BYTES <= bytes.length) {
      const length = view.getInt32(position);
      assert(length >= 0, `${this.name}: a batch's record at ${position} has length ${length}`);
      position += RECORD_HEADER_BYTES + length;
      records += 1;
    }
    return position < bytes.length ? { bytes: position, records } : undefined;
  }

  /**
   * Holds the writer: appends are still accepted and get their offsets, but nothing more is
   * written until every hold is released (the returned function; calling it twice is a no-op).
   * A transaction commit holds its partitions while its journal record is fsynced, so a batch
   * never reaches the disk before the record that says where it goes.
   */
  hold(): () => void {
    this.#holds += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      assert(this.#holds > 0);
      this.#holds -= 1;
      if (this.#holds === 0 && this.#pending.length > 0) this.#scheduleDrain();
    };
  }

  /**
   * Reads up to `maxBytes` raw bytes at `offset`, never past the end of the segment holding
   * `offset` and never past `limit` (default: the acknowledged end). The caller checks that
   * `startOffset <= offset < limit`.
   */
  read(offset: number, maxBytes: number, limit = this.#ackedEnd): Uint8Array {
    const segment = this.#segmentFor(offset);
    assert(limit <= this.#writtenEnd);
    const length = Math.min(maxBytes, segment.endOffset - offset, limit - offset);
    assert(length > 0, `read at ${offset} of ${this.name} has nothing to return`);
    const bytes = new Uint8Array(length);
    segment.readInto(bytes, 0, offset, length);
    return bytes;
  }

  /** Like read(), into `target` at `targetOffset`; returns the bytes copied. */
  readInto(target: Uint8Array, targetOffset: number, offset: number, length: number): void {
    this.#segmentHolding(offset, length).readInto(target, targetOffset, offset, length);
  }

  /**
   * The `length` bytes at `offset` for a reply sent later: they stay readable and sendable until
   * `release`, even if retention, a cut or a close lets their segment go meanwhile (its file is
   * closed at the last release instead). Positions given to the hold count from `offset`.
   */
  holdRange(offset: number, length: number): HeldRange {
    const segment = this.#segmentHolding(offset, length);
    const letGo = segment.hold();
    let held = true;
    const check = (from: number, bytes: number) => {
      assert(held, `${this.name}: a released range was read`);
      assert(from >= 0 && from + bytes <= length);
    };
    return {
      readInto: (target, targetOffset, from, bytes) => {
        check(from, bytes);
        segment.readInto(target, targetOffset, offset + from, bytes);
      },
      sendInto: (socketFd, from, bytes) => {
        check(from, bytes);
        return segment.sendInto(socketFd, offset + from, bytes);
      },
      release: () => {
        held = false;
        letGo();
      },
    };
  }

  /** The segment holding `length` written bytes at `offset`, all of them. */
  #segmentHolding(offset: number, length: number): Segment {
    const segment = this.#segmentFor(offset);
    assert(offset + length <= segment.endOffset);
    assert(offset + length <= this.#writtenEnd);
    return segment;
  }

  /** Bytes readable at `offset` in one read (bounded by its segment and `limit`). */
  readableAt(offset: number, maxBytes: number, limit = this.#ackedEnd): number {
    const segment = this.#segmentFor(offset);
    return Math.max(0, Math.min(maxBytes, segment.endOffset - offset, limit - offset));
  }

  /** MetaQ's `offset` answer: the start of the segment holding `offset`, clamped to the log. */
  segmentStartFor(offset: number, limit = this.#ackedEnd): number {
    if (offset < this.startOffset) return this.startOffset;
    if (offset >= limit) return limit;
    return this.#segmentFor(offset).startOffset;
  }

  /** Waits until every queued append is written and acknowledged. */
  async flush(): Promise<void> {
    while (this.#writing || this.#pending.length > 0) {
      this.#drained ??= settledQuietly(Promise.withResolvers<void>());
      if (!this.#writing) this.#scheduleDrain();
      await this.#drained.promise;
    }
    await this.#timedSync;
    if (this.#durableEnd < this.#writtenEnd) await this.#syncActive();
  }

  /**
   * Cuts the log back to `offset` (a record boundary), deleting whole segments above it.
   * Used by replication (conflicting suffix) and transaction recovery. Waits for the writer.
   */
  async truncate(offset: number): Promise<void> {
    await this.flush();
    assert(
      offset >= this.startOffset && offset <= this.#writtenEnd,
      `truncate ${this.name} to ${offset}`,
    );
    const { storage, dir } = this.options;
    while (
      this.#segments.length > 1 && this.#segments[this.#segments.length - 1].startOffset > offset
    ) {
      const segment = this.#segments.pop()!;
      segment.retire();
      storage.remove(segment.file.path);
    }
    const active = this.#segments[this.#segments.length - 1];
    active.truncate(offset - active.startOffset);
    // The log ends at the cut from this moment, not once it is synced: a read or an id scan
    // (appendMissing) while the fsync below runs must not look past the segment's new end.
    this.#writtenEnd = offset;
    this.#durableEnd = Math.min(this.#durableEnd, offset);
    this.#ackedEnd = Math.min(this.#ackedEnd, offset);
    this.#cuts += 1;
    this.#resetQueue(offset);
    await active.file.sync();
    await storage.syncDir(dir);
    this.#durableEnd = Math.max(this.#durableEnd, Math.min(offset, this.#writtenEnd));
  }

  /**
   * Drops every segment and starts empty at `offset` (a replica that fell behind the leader's
   * log start, or a partition created at a master's minimum offset).
   */
  async resetTo(offset: number): Promise<void> {
    await this.flush();
    const { storage, dir } = this.options;
    const file = storage.open(joinPath(dir, segmentFileName(offset)), { create: true });
    file.truncate(0);
    await storage.syncDir(dir);
    for (const segment of this.#segments) {
      // A segment already named for `offset` is the file just emptied: its old handle closes,
      // the file stays.
      segment.retire();
      if (segment.startOffset !== offset) storage.remove(segment.file.path);
    }
    await storage.syncDir(dir);
    this.#segments = [new Segment(offset, file, 0)];
    this.#writtenEnd = this.#durableEnd = this.#ackedEnd = offset;
    this.#cuts += 1;
    this.#resetQueue(offset);
  }

  /**
   * Removes sealed segments from the front of the log, oldest first, while `shouldRemove`
   * says so; the active segment is never removed. Returns the segments taken out, whose files
   * the caller deletes or archives (the log no longer reads them).
   */
  detachOldSegments(
    shouldRemove: (path: string, endOffset: number) => boolean,
  ): string[] {
    const removed: string[] = [];
    while (this.#segments.length > 1) {
      const oldest = this.#segments[0];
      if (!shouldRemove(oldest.file.path, oldest.endOffset)) break;
      oldest.retire();
      this.#segments.shift();
      removed.push(oldest.file.path);
    }
    return removed;
  }

  /** Syncs everything and closes the files. Appends after close are refused. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flush();
    this.#closed = true;
    clearTimeout(this.#syncTimer);
    for (const segment of this.#segments) segment.retire();
  }

  /** Called by the owner's timer in threshold mode; syncs if the interval has passed. */
  async syncIfDue(): Promise<void> {
    const policy = this.options.flush;
    if (policy.kind !== "threshold" || this.#writing || this.#timedSync) return;
    const due = this.options.clock.monotonicMs() - this.#lastSyncMs >= policy.intervalMs;
    if (due && this.#durableEnd < this.#writtenEnd) await this.#syncActive();
  }

  #segmentFor(offset: number): Segment {
    const segments = this.#segments;
    let low = 0;
    let high = segments.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (segments[middle].startOffset <= offset) low = middle;
      else high = middle - 1;
    }
    const segment = segments[low];
    assert(offset >= segment.startOffset, `offset ${offset} is below ${this.name}'s start`);
    return segment;
  }

  /** Finds room for `bytes` in the fill buffer, starting a new run when the segment is full. */
  #reserve(bytes: number): { buffer: Uint8Array; position: number; offset: number } {
    if (this.#closed) throw new BrokerError("unavailable", `partition ${this.name} is closed`);
    const offset = this.#nextOffset;
    let run: Run | undefined = this.#pending[this.#pending.length - 1];
    if (offset - this.#tailSegmentStart >= this.options.segmentBytesMax) {
      // MetaQ rolls after the append that filled the segment: this one opens the next.
      this.#tailSegmentStart = offset;
      run = undefined;
    }
    if (!run || run.segmentStart !== this.#tailSegmentStart) {
      this.#sealFill();
      run = { segmentStart: this.#tailSegmentStart, chunks: [], bytes: 0 };
      this.#pending.push(run);
    }
    if (this.#fill.length - this.#fillUsed < bytes) {
      this.#sealFill();
      const spare = this.#spareFills.pop();
      this.#fill = spare && spare.length >= bytes
        ? spare
        : new Uint8Array(Math.max(FILL_BYTES, bytes));
      this.#fillBuffers.push(this.#fill);
      this.#fillUsed = this.#fillStart = 0;
    }
    const position = this.#fillUsed;
    this.#fillUsed += bytes;
    run.bytes += bytes;
    this.#nextOffset += bytes;
    this.#pendingBytes += bytes;
    return { buffer: this.#fill, position, offset };
  }

  /** Queues `bytes` as they are (no fill buffer); returns their offset. */
  #enqueueChunk(bytes: Uint8Array): number {
    if (this.#closed) throw new BrokerError("unavailable", `partition ${this.name} is closed`);
    const offset = this.#nextOffset;
    let run: Run | undefined = this.#pending[this.#pending.length - 1];
    if (offset - this.#tailSegmentStart >= this.options.segmentBytesMax) {
      this.#tailSegmentStart = offset;
      run = undefined;
    }
    this.#sealFill();
    if (!run || run.segmentStart !== this.#tailSegmentStart) {
      run = { segmentStart: this.#tailSegmentStart, chunks: [], bytes: 0 };
      this.#pending.push(run);
    }
    run.chunks.push(bytes);
    run.bytes += bytes.length;
    this.#nextOffset += bytes.length;
    this.#pendingBytes += bytes.length;
    return offset;
  }

  /** Moves the filled part of the fill buffer into the newest run. */
  #sealFill(): void {
    if (this.#fillUsed > this.#fillStart) {
      const run = this.#pending[this.#pending.length - 1];
      assert(run !== undefined);
      run.chunks.push(this.#fill.subarray(this.#fillStart, this.#fillUsed));
    }
    this.#fillStart = this.#fillUsed;
  }

  /** Forgets everything queued (after a failure, or before a truncation). */
  #resetQueue(end: number): void {
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#pendingRecords = 0;
    this.#batch = undefined;
    this.#fill = new Uint8Array(0);
    this.#fillBuffers = [];
    this.#fillUsed = this.#fillStart = 0;
    this.#nextOffset = end;
    this.#tailSegmentStart = this.#segments[this.#segments.length - 1].startOffset;
  }

  #queued(bytes: number, records: number, onDone?: (error?: Error) => void): void {
    assert(bytes > 0);
    this.#messageCount += records;
    this.#pendingRecords += records;
    this.#batch ??= new Batch();
    if (onDone) this.#batch.callbacks.push(onDone);
    this.#scheduleDrain();
  }

  #scheduleDrain(): void {
    if (this.#writing || this.#holds > 0) return;
    this.#writing = true;
    // The next turn, not now: the puts of every connection read in this turn join the batch.
    writersWaiting += 1;
    setImmediate(() => {
      writersWaiting -= 1;
      void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    try {
      while (this.#pending.length > 0 && this.#holds === 0) {
        this.#sealFill();
        const runs = this.#pending;
        const batch = this.#batch!;
        const records = this.#pendingRecords;
        const batchEnd = this.#nextOffset;
        const batchStart = this.#writtenEnd;
        const tailSegmentStart = this.#tailSegmentStart;
        const fills = this.#fillBuffers;
        this.#resetQueue(batchEnd);
        this.#tailSegmentStart = tailSegmentStart;
        let acknowledged = false;
        try {
          await this.#writeRuns(runs);
          // The bytes are in the file now: their buffers can take the next appends.
          for (const fill of fills) {
            if (this.#spareFills.length < 2 && fill.length === FILL_BYTES) {
              this.#spareFills.push(fill);
            }
          }
          assert(this.#writtenEnd === batchEnd);
          await this.#acknowledge(batchEnd, records, batchEnd - batchStart);
          acknowledged = true;
        } catch (error) {
          this.#failBatch(error, batchStart, batch);
        }
        // Outside the try: only a failed write or sync may fail the batch, never a caller's
        // callback or a reader. Acknowledgements first, then the readers waiting for data (long
        // polls): a producer waits on its ack, a reader's reply can follow microseconds later.
        if (acknowledged) {
          batch.settle();
          for (const listener of this.#listeners) listener(batchEnd);
        }
      }
    } finally {
      this.#writing = false;
      this.#drained?.resolve();
      this.#drained = undefined;
    }
  }

  async #writeRuns(runs: readonly Run[]): Promise<void> {
    for (const run of runs) {
      let active = this.#segments[this.#segments.length - 1];
      if (run.segmentStart !== active.startOffset) {
        assert(run.segmentStart === active.endOffset);
        await this.#roll(run.segmentStart);
        active = this.#segments[this.#segments.length - 1];
      }
      active.append(run.chunks, run.bytes);
      this.#writtenEnd += run.bytes;
    }
  }

  /** Seals the active segment (synced first, so no torn tail can hide in it) and starts one. */
  async #roll(start: number): Promise<void> {
    await this.#syncActive();
    const { storage, dir } = this.options;
    const file = storage.open(joinPath(dir, segmentFileName(start)), { create: true });
    file.truncate(0);
    this.#segments.push(new Segment(start, file, 0));
    await storage.syncDir(dir);
  }

  async #acknowledge(batchEnd: number, records: number, bytes: number): Promise<void> {
    const policy = this.options.flush;
    if (policy.kind === "group") {
      const syncModes = this.options.syncModes ?? processSyncModes;
      const choice = syncModes.choose({
        inlineAvailable: this.#segments[this.#segments.length - 1].file.syncNow !== undefined,
        records,
        bytes,
        lastSyncLatencyMs: this.#lastSyncLatencyMs,
        otherWritersWaiting: writersWaiting,
      });
      const synced = await this.#syncActive(choice.mode);
      if (choice.measured && synced) syncModes.record(choice.mode, this.#lastSyncLatencyMs);
    } else {
      this.#unflushedMessages += records;
      const overdue = this.options.clock.monotonicMs() - this.#lastSyncMs >= policy.intervalMs;
      // The message bound is MetaQ's promise (never more unsynced records), so puts wait for it.
      // The interval is "synced about this often": that sync runs beside the writer, so a long
      // fsync of a second's worth of data does not hold every put behind it.
      if (this.#unflushedMessages >= policy.messages || this.#timedSyncFailed) {
        await this.#syncActive();
      } else if (overdue) this.#startTimedSync();
      else this.#armSyncTimer(policy.intervalMs);
    }
    this.#ackedEnd = batchEnd;
  }

  #startTimedSync(): void {
    if (this.#timedSync) return;
    this.#timedSync = this.#syncActive().then(() => {}, (error) => {
      // Nothing waited on this sync: the next batch syncs in line, so its puts see the error.
      this.#timedSyncFailed = true;
      this.options.logger.log("error", "Cannot sync partition", {
        partition: this.name,
        reason: describeError(error),
      });
    }).finally(() => {
      this.#timedSync = undefined;
      // Bytes written while it ran are not covered: they get the next interval's sync.
      const policy = this.options.flush;
      if (policy.kind === "threshold" && this.#durableEnd < this.#writtenEnd) {
        this.#armSyncTimer(policy.intervalMs);
      }
    });
  }

  /**
   * Bounds how long written bytes stay unsynced when appends stop: a sync starts once the
   * interval since the last one has passed, not at the next append or maintenance round. A
   * writer still busy then starts it itself when it acknowledges (it finds the sync overdue).
   */
  #armSyncTimer(intervalMs: number): void {
    if (this.#syncTimer !== undefined || this.#closed) return;
    const sinceMs = this.options.clock.monotonicMs() - this.#lastSyncMs;
    const waitMs = Math.min(intervalMs, Math.max(0, intervalMs - sinceMs));
    this.#syncTimer = setTimeout(() => {
      this.#syncTimer = undefined;
      if (this.#closed || this.#writing || this.#durableEnd >= this.#writtenEnd) return;
      this.#startTimedSync();
    }, waitMs);
    (this.#syncTimer as { unref?: () => void }).unref?.();
  }

  /** Syncs the active segment (sync_mode.ts: where); false when nothing needed it. */
  async #syncActive(mode: SyncMode = "pool"): Promise<boolean> {
    const target = this.#writtenEnd;
    if (this.#durableEnd >= target) return false;
    const messages = this.#unflushedMessages;
    const cuts = this.#cuts;
    const started = this.options.clock.monotonicMs();
    const file = this.#segments[this.#segments.length - 1].file;
    if (mode === "inline" && file.syncNow) file.syncNow();
    else await file.sync();
    this.#lastSyncMs = this.options.clock.monotonicMs();
    this.#lastSyncLatencyMs = this.#lastSyncMs - started;
    this.#syncCount += 1;
    for (const listener of this.#syncListeners) listener(this.#lastSyncLatencyMs);
    // Appends made while the sync ran are not covered by it.
    this.#unflushedMessages = Math.max(0, this.#unflushedMessages - messages);
    if (this.#cuts === cuts) this.#durableEnd = Math.max(this.#durableEnd, target);
    this.#timedSyncFailed = false;
    return true;
  }

  /**
   * A failed write or sync: nothing of this batch (or queued after it) is acknowledged. The
   * file is cut back to the last durable end (but never below the acknowledged end), so this
   * batch's bytes, which the kernel may have dropped after a failed fsync, are never trusted,
   * and later appends start from there again.
   */
  #failBatch(error: unknown, batchStart: number, batch: Batch): void {
    // Never below what was acknowledged: with threshold flushing, acknowledged records may not be
    // synced yet, and readers may have seen them; cutting them would hand their offsets to
    // other data. (Group commit acknowledges only synced bytes, so there ackedEnd <= durableEnd.)
    const cutTo = Math.max(this.#ackedEnd, Math.min(this.#durableEnd, batchStart));
    const queued = this.#batch;
    const kind = isNoSpace(error) ? "storageFull" : "storageFailed";
    const failure = new BrokerError(kind, `${this.name}: ${describeError(error)}`, {
      cause: error,
    });
    this.options.logger.log("error", "Cannot append to partition", {
      partition: this.name,
      reason: describeError(error),
      cutTo,
    });
    try {
      while (
        this.#segments.length > 1 && this.#segments[this.#segments.length - 1].startOffset > cutTo
      ) {
        const segment = this.#segments.pop()!;
        segment.retire();
        this.options.storage.remove(segment.file.path);
      }
      const active = this.#segments[this.#segments.length - 1];
      active.truncate(cutTo - active.startOffset);
    } catch (cutError) {
      this.options.logger.log("error", "Cannot cut partition back after a failed append", {
        partition: this.name,
        reason: describeError(cutError),
      });
    }
    this.#resetQueue(cutTo);
    this.#writtenEnd = cutTo;
    this.#ackedEnd = Math.min(this.#ackedEnd, cutTo);
    this.#durableEnd = Math.min(this.#durableEnd, cutTo);
    this.#cuts += 1;
    batch.settle(failure);
    queued?.settle(failure);
  }
}

/** Opens existing segments: checks they are contiguous, scans them, cuts a torn tail. */
async function recoverSegments(
  options: PartitionLogOptions,
  open: OpenOptions,
  starts: number[],
): Promise<{ segments: Segment[]; report: RecoveryReport }> {
  const { storage, dir, logger } = options;
  const segments = starts.map((start) => {
    const file = storage.open(joinPath(dir, segmentFileName(start)), { create: false });
    return new Segment(start, file, file.size());
  });
  let records = 0;
  let bytesCut = 0;
  let lastId: bigint | undefined;
  let repairedAt: number | undefined;
  const gap = segments.findIndex((segment, index) =>
    index < segments.length - 1 && segment.endOffset !== segments[index + 1].startOffset
  );
  if (gap >= 0) {
    const reason = `segment ends at ${segments[gap].endOffset} but the next starts at ` +
      `${segments[gap + 1].startOffset}`;
    if (!open.repair) {
      closeAll(segments);
      throw new CorruptLogError(dir, segments[gap].endOffset, reason);
    }
    moveAside(storage, segments.splice(gap + 1));
    await storage.syncDir(dir);
    repairedAt = segments[gap].endOffset;
    logger.log("warn", "Repaired partition: segments after a gap moved aside", {
      partition: options.name,
      reason,
    });
  }
  for (let index = 0; index < segments.length; index++) {
    const segment = segments[index];
    const sealed = index < segments.length - 1;
    if (sealed && !open.verifyAll) continue;
    const verdict = scanOne(options, segment, sealed);
    records += verdict.records;
    lastId = verdict.lastId ?? lastId;
    if (verdict.kind === "clean") continue;
    if (verdict.kind === "corrupt" && !open.repair) {
      closeAll(segments);
      throw new CorruptLogError(
        segment.file.path,
        segment.startOffset + verdict.validEnd,
        verdict.reason,
      );
    }
    const cut = segment.size - verdict.validEnd;
    bytesCut += cut;
    if (verdict.kind === "corrupt") {
      // Keep a copy of the damaged file: repair cuts data, it never destroys the evidence.
      await storage.writeFileAtomic(
        `${segment.file.path}.damaged`,
        storage.readFile(segment.file.path)!,
      );
    }
    segment.truncate(verdict.validEnd);
    await segment.file.sync();
    if (verdict.kind === "corrupt") {
      repairedAt = segment.startOffset + verdict.validEnd;
      moveAside(storage, segments.splice(index + 1));
      await storage.syncDir(dir);
      logger.log(
        "warn",
        "Repaired damaged partition: cut at the damage, later segments moved aside",
        {
          partition: options.name,
          offset: repairedAt,
          reason: verdict.reason,
          bytesCut: cut,
        },
      );
    } else {
      logger.log("warn", "Cut torn tail of partition", {
        partition: options.name,
        offset: segment.endOffset,
        bytesCut: cut,
        reason: verdict.reason,
      });
    }
  }
  return { segments, report: { segments: segments.length, records, bytesCut, lastId, repairedAt } };
}

function scanOne(options: PartitionLogOptions, segment: Segment, sealed: boolean): ScanVerdict {
  return scanSegment({
    size: segment.size,
    sealed,
    lengthMax: options.recordDataBytesMax,
    read: (position, length) => {
      const bytes = new Uint8Array(length);
      segment.file.read(bytes, 0, length, position);
      return bytes;
    },
  });
}

/** Renames damaged-suffix segments so the loader ignores them but nothing is deleted. */
function moveAside(storage: Storage, segments: Segment[]): void {
  for (const segment of segments) {
    segment.file.close();
    storage.rename(segment.file.path, `${segment.file.path}.damaged`);
  }
}

function closeAll(segments: readonly Segment[]): void {
  for (const segment of segments) segment.file.close();
}

/**
 * A rejection nobody awaits must not end the process (callers that await still see it), so
 * every completion made here carries a no-op handler.
 */
function settledQuietly<T>(resolvers: PromiseWithResolvers<T>): PromiseWithResolvers<T> {
  resolvers.promise.catch(() => {});
  return resolvers;
}

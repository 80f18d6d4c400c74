/**
 * @module ReplicatedLog: the Log port over one Raft group whose log is a partition's segment
 * log (replica.ts drives it). Appends are proposed to Raft and answered once committed (or,
 * with ack=leader, once the leader stored them); readers see committed records only. Only the
 * leader takes appends: elsewhere they are refused with `notLeader`, and the edge has already
 * sent the request to the leader. A follower asked to read past what it knows is committed
 * first asks the leader how far the commit has gone, so a client reads its own writes.
 */
import type { DeletePolicy } from "../config/retention_policy.ts";
import { BrokerError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { type RecordInput, walkRecords, writeRecord } from "../protocol/record.ts";
import { RECORD_DATA_BYTES_MAX, RECORD_HEADER_BYTES } from "../limits.ts";
import type {
  AppendDone,
  AppendOutcome,
  HeldRange,
  Log,
  LogFacts,
  LogWriter,
} from "../store/log.ts";
import { findIds, idsOf, recordIdAt, withoutIds } from "../store/missing_records.ts";
import { applyRetention } from "../store/retention.ts";
import type { Storage } from "../store/storage.ts";
import type { Timers } from "../timers.ts";
import type { Replica } from "./replica.ts";

/** What the log needs from its node besides the replica. */
export interface ReplicatedLogParts {
  readonly storage: Storage;
  readonly logger: Logger;
  /** For the bounded waits (a ready leader, a readable end). */
  readonly timers: Timers;
  /** Asks the group's leader for its commit offset; undefined when it cannot be asked. */
  readonly askLeaderCommit: () => Promise<number | undefined>;
  /** Whether time-based retention applies (the broker's own `__` logs are compacted instead). */
  readonly retained: boolean;
  /** Why the group cannot elect a leader until an operator acts, if so. */
  readonly whyLeaderless?: () => string | undefined;
}

/** How long an append that needs a ready leader waits for a new leader to become ready. */
const READY_WAIT_MS = 4000;

/** How many times a follower's read asks the leader for its commit before it answers anyway. */
const LEADER_ASKS_MAX = 8;

export class ReplicatedLog implements Log {
  readonly name: string;
  readonly #parts: ReplicatedLogParts;
  #replica: Replica;
  readonly #listeners = new Set<() => void>();
  /** Ids of records appendMissing proposed and has not seen answered. */
  readonly #arriving = new Set<bigint>();
  /**
   * Records appendMissing saw committed that this node's segment log has not written yet (id →
   * the offset after it). Followers can commit an entry while the leader's own copy still waits
   * behind a slow fsync, and unwritten bytes cannot be read back, so a retry that only scanned
   * the files would append them twice (found by T16). Dropped once the files hold them.
   */
  readonly #landing = new Map<bigint, number>();

  constructor(replica: Replica, parts: ReplicatedLogParts) {
    this.name = replica.name;
    this.#replica = replica;
    this.#parts = parts;
  }

  /** The replica now driving this group (a repair replaces it; the log object stays). */
  get replica(): Replica {
    return this.#replica;
  }

  /** Called by the node when a repair restarts the group on a new replica. */
  replaceReplica(replica: Replica): void {
    this.#replica = replica;
    this.changed();
  }

  /** Called by the node after every commit advance and role change of the group. */
  changed(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  get startOffset(): number {
    return this.#replica.log.startOffset;
  }

  get endOffset(): number {
    return this.#replica.commitOffset;
  }

  get writer(): LogWriter {
    const replica = this.#replica;
    if (!replica.isLeader) return { writable: false, ready: false, epoch: replica.term };
    const status = replica.status();
    // A new leader knows every earlier commit only once it committed in its own term.
    return { writable: true, ready: status.commit.epoch === status.term, epoch: status.term };
  }

  appendRecord(record: RecordInput, done: AppendDone): void {
    this.#replica.proposeWritten(
      RECORD_HEADER_BYTES + record.data.length,
      (into, at) => writeRecord(into, at, record),
      done,
    );
  }

  appendBatch(batch: Uint8Array, _records: number, done: AppendDone): void {
    this.#replica.propose(batch, done);
  }

  appendMissing(batch: Uint8Array, since: number, done: AppendDone): void {
    const writer = this.writer;
    if (!writer.writable) {
      const error = new BrokerError(
        "notLeader",
        `partition ${this.name} is led by node ${this.#replica.leaderId}`,
      );
      return done({ ok: false, error });
    }
    if (!writer.ready) {
      // Records of an earlier leader may still be on their way into this log: a new leader
      // knows them all once it committed in its own term, which takes one round to its quorum.
      return this.#whenReady(READY_WAIT_MS, (ready) => {
        if (ready) return this.appendMissing(batch, since, done);
        const error = new BrokerError(
          "unavailable",
          `partition ${this.name} has a new leader that is not ready yet`,
        );
        done({ ok: false, error });
      });
    }
    const ids = idsOf(batch);
    if (ids.some((id) => this.#arriving.has(id))) {
      const error = new BrokerError(
        "unavailable",
        `the same records are being appended to ${this.name}`,
      );
      return done({ ok: false, error });
    }
    const found = findIds(this.#replica.log, since, new Set(ids));
    this.#forgetWritten();
    for (const id of ids) {
      const end = this.#landing.get(id);
      if (end !== undefined && !found.has(id)) found.set(id, end);
    }
    const missing = withoutIds(batch, new Set(found.keys()));
    const foundEnd = Math.max(0, ...found.values());
    const firstOffset = (appendedAt: number) => {
      const firstEnd = found.get(ids[0]);
      if (firstEnd === undefined) return appendedAt;
      return firstEnd - RECORD_HEADER_BYTES -
        new DataView(batch.buffer, batch.byteOffset).getInt32(0);
    };
    const term = writer.epoch;
    const afterFound = (appendedAt: number) =>
      this.#whenCommitted(
        foundEnd,
        term,
        (outcome) => done(outcome.ok ? { ok: true, offset: firstOffset(appendedAt) } : outcome),
      );
    if (missing.records === 0) return afterFound(-1);
    for (const id of ids) if (!found.has(id)) this.#arriving.add(id);
    // One atomic entry: no copy keeps a part of it through a crash (atomic_entries.ts).
    this.#replica.propose(missing.bytes, (outcome) => {
      for (const id of ids) this.#arriving.delete(id);
      if (!outcome.ok) return done(outcome);
      this.#rememberLanding(missing.bytes, outcome.offset);
      afterFound(outcome.offset);
    }, true);
  }

  /** Notes the committed records of `bytes` (at `offset`) that the files do not hold yet. */
  #rememberLanding(bytes: Uint8Array, offset: number): void {
    const written = this.#replica.log.writtenEnd;
    walkRecords(bytes, RECORD_DATA_BYTES_MAX, (position, length) => {
      const end = offset + position + RECORD_HEADER_BYTES + length;
      if (end > written) this.#landing.set(recordIdAt(bytes, position), end);
    });
  }

  /** Forgets landing records the files now hold: findIds sees those. */
  #forgetWritten(): void {
    if (this.#landing.size === 0) return;
    const written = this.#replica.log.writtenEnd;
    for (const [id, end] of this.#landing) if (end <= written) this.#landing.delete(id);
  }

  readableAt(offset: number, maxBytes: number): number {
    return this.#replica.log.readableAt(offset, maxBytes, this.endOffset);
  }

  readInto(target: Uint8Array, targetOffset: number, offset: number, length: number): void {
    this.#replica.log.readInto(target, targetOffset, offset, length);
  }

  holdRange(offset: number, length: number): HeldRange {
    return this.#replica.log.holdRange(offset, length);
  }

  segmentStartFor(offset: number): number {
    return this.#replica.log.segmentStartFor(offset, this.endOffset);
  }

  whenReadable(offset: number, timeoutMs: number): Promise<void> | undefined {
    const replica = this.#replica;
    // Here already, or committed by a quorum that did not wait for this copy (a leader's own
    // fsync may finish after two followers acknowledged): readable in a moment.
    if (offset < replica.log.writtenEnd || offset < replica.status().commit.offset) {
      if (this.endOffset > offset) return Promise.resolve();
      const { expired, cancel } = this.#deadline(timeoutMs);
      return this.#waitEnd(offset + 1, expired).finally(cancel);
    }
    if (replica.isLeader) return undefined; // nothing anywhere past a leader's log
    return this.#waitLeaderCommit(offset, timeoutMs);
  }

  /**
   * Nothing here yet: asks the leader whether anything was committed there at all, and waits
   * for this copy to reach it. A copy that cannot ask yet (just opened, or its leader not known
   * or not ready) waits for the group to change and asks again, within the same bound.
   * Answering "nothing" at once would hide a write another node already acknowledged: a
   * topic's first put through one node, read at once through another, found nothing there.
   */
  async #waitLeaderCommit(offset: number, timeoutMs: number): Promise<void> {
    const { expired, cancel } = this.#deadline(timeoutMs);
    try {
      for (let round = 0; round < LEADER_ASKS_MAX; round++) {
        const asked = await Promise.race([this.#parts.askLeaderCommit(), expired]);
        if (asked === "expired") return;
        if (asked !== undefined) {
          if (asked > offset) await this.#waitEnd(offset + 1, expired);
          return;
        }
        if (this.endOffset > offset) return;
        if (await this.#nextChange(expired) === "expired") return;
      }
    } finally {
      cancel();
    }
  }

  /** A promise that settles as "expired" in `timeoutMs` (unless cancelled first). */
  #deadline(timeoutMs: number): { expired: Promise<"expired">; cancel: () => void } {
    const { promise: expired, resolve: expire } = Promise.withResolvers<"expired">();
    const cancel = this.#parts.timers.after(timeoutMs, () => expire("expired"));
    return { expired, cancel };
  }

  /** Resolves at the group's next commit advance or role change, or once `expired` settles. */
  #nextChange(expired: Promise<"expired">): Promise<"changed" | "expired"> {
    return new Promise((resolve) => {
      const stop = this.onChange(() => {
        stop();
        resolve("changed");
      });
      void expired.then((why) => {
        stop();
        resolve(why);
      });
    });
  }

  unavailable(): BrokerError | undefined {
    if (this.#replica.leaderId !== 0) return undefined;
    const why = this.#parts.whyLeaderless?.();
    return why ? new BrokerError("unavailable", why) : undefined;
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  onSync(listener: (latencyMs: number) => void): () => void {
    return this.#replica.log.onSync(listener);
  }

  facts(): LogFacts {
    const segments = this.#replica.log;
    return {
      bytes: segments.sizeBytes,
      messages: segments.messageCount,
      segments: segments.segmentStarts.length,
      writtenEnd: segments.writtenEnd,
      durableEnd: segments.durableEnd,
    };
  }

  async applyRetention(policy: DeletePolicy, nowMs: number): Promise<void> {
    if (!this.#parts.retained) return;
    const replica = this.#replica;
    await applyRetention(replica.log, {
      policy,
      nowMs,
      storage: this.#parts.storage,
      logger: this.#parts.logger,
      mayStartAt: (start) => replica.compactTo(start),
    });
  }

  async compactBefore(offset: number): Promise<boolean> {
    const replica = this.#replica;
    let refused = false;
    await applyRetention(replica.log, {
      policy: { kind: "delete", maxAgeMs: -Infinity, source: "snapshot" },
      nowMs: 0,
      storage: this.#parts.storage,
      logger: this.#parts.logger,
      mayStartAt: (start) => {
        if (start > offset) return false;
        if (replica.compactTo(start)) return true;
        refused = true;
        return false;
      },
    });
    return !refused;
  }

  flush(): Promise<void> {
    return this.#replica.log.flush();
  }

  /** Calls `then(true)` once this node leads and is ready, `then(false)` if that ends or times out. */
  #whenReady(timeoutMs: number, then: (ready: boolean) => void): void {
    let settled = false;
    const finish = (ready: boolean) => {
      if (settled) return;
      settled = true;
      cancel();
      stop();
      then(ready);
    };
    const cancel = this.#parts.timers.after(timeoutMs, () => finish(false));
    const stop = this.onChange(() => {
      const writer = this.writer;
      if (writer.ready) finish(true);
      else if (!writer.writable) finish(false);
    });
  }

  /** Resolves once the readable end passes `end`, or once `expired` settles (whichever is first). */
  #waitEnd(end: number, expired: Promise<unknown>): Promise<void> {
    if (this.endOffset >= end) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    const finish = () => {
      stop();
      resolve();
    };
    const stop = this.onChange(() => {
      if (this.endOffset >= end) finish();
    });
    void expired.then(finish);
    return promise;
  }

  /**
   * Answers once everything below `end` is committed, or with an indeterminate error when this
   * node stops leading term `term` first (a later writer checks the log again).
   */
  #whenCommitted(end: number, term: number, then: (outcome: AppendOutcome) => void): void {
    const check = (): boolean => {
      if (this.endOffset >= end) {
        then({ ok: true, offset: 0 });
        return true;
      }
      const writer = this.writer;
      if (!writer.writable || writer.epoch !== term) {
        const error = new BrokerError(
          "unavailable",
          `partition ${this.name} changed leader before its records committed; try again`,
        );
        then({ ok: false, error });
        return true;
      }
      return false;
    };
    if (check()) return;
    const stop = this.onChange(() => {
      if (check()) stop();
    });
  }
}

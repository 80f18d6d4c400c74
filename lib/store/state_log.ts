/**
 * @module StateLog: keeps a part's state in one of the broker's own logs (`__meta-0` for group
 * offsets, `__tx-0` for the transaction journal). Records are ordinary MetaQ records whose data
 * the part's StateMachine understands; every node applies the readable (committed) ones in
 * order, so a node that starts writing after a failover rebuilds exactly the state its
 * predecessor had. On one node the log is local and the same code runs.
 *
 * The log does not grow for ever: once enough was applied since the last snapshot, the writer
 * appends a snapshot of the whole state, and every copy then drops the segments below it.
 * A snapshot is written only when nothing else is in flight, so it lands exactly at the offset
 * it describes (its `base`); the machine applies a snapshot only when found at its base, and
 * applying it replaces the state. A node that starts anywhere at or below the latest
 * snapshot's base (a compacted log) therefore ends with the same state as one that applied
 * the whole log, which is why compaction may drop everything below that base and no further.
 */
import { BrokerError, describeError } from "../errors.ts";
import { RECORD_DATA_BYTES_MAX, RECORD_HEADER_BYTES } from "../limits.ts";
import type { Logger } from "../log.ts";
import type { MessageIdGenerator } from "../protocol/message_id.ts";
import { recordBytesAt, walkRecords } from "../protocol/record.ts";
import type { Log, Logs } from "./log.ts";

/** What a part's state does with its log's records. */
export interface StateMachine {
  /**
   * Applies the data of the committed record at [offset, end). Returns true when the record
   * was a snapshot that took effect (it replaced the state).
   */
  apply(data: Uint8Array, offset: number, end: number): boolean;
  /** The whole state as one record's data, whose `apply` at `base` replaces the state. */
  snapshot(base: number): Uint8Array;
}

export interface StateLogOptions {
  readonly log: Log;
  readonly machine: StateMachine;
  readonly ids: MessageIdGenerator;
  readonly logger: Logger;
  /** A snapshot is due once this many bytes were applied after the previous one. */
  readonly snapshotEveryBytes: number;
  /** How long an append may wait to be applied (a replicated log that lost its quorum). */
  readonly applyTimeoutMs?: number;
  /** Monotonic milliseconds (for compaction's retry delay). */
  readonly now: () => number;
}

/** Bytes read from the log per round while catching up. */
const READ_BYTES = 1024 * 1024;
/** A follower refused compaction (its leader has not dropped those segments yet) retries after. */
const COMPACT_RETRY_MS = 1000;

export class StateLog {
  readonly log: Log;
  readonly #options: StateLogOptions;
  #applied: number;
  #snapshotBase: number;
  #snapshotEnd: number;
  #compactedBase = 0;
  #compacting = false;
  #compactAfterMs = 0;
  #snapshotting = false;
  /** After a failed snapshot (a state too large for one record), the next waits this long. */
  #snapshotNotBefore = 0;
  /** Appends made here and not yet applied (a snapshot waits until there are none). */
  #inFlight = 0;
  readonly #waiters = new Set<(applied: number) => void>();
  #stopped = false;

  constructor(options: StateLogOptions) {
    this.#options = options;
    this.log = options.log;
    this.#applied = options.log.startOffset;
    this.#snapshotBase = options.log.startOffset;
    this.#snapshotEnd = options.log.startOffset;
  }

  /** Offset up to which readable records are applied. */
  get appliedOffset(): number {
    return this.#applied;
  }

  /** The log may start anywhere at or below this offset (the latest snapshot's base). */
  get snapshotBase(): number {
    return this.#snapshotBase;
  }

  /** Applies the records that became readable since the last call. */
  catchUp(): void {
    const log = this.log;
    // A copy reset to its leader's (compacted) start begins with a snapshot's coverage.
    if (this.#applied < log.startOffset) this.#applied = log.startOffset;
    let readBytes = READ_BYTES;
    while (this.#applied < log.endOffset) {
      const length = log.readableAt(this.#applied, readBytes);
      const bytes = new Uint8Array(length);
      log.readInto(bytes, 0, this.#applied, length);
      const base = this.#applied;
      const walk = walkRecords(bytes, RECORD_DATA_BYTES_MAX, (position, dataLength) => {
        const offset = base + position;
        const end = offset + RECORD_HEADER_BYTES + dataLength;
        const data = bytes.subarray(
          position + RECORD_HEADER_BYTES,
          position + RECORD_HEADER_BYTES + dataLength,
        );
        if (this.#options.machine.apply(data, offset, end)) {
          this.#snapshotBase = offset;
          this.#snapshotEnd = end;
        }
        this.#applied = end;
      });
      if (walk.records === 0) {
        // The next record is larger than the read (a big snapshot): read it whole.
        const needed = recordBytesAt(bytes) ?? 0;
        if (needed <= readBytes) break; // the log ends inside it: nothing more is readable
        readBytes = needed;
        continue;
      }
      readBytes = READ_BYTES;
    }
    for (const waiter of [...this.#waiters]) waiter(this.#applied);
  }

  /**
   * Appends one record and resolves once it is applied here (with its end offset). Rejects
   * with the log's refusal (`notLeader` when this node does not write the log).
   */
  async append(data: Uint8Array): Promise<number> {
    if (data.length > RECORD_DATA_BYTES_MAX) {
      throw new BrokerError("messageTooLarge", `a state record of ${data.length} bytes`);
    }
    this.#inFlight += 1;
    let end: number;
    try {
      end = await new Promise<number>((resolve, reject) => {
        this.log.appendRecord({ id: this.#options.ids.nextId(), flag: 0, data }, (outcome) => {
          if (outcome.ok) resolve(outcome.offset + RECORD_HEADER_BYTES + data.length);
          else reject(outcome.error);
        });
      });
    } finally {
      this.#inFlight -= 1;
    }
    this.catchUp();
    await this.waitApplied(end);
    // The moment after an append is when a snapshot can land where it was taken.
    this.maintain();
    return end;
  }

  /** Resolves once records up to `end` are applied (or rejects after the apply timeout). */
  waitApplied(end: number): Promise<void> {
    if (this.#applied >= end) return Promise.resolve();
    const timeoutMs = this.#options.applyTimeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const waiter = (applied: number) => {
        if (applied < end) return;
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new BrokerError("timeout", `a record of ${this.log.name} was not applied in time`));
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  /**
   * The writer's upkeep, called after each catch-up: writes a snapshot when one is due, and
   * drops segments below the latest snapshot (on every copy: followers call it too).
   */
  maintain(): void {
    if (this.#stopped) return;
    const writer = this.log.writer;
    if (writer.ready && !this.#snapshotting && this.#snapshotDue()) this.#writeSnapshot();
    const now = this.#options.now();
    if (!this.#compacting && now >= this.#compactAfterMs) this.#compact(now);
  }

  stop(): void {
    this.#stopped = true;
    for (const waiter of [...this.#waiters]) waiter(Number.MAX_SAFE_INTEGER);
  }

  #snapshotDue(): boolean {
    const log = this.log;
    return this.#applied >= this.#snapshotNotBefore &&
      this.#applied - this.#snapshotEnd >= this.#options.snapshotEveryBytes &&
      this.#inFlight === 0 && log.endOffset === this.#applied &&
      log.facts().writtenEnd === this.#applied;
  }

  #writeSnapshot(): void {
    this.#snapshotting = true;
    const base = this.#applied;
    const data = this.#options.machine.snapshot(base);
    this.append(data).then(
      () =>
        this.#options.logger.log("info", "Wrote a snapshot of the broker's state", {
          log: this.log.name,
          base,
          bytes: data.length,
        }),
      (error) => {
        // Tried again once as much again was applied, not on every upkeep round.
        this.#snapshotNotBefore = this.#applied + this.#options.snapshotEveryBytes;
        this.#options.logger.log("warn", "Cannot write a snapshot of the broker's state", {
          log: this.log.name,
          reason: describeError(error),
        });
      },
    ).finally(() => this.#snapshotting = false);
  }

  #compact(nowMs: number): void {
    const base = this.#snapshotBase;
    if (base === this.#compactedBase || base <= this.log.startOffset) return;
    this.#compacting = true;
    this.log.compactBefore(base).then(
      (done) => {
        if (done) this.#compactedBase = base;
        else this.#compactAfterMs = nowMs + COMPACT_RETRY_MS;
      },
      (error) => {
        this.#compactedBase = base; // tried again after the next snapshot
        this.#options.logger.log("error", "Cannot drop old segments of the broker's state", {
          log: this.log.name,
          reason: describeError(error),
        });
      },
    ).finally(() => this.#compacting = false);
  }
}

/**
 * Calls `then` with the log of `topic`-`partition` once this node can open it: now, or when it
 * opens later (a cluster node not yet admitted holds no copies). Returns a cancel function.
 */
export function whenOpen(
  logs: Logs,
  topic: string,
  partition: number,
  then: (log: Log) => void,
): () => void {
  let cancelled = false;
  const stop = logs.onOpen((entry) => {
    if (entry.topic !== topic || entry.partition !== partition || cancelled) return;
    cancelled = true;
    stop();
    then(entry.log);
  });
  logs.open(topic, partition).then((log) => {
    if (cancelled) return;
    cancelled = true;
    stop();
    then(log);
  }, () => {}); // not here yet: onOpen tells
  return () => {
    cancelled = true;
    stop();
  };
}

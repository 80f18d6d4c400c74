/**
 * @module LocalLog: the Log port over a segment log on this node's disk, for a broker that
 * runs alone. Always writable; a record is readable once the segment log acknowledges it
 * (after its fsync under group commit). Nothing is ever on its way from elsewhere, so a read
 * past the end never waits.
 */
import type { DeletePolicy } from "../config/retention_policy.ts";
import type { Logger } from "../log.ts";
import type { RecordInput } from "../protocol/record.ts";
import type { AppendDone, HeldRange, Log, LogFacts, LogWriter } from "./log.ts";
import { findIds, idsOf, withoutIds } from "./missing_records.ts";
import type { PartitionLog } from "./partition_log.ts";
import { applyRetention } from "./retention.ts";
import type { Storage } from "./storage.ts";
import { BrokerError, describeError } from "../errors.ts";

const ALWAYS_WRITABLE: LogWriter = { writable: true, ready: true, epoch: 1 };

export class LocalLog implements Log {
  readonly segments: PartitionLog;
  readonly #storage: Storage;
  readonly #logger: Logger;
  /** Ids of records appendMissing has queued and not yet seen acknowledged. */
  readonly #arriving = new Set<bigint>();

  constructor(segments: PartitionLog, parts: { storage: Storage; logger: Logger }) {
    this.segments = segments;
    this.#storage = parts.storage;
    this.#logger = parts.logger;
  }

  get name(): string {
    return this.segments.name;
  }

  get startOffset(): number {
    return this.segments.startOffset;
  }

  get endOffset(): number {
    return this.segments.ackedEnd;
  }

  get writer(): LogWriter {
    return ALWAYS_WRITABLE;
  }

  appendRecord(record: RecordInput, done: AppendDone): void {
    let offset = -1;
    try {
      offset = this.segments.append(record, (error) => done(outcomeOf(offset, error)));
    } catch (error) {
      done(outcomeOf(offset, error as Error));
    }
  }

  appendBatch(batch: Uint8Array, records: number, done: AppendDone): void {
    let offset: number;
    try {
      const ticket = this.segments.appendEncoded(batch, records);
      offset = ticket.offset;
      ticket.done.then(() => done({ ok: true, offset }), (error) => done(outcomeOf(offset, error)));
    } catch (error) {
      done(outcomeOf(-1, error as Error));
    }
  }

  appendMissing(batch: Uint8Array, since: number, done: AppendDone): void {
    const ids = idsOf(batch);
    const wanted = new Set(ids);
    if (ids.some((id) => this.#arriving.has(id))) {
      // The same records are being completed already (an earlier attempt): wait for it, retry.
      const stop = this.onChange(() => {
        if (ids.some((id) => this.#arriving.has(id))) return;
        stop();
        this.appendMissing(batch, since, done);
      });
      return;
    }
    const found = findIds(this.segments, since, wanted);
    const missing = withoutIds(batch, new Set(found.keys()));
    const foundEnd = Math.max(0, ...found.values());
    if (missing.records === 0) {
      return this.#whenReadable(foundEnd, () => done(firstFound(found, batch, ids)));
    }
    for (const id of ids) if (!found.has(id)) this.#arriving.add(id);
    this.appendBatch(missing.bytes, missing.records, (outcome) => {
      for (const id of ids) this.#arriving.delete(id);
      if (!outcome.ok || found.size === 0) return done(outcome);
      this.#whenReadable(foundEnd, () => done(firstFound(found, batch, ids, outcome.offset)));
    });
  }

  readableAt(offset: number, maxBytes: number): number {
    return this.segments.readableAt(offset, maxBytes);
  }

  readInto(target: Uint8Array, targetOffset: number, offset: number, length: number): void {
    this.segments.readInto(target, targetOffset, offset, length);
  }

  holdRange(offset: number, length: number): HeldRange {
    return this.segments.holdRange(offset, length);
  }

  segmentStartFor(offset: number): number {
    return this.segments.segmentStartFor(offset);
  }

  whenReadable(_offset: number, _timeoutMs: number): Promise<void> | undefined {
    return undefined;
  }

  onChange(listener: () => void): () => void {
    return this.segments.onAppend(() => listener());
  }

  onSync(listener: (latencyMs: number) => void): () => void {
    return this.segments.onSync(listener);
  }

  facts(): LogFacts {
    const segments = this.segments;
    return {
      bytes: segments.sizeBytes,
      messages: segments.messageCount,
      segments: segments.segmentStarts.length,
      writtenEnd: segments.writtenEnd,
      durableEnd: segments.durableEnd,
    };
  }

  async applyRetention(policy: DeletePolicy, nowMs: number, keepFrom?: number): Promise<void> {
    await applyRetention(this.segments, {
      policy,
      nowMs,
      storage: this.#storage,
      logger: this.#logger,
      mayStartAt: keepFrom === undefined ? undefined : (start) => start <= keepFrom,
    });
  }

  async compactBefore(offset: number): Promise<boolean> {
    await applyRetention(this.segments, {
      policy: { kind: "delete", maxAgeMs: -Infinity, source: "snapshot" },
      nowMs: 0,
      storage: this.#storage,
      logger: this.#logger,
      mayStartAt: (start) => start <= offset,
    });
    return true;
  }

  flush(): Promise<void> {
    return this.segments.flush();
  }

  /** Runs `then` once everything below `end` is acknowledged (at once when it is). */
  #whenReadable(end: number, then: () => void): void {
    if (this.segments.ackedEnd >= end) return then();
    const stop = this.segments.onAppend((ackedEnd) => {
      if (ackedEnd < end) return;
      stop();
      then();
    });
  }
}

/** The outcome of an append that settled with `error`, or succeeded at `offset`. */
function outcomeOf(offset: number, error?: Error) {
  if (!error) return { ok: true as const, offset };
  // This node's own files are the whole log: a failed append left nothing a reader or a
  // recovery would keep (a torn tail is cut), so callers may call its outcome final.
  const failure = error instanceof BrokerError
    ? BrokerError.notAppended(error)
    : new BrokerError("storageFailed", describeError(error), { cause: error, notAppended: true });
  return { ok: false as const, error: failure };
}

/** The offset of the batch's first record: found in the log, or where the rest was appended. */
function firstFound(
  found: ReadonlyMap<bigint, number>,
  batch: Uint8Array,
  ids: readonly bigint[],
  appendedAt?: number,
) {
  const firstEnd = found.get(ids[0]);
  if (firstEnd === undefined) return { ok: true as const, offset: appendedAt ?? -1 };
  const firstLength = new DataView(batch.buffer, batch.byteOffset).getInt32(0) + 20;
  return { ok: true as const, offset: firstEnd - firstLength };
}

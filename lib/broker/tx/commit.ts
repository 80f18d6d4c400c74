/**
 * @module The commit path: a decided transaction's messages go to their partitions, one
 * append per partition, under a journalled record of where each batch goes.
 *
 * In one synchronous step: hold the partitions' writers (when commits are fsynced), read each
 * partition's next offset, write the commit record naming offset, length and CRC-32 of every
 * batch, and queue the batches (they get exactly those offsets, since nothing can run in
 * between). Then fsync the journal, release the writers, and wait for the batches to be
 * acknowledged. So a batch never reaches the disk before the record that describes it, and
 * recovery (reconcile.ts) can always tell whether it got there. Not here: deciding whether a
 * transaction may commit (state.ts), replies (manager.ts).
 */
import { assert } from "../../assert.ts";
import { describeError } from "../../errors.ts";
import type { MessageStore } from "../../store/message_store.ts";
import type { AppendTicket, PartitionLog } from "../../store/partition_log.ts";
import { type Batch, encodeBatches } from "./batch.ts";
import type { TxJournal } from "./journal.ts";
import type { BatchLocation, TxRecord } from "./journal_record.ts";
import type { OpenTxKey, TxMessage } from "./state.ts";

export interface CommitParts {
  readonly store: MessageStore;
  readonly journal: TxJournal;
  /** flushTxLogAtCommit=1: fsync the commit record (and hold the partitions) before replying. */
  readonly syncAtCommit: boolean;
  /**
   * TEST ONLY (METAQ_TEST_CRASH_AFTER_COMMIT_BYTES): append just this many bytes of the next
   * commit's batches, then call `crash`. Simulates a process killed in the middle of an append.
   */
  readonly crashAfterBytes?: number;
  readonly crash: () => void;
}

export interface CommitRequest {
  readonly number: number;
  readonly key: OpenTxKey;
  readonly messages: readonly TxMessage[];
  readonly wasPrepared: boolean;
  /** Written in the same piece as the commit record (a heuristic outcome). */
  readonly alsoRecord?: readonly TxRecord[];
}

/** A commit whose batches may not be durable yet; snapshots keep it until they are. */
export interface PendingCommit {
  readonly request: CommitRequest;
  readonly locations: readonly BatchLocation[];
  readonly logs: readonly PartitionLog[];
  /** True once every batch was acknowledged by its partition. */
  settled: boolean;
}

export type CommitOutcome =
  /** Appended and acknowledged. */
  | { readonly kind: "committed"; readonly pending: PendingCommit }
  /** Nothing was journalled: the transaction can still be rolled back. */
  | { readonly kind: "notWritten"; readonly reason: string }
  /** Journalled but not (fully) appended: the next start completes it. */
  | { readonly kind: "notApplied"; readonly pending: PendingCommit; readonly reason: string };

/** Thrown when the journal cannot be synced: what is durable is unknown, so the broker stops. */
export class JournalSyncError extends Error {
  override readonly name = "JournalSyncError";
}

export async function commitBatches(
  parts: CommitParts,
  request: CommitRequest,
  onPending: (pending: PendingCommit) => void,
): Promise<CommitOutcome> {
  const batches = encodeBatches(request.messages);
  let logs: PartitionLog[];
  try {
    logs = await Promise.all(batches.map((batch) => logFor(parts.store, batch)));
  } catch (error) {
    return { kind: "notWritten", reason: describeError(error) };
  }
  const holds = parts.syncAtCommit ? logs.map((log) => log.hold()) : [];
  const release = () => holds.forEach((releaseOne) => releaseOne());
  const locations = batches.map((batch, index) => locationFor(batch, logs[index].nextOffset));
  try {
    parts.journal.append([commitRecord(request, locations), ...(request.alsoRecord ?? [])]);
  } catch (error) {
    release();
    return { kind: "notWritten", reason: describeError(error) };
  }
  const pending: PendingCommit = { request, locations, logs, settled: false };
  onPending(pending);
  let tickets: AppendTicket[];
  try {
    tickets = appendBatches(parts, logs, batches, locations);
  } catch (error) {
    release();
    return { kind: "notApplied", pending, reason: describeError(error) };
  }
  try {
    if (parts.syncAtCommit) await parts.journal.sync();
  } catch (error) {
    throw new JournalSyncError(`Cannot sync the transaction journal: ${describeError(error)}`, {
      cause: error,
    });
  } finally {
    release();
  }
  const results = await Promise.allSettled(tickets.map((ticket) => ticket.done));
  if (parts.crashAfterBytes !== undefined) parts.crash();
  const failure = results.find((result) => result.status === "rejected");
  if (failure) {
    return { kind: "notApplied", pending, reason: describeError(failure.reason) };
  }
  pending.settled = true;
  return { kind: "committed", pending };
}

/** True once a settled commit's batches are synced in their partitions. */
export function isDurable(pending: PendingCommit): boolean {
  return pending.settled &&
    pending.locations.every((location, index) =>
      pending.logs[index].durableEnd >= location.offset + location.length
    );
}

export function commitRecord(
  request: CommitRequest,
  locations: readonly BatchLocation[],
): TxRecord {
  return {
    type: "commit",
    tx: request.number,
    key: request.key.text,
    wasPrepared: request.wasPrepared,
    locations,
  };
}

async function logFor(store: MessageStore, batch: Batch): Promise<PartitionLog> {
  return store.get(batch.topic, batch.partition) ??
    await store.getOrCreate(batch.topic, batch.partition);
}

function locationFor(batch: Batch, offset: number): BatchLocation {
  return {
    topic: batch.topic,
    partition: batch.partition,
    offset,
    length: batch.bytes.length,
    checksum: batch.checksum,
    records: batch.records,
  };
}

function appendBatches(
  parts: CommitParts,
  logs: readonly PartitionLog[],
  batches: readonly Batch[],
  locations: readonly BatchLocation[],
): AppendTicket[] {
  let budget = parts.crashAfterBytes ?? Infinity;
  const tickets: AppendTicket[] = [];
  for (const [index, batch] of batches.entries()) {
    if (budget <= 0) break;
    const bytes = budget >= batch.bytes.length ? batch.bytes : batch.bytes.subarray(0, budget);
    budget -= bytes.length;
    const ticket = logs[index].appendEncoded(bytes, bytes === batch.bytes ? batch.records : 0);
    assert(ticket.offset === locations[index].offset, "a batch must land where it was journalled");
    tickets.push(ticket);
  }
  return tickets;
}

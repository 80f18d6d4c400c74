/**
 * @module Completing commits after a crash, exactly once. A commit record names, for each
 * partition, where its batch was to be appended (offset, length, CRC-32); the batch's bytes are
 * rebuilt from the journalled puts and compared with the log there, byte for byte:
 *
 * | the partition log at the recorded offset          | action                              |
 * |---------------------------------------------------|-------------------------------------|
 * | the whole batch                                   | none: it was appended               |
 * | offset below the log start                        | none: retention removed it          |
 * | the log ends exactly at the offset                | append there                        |
 * | the log ends inside the batch, after a prefix of  | torn append: truncate to the offset |
 * | it (nothing else can follow a torn write)         | and append the batch again          |
 * | anything else (other records, or the log ends     | not there: append at the log end,   |
 * | before the offset)                                | journalling the new offset first    |
 *
 * Locations are handled per partition in offset order, each seeing the log as the previous
 * ones left it, so a relocated batch never lands where a later one is checked. A new location
 * is journalled (and synced) before its append, so a crash during recovery repeats it exactly.
 * A partition refused as damaged blocks its commits: they stay in the journal for the next
 * start. Not here: replay (replay.ts), the live commit path (commit.ts).
 */
import { describeError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { MessageStore } from "../../store/message_store.ts";
import type { PartitionLog } from "../../store/partition_log.ts";
import { type Batch, encodeBatches } from "./batch.ts";
import type { TxJournal } from "./journal.ts";
import type { BatchLocation } from "./journal_record.ts";
import { type RecoveredTransaction, ReplayError } from "./replay.ts";

export type BatchVerdict = "present" | "belowStart" | "appendHere" | "tornHere" | "relocate";

/** What a log must offer for a batch to be judged. */
export interface LogView {
  readonly startOffset: number;
  readonly endOffset: number;
  /** Up to `length` bytes at `offset` (fewer at a segment end). */
  read(offset: number, length: number): Uint8Array;
}

/** Where the batch `expected`, meant for `offset`, stands in `log`. Pure. */
export function judgeBatch(expected: Uint8Array, offset: number, log: LogView): BatchVerdict {
  if (offset < log.startOffset) return "belowStart";
  if (log.endOffset <= offset) return log.endOffset === offset ? "appendHere" : "relocate";
  const available = Math.min(log.endOffset, offset + expected.length) - offset;
  const found = log.read(offset, available);
  if (found.length !== available || !equalBytes(found, expected.subarray(0, available))) {
    return "relocate";
  }
  return available === expected.length ? "present" : "tornHere";
}

export interface CompleteOptions {
  readonly committed: readonly RecoveredTransaction[];
  readonly store: MessageStore;
  readonly journal: TxJournal;
  readonly logger: Logger;
}

interface Entry {
  readonly tx: RecoveredTransaction;
  readonly batch: Batch;
  readonly name: string;
}

/**
 * Brings every committed transaction's batches into the logs; returns the transactions that a
 * damaged partition blocked (their commit records must be kept).
 */
export async function completeCommits(options: CompleteOptions): Promise<RecoveredTransaction[]> {
  const { store, logger } = options;
  const entries = options.committed.flatMap((tx) => entriesOf(tx));
  entries.sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : locationOf(a).offset - locationOf(b).offset
  );
  const blocked = new Set<RecoveredTransaction>();
  const touched = new Set<PartitionLog>();
  for (const entry of entries) {
    const { topic, partition } = entry.batch;
    const damaged = store.get(topic, partition) ? undefined : store.failure(topic, partition);
    if (damaged) {
      blocked.add(entry.tx);
      logger.log("error", "Cannot complete a committed transaction: its partition is damaged", {
        transaction: entry.tx.key.text,
        partition: entry.name,
        reason: describeError(damaged),
      });
      continue;
    }
    const log = store.get(topic, partition) ?? await store.getOrCreate(topic, partition);
    if (await completeOne(entry, log, options)) touched.add(log);
  }
  for (const log of touched) await log.flush();
  return [...blocked];
}

/** Checks and, if needed, appends one batch; true when the log changed. */
async function completeOne(entry: Entry, log: PartitionLog, options: CompleteOptions) {
  const location = locationOf(entry);
  const verdict = judgeBatch(entry.batch.bytes, location.offset, viewOf(log));
  const fields = {
    transaction: entry.tx.key.text,
    partition: entry.name,
    offset: location.offset,
    verdict,
  };
  if (verdict === "present" || verdict === "belowStart") return false;
  if (verdict === "tornHere") await log.truncate(location.offset);
  if (verdict === "relocate") {
    relocate(entry, log.nextOffset);
    const { tx } = entry;
    const commit = tx.commit!;
    options.journal.append([{
      type: "commit",
      tx: tx.number,
      key: tx.key.text,
      wasPrepared: commit.wasPrepared,
      locations: commit.locations,
    }]);
    await options.journal.sync();
  }
  const ticket = log.appendEncoded(entry.batch.bytes, entry.batch.records);
  if (ticket.offset !== locationOf(entry).offset) {
    throw new ReplayError(`batch of ${entry.tx.key.text} landed at ${ticket.offset}`);
  }
  await ticket.done;
  options.logger.log("warn", "Completed a committed transaction's batch after a crash", {
    ...fields,
    appendedAt: ticket.offset,
  });
  return true;
}

function entriesOf(tx: RecoveredTransaction): Entry[] {
  const locations = tx.commit!.locations;
  const batches = encodeBatches(tx.messages);
  if (batches.length !== locations.length) {
    throw new ReplayError(
      `commit of ${tx.key.text} names ${locations.length} partitions, its puts ${batches.length}`,
    );
  }
  return batches.map((batch) => {
    const name = `${batch.topic}-${batch.partition}`;
    const location = locations.find((at) => `${at.topic}-${at.partition}` === name);
    const matches = location !== undefined && location.length === batch.bytes.length &&
      location.checksum === batch.checksum && location.records === batch.records;
    if (!matches) {
      throw new ReplayError(`commit of ${tx.key.text} does not match its puts in ${name}`);
    }
    return { tx, batch, name };
  });
}

function locationOf(entry: Entry): BatchLocation {
  const name = entry.name;
  return entry.tx.commit!.locations.find((at) => `${at.topic}-${at.partition}` === name)!;
}

function relocate(entry: Entry, offset: number): void {
  const commit = entry.tx.commit!;
  entry.tx.commit = {
    wasPrepared: commit.wasPrepared,
    locations: commit.locations.map((at) =>
      `${at.topic}-${at.partition}` === entry.name ? { ...at, offset } : at
    ),
  };
}

function viewOf(log: PartitionLog): LogView {
  return {
    startOffset: log.startOffset,
    endOffset: log.writtenEnd,
    read: (offset, length) => log.read(offset, length, log.writtenEnd),
  };
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index++) if (a[index] !== b[index]) return false;
  return true;
}

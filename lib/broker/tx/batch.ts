/**
 * @module A commit's batches: for each partition, the transaction's messages encoded as MetaQ
 * records back to back, appended in one piece so a consumer sees all of them or none. Pure;
 * the same messages always give the same bytes, which is what lets recovery recognise a batch
 * in a partition log byte for byte.
 */
import { assert } from "../../assert.ts";
import { crc32 } from "../../crc32.ts";
import { RECORD_HEADER_BYTES, writeRecord } from "../../protocol/record.ts";
import { messagesByPartition, type TxMessage } from "./state.ts";

export interface Batch {
  readonly topic: string;
  readonly partition: number;
  readonly bytes: Uint8Array;
  readonly records: number;
  /** CRC-32 (unsigned) of `bytes`, as recorded in the commit record. */
  readonly checksum: number;
}

/** One batch per partition, in the order the partitions first appear in the transaction. */
export function encodeBatches(messages: readonly TxMessage[]): Batch[] {
  return [...messagesByPartition(messages).values()].map((group) => encodeBatch(group));
}

function encodeBatch(messages: readonly TxMessage[]): Batch {
  assert(messages.length > 0);
  const { topic, partition } = messages[0];
  let length = 0;
  for (const message of messages) length += RECORD_HEADER_BYTES + message.data.length;
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const message of messages) {
    assert(message.topic === topic && message.partition === partition);
    at += writeRecord(bytes, at, { id: message.id, flag: message.flag, data: message.data });
  }
  assert(at === length);
  return { topic, partition, bytes, records: messages.length, checksum: crc32(bytes) };
}

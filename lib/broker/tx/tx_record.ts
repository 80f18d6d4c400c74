/**
 * @module The records of the transaction journal, kept in the broker's own log `__tx-0` (a
 * StateLog: MetaQ records, replicated like any partition in a cluster). Each record's data is
 * a type byte, a version byte and a big-endian body (fields.ts). Only what must outlive the
 * coordinator is written: an open, unprepared transaction lives in memory and dies with its
 * coordinator (so it is rolled back), as MetaQ's recovery rolls such transactions back too.
 *
 * ```text
 * type  record     body
 * 1     prepare    tx, key, messages               an XA branch is prepared, with its messages
 * 2     commit     tx, key, u8 wasPrepared, u16 n × (topic, i32 partition, u64 since),
 *                  messages (a prepared branch's too: the commit stands on its own)
 * 3     applied    tx                              every batch of the commit is in its partition
 * 4     rollback   tx, key                         a prepared branch is rolled back
 * 5     heuristic  key, u8 outcome (1 commit, 2 rollback)
 * 6     forget     key
 * 7     snapshot   u64 base, u64 next tx, u32 n × prepared (tx, key, messages),
 *                  u32 n × commit bodies (as type 2, with messages), u32 n × heuristic bodies,
 *                  (version 2) u32 n × key of a recent commit, oldest first
 *
 * tx = u64 transaction number; key = str (the MetaQ key text); messages = u32 count, then per
 * message: str topic, i32 partition, i64 id, i32 flag, u32 length, data
 * ```
 *
 * A commit names, per partition, `since`: the partition's readable end before the commit
 * record was written. Its batch can only have landed after it, so completing the commit checks
 * the partition from there for the batch's message ids and appends only the missing records.
 */
import type { HeuristicOutcome } from "./failure.ts";
import { FieldReader, FieldWriter } from "./fields.ts";
import type { TxMessage } from "./state.ts";

export const TX_RECORD_VERSION = 1;
/**
 * Snapshots carry the keys of recent commits from version 2 on (a COMMIT retried at the next
 * coordinator is answered from them); a version 1 snapshot is still read, with none.
 */
export const TX_SNAPSHOT_VERSION = 2;

/** Where a commit's batch for one partition goes. */
export interface CommitTarget {
  readonly topic: string;
  readonly partition: number;
  /** The batch lands at or after this offset. */
  readonly since: number;
}

export interface PreparedTx {
  readonly tx: number;
  readonly key: string;
  readonly messages: readonly TxMessage[];
}

export interface CommitTx extends PreparedTx {
  readonly wasPrepared: boolean;
  readonly targets: readonly CommitTarget[];
}

export type TxRecord =
  | ({ readonly type: "prepare" } & PreparedTx)
  | ({ readonly type: "commit" } & CommitTx)
  | { readonly type: "applied"; readonly tx: number }
  | { readonly type: "rollback"; readonly tx: number; readonly key: string }
  | { readonly type: "heuristic"; readonly key: string; readonly outcome: HeuristicOutcome }
  | { readonly type: "forget"; readonly key: string }
  | {
    readonly type: "snapshot";
    readonly base: number;
    readonly nextTx: number;
    readonly prepared: readonly PreparedTx[];
    readonly commits: readonly CommitTx[];
    readonly heuristics: readonly { key: string; outcome: HeuristicOutcome }[];
    /** Keys of the most recent commits, oldest first (TxState.committed). */
    readonly committed: readonly string[];
  };

const CODES = {
  prepare: 1,
  commit: 2,
  applied: 3,
  rollback: 4,
  heuristic: 5,
  forget: 6,
  snapshot: 7,
} as const satisfies Record<TxRecord["type"], number>;
const NAMES = Object.fromEntries(
  Object.entries(CODES).map(([name, code]) => [code, name]),
) as Record<number, TxRecord["type"]>;

export function encodeTxRecord(record: TxRecord): Uint8Array {
  const out = new FieldWriter();
  out.u8(CODES[record.type]).u8(
    record.type === "snapshot" ? TX_SNAPSHOT_VERSION : TX_RECORD_VERSION,
  );
  switch (record.type) {
    case "prepare":
      writePrepared(out, record);
      break;
    case "commit":
      writeCommit(out, record);
      break;
    case "applied":
      out.u64(record.tx);
      break;
    case "rollback":
      out.u64(record.tx).str(record.key);
      break;
    case "heuristic":
      out.str(record.key).u8(record.outcome === "commit" ? 1 : 2);
      break;
    case "forget":
      out.str(record.key);
      break;
    case "snapshot":
      out.u64(record.base).u64(record.nextTx);
      out.u32(record.prepared.length);
      for (const tx of record.prepared) writePrepared(out, tx);
      out.u32(record.commits.length);
      for (const tx of record.commits) writeCommit(out, tx);
      out.u32(record.heuristics.length);
      for (const entry of record.heuristics) {
        out.str(entry.key).u8(entry.outcome === "commit" ? 1 : 2);
      }
      out.u32(record.committed.length);
      for (const key of record.committed) out.str(key);
      break;
  }
  return out.finish();
}

/** Decodes one record's data; throws on an unknown type, version or a damaged body. */
export function decodeTxRecord(data: Uint8Array): TxRecord {
  const input = new FieldReader(data);
  const type = NAMES[input.u8()];
  if (!type) throw new Error(`unknown transaction record type ${data[0]}`);
  const version = input.u8();
  const known = version === TX_RECORD_VERSION ||
    type === "snapshot" && version === TX_SNAPSHOT_VERSION;
  if (!known) throw new Error(`transaction record version ${version}`);
  const record = decodeBody(type, input, version);
  input.expectEnd();
  return record;
}

function decodeBody(type: TxRecord["type"], input: FieldReader, version: number): TxRecord {
  switch (type) {
    case "prepare":
      return { type, ...readPrepared(input) };
    case "commit":
      return { type, ...readCommit(input) };
    case "applied":
      return { type, tx: input.u64() };
    case "rollback":
      return { type, tx: input.u64(), key: input.str() };
    case "heuristic":
      return { type, key: input.str(), outcome: readOutcome(input) };
    case "forget":
      return { type, key: input.str() };
    case "snapshot": {
      const base = input.u64();
      const nextTx = input.u64();
      const prepared = times(input.u32(), () => readPrepared(input));
      const commits = times(input.u32(), () => readCommit(input));
      const heuristics = times(input.u32(), () => ({
        key: input.str(),
        outcome: readOutcome(input),
      }));
      const committed = version >= TX_SNAPSHOT_VERSION ? times(input.u32(), () => input.str()) : [];
      return { type, base, nextTx, prepared, commits, heuristics, committed };
    }
  }
}

function writePrepared(out: FieldWriter, tx: PreparedTx): void {
  out.u64(tx.tx).str(tx.key);
  writeMessages(out, tx.messages);
}

function readPrepared(input: FieldReader): PreparedTx {
  return { tx: input.u64(), key: input.str(), messages: readMessages(input) };
}

function writeCommit(out: FieldWriter, tx: CommitTx): void {
  out.u64(tx.tx).str(tx.key).u8(tx.wasPrepared ? 1 : 0).u16(tx.targets.length);
  for (const target of tx.targets) {
    out.str(target.topic).i32(target.partition).u64(target.since);
  }
  writeMessages(out, tx.messages);
}

function readCommit(input: FieldReader): CommitTx {
  const tx = input.u64();
  const key = input.str();
  const wasPrepared = input.u8() === 1;
  const targets = times(input.u16(), () => ({
    topic: input.str(),
    partition: input.i32(),
    since: input.u64(),
  }));
  return { tx, key, wasPrepared, targets, messages: readMessages(input) };
}

function writeMessages(out: FieldWriter, messages: readonly TxMessage[]): void {
  out.u32(messages.length);
  for (const message of messages) {
    out.str(message.topic).i32(message.partition).i64(message.id).i32(message.flag);
    out.u32(message.data.length).bytes(message.data);
  }
}

function readMessages(input: FieldReader): TxMessage[] {
  return times(input.u32(), () => ({
    topic: input.str(),
    partition: input.i32(),
    id: input.i64(),
    flag: input.i32(),
    data: input.bytes(input.u32()),
  }));
}

function readOutcome(input: FieldReader): HeuristicOutcome {
  const code = input.u8();
  if (code !== 1 && code !== 2) throw new Error(`heuristic outcome ${code}`);
  return code === 1 ? "commit" : "rollback";
}

/** `count` results of `read`, for counts read from a body (a damaged count throws early). */
function times<T>(count: number, read: () => T): T[] {
  const items: T[] = [];
  for (let index = 0; index < count; index++) items.push(read());
  return items;
}

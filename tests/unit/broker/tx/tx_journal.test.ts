/**
 * The transaction journal's records and what a coordinator rebuilds from them: every record
 * survives encoding, damage never decodes silently, and applying a history gives the recovery
 * table of tx_state.ts (prepared branches back, commits to complete, heuristics until FORGET),
 * also when the history was cut at a snapshot.
 */
import { expect, test } from "bun:test";
import {
  decodeTxRecord,
  encodeTxRecord,
  type TxRecord,
} from "../../../../lib/broker/tx/tx_record.ts";
import { TxState } from "../../../../lib/broker/tx/tx_state.ts";
import { TX_COMMITTED_KEYS_MAX } from "../../../../lib/limits.ts";

const XID = "XID:1:0a0b:01:q";
const message = (partition: number, id: bigint, text: string) => ({
  topic: "orders",
  partition,
  id,
  flag: 0,
  data: new TextEncoder().encode(text),
});

const RECORDS: TxRecord[] = [
  { type: "prepare", tx: 1, key: XID, messages: [message(0, 11n, "a"), message(1, 12n, "b")] },
  {
    type: "commit",
    tx: 2,
    key: "TX:s:1",
    wasPrepared: false,
    targets: [{ topic: "orders", partition: 0, since: 4096 }],
    messages: [message(0, 13n, "c")],
  },
  { type: "applied", tx: 2 },
  { type: "rollback", tx: 3, key: "XID:1:0c:01:q" },
  { type: "heuristic", key: XID, outcome: "commit" },
  { type: "forget", key: XID },
  {
    type: "snapshot",
    base: 8192,
    nextTx: 9,
    prepared: [{ tx: 4, key: XID, messages: [message(2, 14n, "d")] }],
    commits: [],
    heuristics: [{ key: "XID:1:0d:01:q", outcome: "rollback" }],
    committed: ["TX:s:1", XID],
  },
];

test("every journal record survives encoding", () => {
  for (const record of RECORDS) expect(decodeTxRecord(encodeTxRecord(record))).toEqual(record);
});

test("a cut or changed record never decodes silently", () => {
  for (const record of RECORDS) {
    const bytes = encodeTxRecord(record);
    for (let cut = 0; cut < bytes.length; cut++) {
      expect(() => decodeTxRecord(bytes.subarray(0, cut)), `${record.type} cut=${cut}`).toThrow();
    }
    expect(() => decodeTxRecord(new Uint8Array([...bytes, 0]))).toThrow();
  }
  expect(() => decodeTxRecord(new Uint8Array([42, 1]))).toThrow("unknown transaction record");
  expect(() => decodeTxRecord(new Uint8Array([3, 9, 0, 0, 0, 0, 0, 0, 0, 1]))).toThrow("version");
});

/** Applies records laid out 100 bytes apart from `from` on. */
function apply(records: readonly TxRecord[], state = new TxState(), from = 0): TxState {
  records.forEach((record, index) =>
    state.apply(encodeTxRecord(record), (from + index) * 100, (from + index + 1) * 100)
  );
  return state;
}

test("a prepared branch, a commit to complete and a heuristic come back; finished ones do not", () => {
  const state = apply([
    RECORDS[0],
    { type: "prepare", tx: 5, key: "XID:1:05:01:q", messages: [message(0, 20n, "x")] },
    { type: "rollback", tx: 5, key: "XID:1:05:01:q" },
    RECORDS[1],
    { type: "commit", tx: 6, key: "TX:s:2", wasPrepared: false, targets: [], messages: [] },
    { type: "applied", tx: 6 },
    { type: "heuristic", key: "XID:1:07:01:q", outcome: "rollback" },
  ]);
  expect([...state.prepared.keys()]).toEqual([1]);
  expect([...state.pending.keys()]).toEqual([2]);
  expect(state.pending.get(2)!.targets).toEqual([{ topic: "orders", partition: 0, since: 4096 }]);
  expect(state.heuristics.get("XID:1:07:01:q")).toBe("rollback");
  expect(state.nextTx).toBe(7);
  expect(state.highestMessageId).toBe(20n);
});

test("committing a prepared branch moves it from prepared to the commits to complete", () => {
  const state = apply([
    RECORDS[0],
    {
      type: "commit",
      tx: 1,
      key: XID,
      wasPrepared: true,
      targets: [],
      messages: RECORDS[0].type === "prepare" ? RECORDS[0].messages : [],
    },
  ]);
  expect(state.prepared.size).toBe(0);
  expect(state.pending.get(1)!.messages.length).toBe(2);
});

test("a snapshot at its base replaces the state; one found elsewhere is ignored", () => {
  const before = apply(RECORDS.slice(0, 2));
  const snapshot = before.snapshot(200);
  // Started at the snapshot (a compacted journal): the same state as applying everything.
  const fresh = new TxState();
  expect(fresh.apply(snapshot, 200, 300)).toBe(true);
  expect([...fresh.prepared.keys()]).toEqual([...before.prepared.keys()]);
  expect([...fresh.pending.keys()]).toEqual([...before.pending.keys()]);
  expect(fresh.nextTx).toBe(before.nextTx);
  const late = apply([RECORDS[0]]);
  expect(late.apply(snapshot, 900, 1000)).toBe(false);
  expect(late.pending.size).toBe(0);
});

test("the keys of recent commits outlive their completion, up to the bound, and a snapshot", () => {
  const commit = (tx: number): TxRecord => ({
    type: "commit",
    tx,
    key: `TX:s:${tx}`,
    wasPrepared: false,
    targets: [],
    messages: [],
  });
  const state = apply([commit(1), { type: "applied", tx: 1 }]);
  expect(state.pending.size).toBe(0);
  expect(state.committed.has("TX:s:1")).toBe(true); // a COMMIT sent again finds it
  const many = Array.from({ length: TX_COMMITTED_KEYS_MAX }, (_, index) => commit(index + 2));
  apply(many, state, 2);
  expect(state.committed.size).toBe(TX_COMMITTED_KEYS_MAX);
  expect(state.committed.has("TX:s:1")).toBe(false); // the oldest went first
  expect(state.committed.has("TX:s:2")).toBe(true);
  const fresh = new TxState();
  fresh.apply(state.snapshot(900_000), 900_000, 900_100);
  expect([...fresh.committed]).toEqual([...state.committed]);
  expect(fresh.pendingCommitOf("TX:s:2")?.tx).toBe(2);
});

test("a version 1 snapshot (before recent commits were kept) is still read, with none", () => {
  const snapshot = RECORDS.find((record) => record.type === "snapshot")!;
  const current = encodeTxRecord(snapshot);
  // Version 1: the same body without the trailing count of recent commits' keys.
  const withoutKeys = encodeTxRecord({ ...snapshot, committed: [] } as TxRecord);
  const v1 = withoutKeys.slice(0, withoutKeys.length - 4);
  v1[1] = 1;
  expect(decodeTxRecord(v1)).toEqual({ ...snapshot, committed: [] } as TxRecord);
  expect(current[1]).toBe(2);
});

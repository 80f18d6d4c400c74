import { describe, expect, test } from "bun:test";
import type { TxRecord } from "../../../../lib/broker/tx/journal_record.ts";
import { replay, ReplayError } from "../../../../lib/broker/tx/replay.ts";

const put = (tx: number, key: string, id: bigint): TxRecord => ({
  type: "put",
  tx,
  key,
  message: { topic: "t", partition: 0, id, flag: 0, data: new Uint8Array([1]) },
});
const location = { topic: "t", partition: 0, offset: 0, length: 21, checksum: 1, records: 1 };

describe("journal replay (the recovery table)", () => {
  test("each transaction ends up where its last record puts it", () => {
    const result = replay([
      { type: "file", sequence: 0, createdMs: 0 },
      { type: "checkpoint", sequence: 0, nextTxNumber: 5 },
      put(5, "TX:s:1", 10n), // never finished: rolled back
      put(6, "XID:1:0a:01:q", 11n),
      { type: "prepare", tx: 6, key: "XID:1:0a:01:q" }, // prepared again
      put(7, "XID:1:0b:01:q", 12n),
      { type: "prepare", tx: 7, key: "XID:1:0b:01:q" },
      { type: "commit", tx: 7, key: "XID:1:0b:01:q", wasPrepared: true, locations: [location] },
      put(8, "TX:s:2", 99n),
      { type: "rollback", tx: 8, key: "TX:s:2" }, // gone
      { type: "heuristic", key: "XID:1:0c:01:q", outcome: "commit" },
      { type: "heuristic", key: "XID:1:0d:01:q", outcome: "rollback" },
      { type: "forget", key: "XID:1:0c:01:q" },
    ]);
    expect(result.unfinished.map((tx) => tx.key.text)).toEqual(["TX:s:1"]);
    expect(result.prepared.map((tx) => tx.key.text)).toEqual(["XID:1:0a:01:q"]);
    expect(result.committed.map((tx) => [tx.key.text, tx.commit?.locations])).toEqual([
      ["XID:1:0b:01:q", [location]],
    ]);
    expect([...result.heuristics]).toEqual([["XID:1:0d:01:q", "rollback"]]);
    expect(result.nextTxNumber).toBe(9);
    expect(result.highestMessageId).toBe(99n);
  });

  test("a later commit record of the same transaction (a relocation) replaces the earlier one", () => {
    const moved = { ...location, offset: 500 };
    const result = replay([
      put(1, "TX:s:1", 1n),
      { type: "commit", tx: 1, key: "TX:s:1", wasPrepared: false, locations: [location] },
      { type: "commit", tx: 1, key: "TX:s:1", wasPrepared: false, locations: [moved] },
    ]);
    expect(result.committed[0].commit?.locations).toEqual([moved]);
  });

  test("a branch prepared without puts (its only put failed) comes back prepared and empty", () => {
    const result = replay([{ type: "prepare", tx: 3, key: "XID:1:0a:01:q" }]);
    expect(result.prepared.map((tx) => [tx.key.text, tx.messages.length])).toEqual([
      ["XID:1:0a:01:q", 0],
    ]);
  });

  test("records that cannot follow each other refuse recovery", () => {
    expect(() => replay([{ type: "prepare", tx: 1, key: "TX:s:1" }])).toThrow(ReplayError);
    expect(() => replay([put(1, "TX:s:1", 1n), { type: "prepare", tx: 1, key: "TX:s:1" }])).toThrow(
      "prepare of local TX:s:1",
    );
    expect(() => replay([put(1, "nonsense", 1n)])).toThrow("invalid key");
  });
});

import { describe, expect, test } from "bun:test";
import {
  encodeRecord,
  encodeRecords,
  JOURNAL_HEADER_BYTES,
  scanJournal,
  type TxRecord,
} from "../../../../lib/broker/tx/journal_record.ts";

const RECORDS: TxRecord[] = [
  { type: "file", sequence: 3, createdMs: 1_767_225_600_000 },
  { type: "checkpoint", sequence: 3, nextTxNumber: 42 },
  {
    type: "put",
    tx: 42,
    key: "XID:1:0a0b:01:q",
    message: {
      topic: "orders",
      partition: 2,
      id: -5n,
      flag: 1,
      data: new Uint8Array([0, 0, 0, 0, 104, 105]),
    },
  },
  { type: "prepare", tx: 42, key: "XID:1:0a0b:01:q" },
  {
    type: "commit",
    tx: 42,
    key: "XID:1:0a0b:01:q",
    wasPrepared: true,
    locations: [
      {
        topic: "orders",
        partition: 2,
        offset: 2 ** 40,
        length: 26,
        checksum: 0xffffffff,
        records: 1,
      },
      { topic: "öl", partition: 0, offset: 0, length: 52, checksum: 7, records: 2 },
    ],
  },
  { type: "rollback", tx: 43, key: "TX:host-1-1:7" },
  { type: "heuristic", key: "XID:1:0a0b:01:q", outcome: "rollback" },
  { type: "heuristic", key: "XID:1:0a0c:01:q", outcome: "commit" },
  { type: "forget", key: "XID:1:0a0b:01:q" },
];

describe("journal record format", () => {
  test("every record type encodes and scans back equal", () => {
    const scan = scanJournal(encodeRecords(RECORDS));
    expect(scan.kind).toBe("clean");
    expect(scan.records.map((scanned) => scanned.record)).toEqual(RECORDS);
  });

  test("the header is 16 bytes with version 1 and its own checksum", () => {
    const bytes = encodeRecord({ type: "forget", key: "k" });
    expect(bytes.length).toBe(JOURNAL_HEADER_BYTES + 3);
    const view = new DataView(bytes.buffer);
    expect([view.getUint32(0), view.getUint8(8), view.getUint8(9), view.getUint16(10)]).toEqual([
      3,
      8,
      1,
      0,
    ]);
  });

  test("a file cut at every byte scans as the whole records before the cut and a torn tail", () => {
    const bytes = encodeRecords(RECORDS);
    const ends = scanJournal(bytes).records.map((scanned) => scanned.position).slice(1).concat(
      bytes.length,
    );
    for (let cut = 0; cut < bytes.length; cut++) {
      const scan = scanJournal(bytes.subarray(0, cut));
      const whole = ends.filter((end) => end <= cut).length;
      expect(scan.records.length, `cut=${cut}`).toBe(whole);
      expect(scan.kind, `cut=${cut}`).toBe(ends.includes(cut) || cut === 0 ? "clean" : "tornTail");
    }
  });

  test("a damaged byte before the last record is corruption, in the last record a torn tail", () => {
    const bytes = encodeRecords(RECORDS);
    const positions = scanJournal(bytes).records.map((scanned) => scanned.position);
    const middle = bytes.slice();
    middle[positions[3] + JOURNAL_HEADER_BYTES] ^= 0xff; // body of the prepare record
    const damaged = scanJournal(middle);
    expect([damaged.kind, damaged.validEnd]).toEqual(["corrupt", positions[3]]);
    const last = bytes.slice();
    last[bytes.length - 1] ^= 0xff;
    const torn = scanJournal(last);
    expect([torn.kind, torn.records.length]).toEqual(["tornTail", RECORDS.length - 1]);
  });

  test("a damaged header is caught by the header checksum, never trusted for a length", () => {
    const bytes = encodeRecords(RECORDS.slice(0, 3));
    const positions = scanJournal(bytes).records.map((scanned) => scanned.position);
    const damaged = bytes.slice();
    damaged[positions[2] + 1] ^= 0x40; // body length of the put
    const scan = scanJournal(damaged);
    if (scan.kind === "clean") throw new Error("damage went unnoticed");
    expect(scan.reason).toBe("header checksum mismatch");
    expect(scan.validEnd).toBe(positions[2]);
  });

  test("zero bytes after the records (a preallocated or zero-filled tail) are a torn tail", () => {
    const bytes = encodeRecords(RECORDS);
    const padded = new Uint8Array(bytes.length + 100);
    padded.set(bytes);
    const scan = scanJournal(padded);
    expect([scan.kind, scan.validEnd, scan.records.length]).toEqual([
      "tornTail",
      bytes.length,
      RECORDS.length,
    ]);
  });
});

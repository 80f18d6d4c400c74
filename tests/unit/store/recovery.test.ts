import { expect, test } from "bun:test";
import { encodeRecord } from "../../../lib/protocol/record.ts";
import { scanSegment } from "../../../lib/store/recovery.ts";
import { ascii, concat } from "../../support/bytes.ts";

const record = (id: number, body = `message-${id}`) =>
  encodeRecord({ id: BigInt(id), flag: 0, data: ascii(body) });
const scan = (bytes: Uint8Array, sealed = false, chunkBytes?: number) =>
  scanSegment({
    size: bytes.length,
    sealed,
    lengthMax: 1024,
    chunkBytes,
    read: (position, length) => bytes.slice(position, position + length),
  });

const three = concat(record(1), record(2), record(3));

test("a clean segment scans to its end and reports the last id", () => {
  expect(scan(three)).toEqual({ kind: "clean", validEnd: three.length, records: 3, lastId: 3n });
});

test("scanning works across every chunk size", () => {
  for (let chunk = 20; chunk <= three.length + 1; chunk++) {
    expect(scan(three, false, chunk).validEnd).toBe(three.length);
  }
});

test("a torn tail in the active segment is cut at the last valid record", () => {
  for (let cut = 1; cut < record(3).length; cut++) {
    const torn = three.subarray(0, three.length - cut);
    const verdict = scan(torn);
    expect(verdict.kind).toBe("tornTail");
    expect(verdict.validEnd).toBe(record(1).length + record(2).length);
    expect(verdict.records).toBe(2);
  }
});

test("a zero-filled tail is end of data, not a record with id 0", () => {
  const zeros = concat(three, new Uint8Array(4096));
  const verdict = scan(zeros);
  expect(verdict).toMatchObject({
    kind: "tornTail",
    validEnd: three.length,
    records: 3,
    reason: "zero header",
  });
});

test("random junk after the last record is a torn tail", () => {
  const junk = new Uint8Array(300).map((_, i) => (i * 7919 + 13) & 0xff);
  expect(scan(concat(three, junk))).toMatchObject({ kind: "tornTail", validEnd: three.length });
});

test("a checksum failure followed by valid records is corruption, even in the active segment", () => {
  const damaged = three.slice();
  damaged[record(1).length + 22] ^= 0x40; // a payload byte of record 2
  expect(scan(damaged)).toMatchObject({
    kind: "corrupt",
    validEnd: record(1).length,
    reason: "checksum mismatch, followed by valid records",
  });
});

test("a damaged length field followed by valid records is corruption", () => {
  const damaged = three.slice();
  damaged[record(1).length] = 0x7f; // length of record 2 becomes huge
  expect(scan(damaged).kind).toBe("corrupt");
});

test("any damage in a sealed segment is corruption", () => {
  expect(scan(three.subarray(0, three.length - 1), true).kind).toBe("corrupt");
  expect(scan(concat(three, new Uint8Array(20)), true).kind).toBe("corrupt");
  const flipped = three.slice();
  flipped[three.length - 1] ^= 1;
  expect(scan(flipped, true)).toMatchObject({
    kind: "corrupt",
    validEnd: record(1).length + record(2).length,
  });
});

test("a checksum failure in the last record of the active segment is a torn write", () => {
  const flipped = three.slice();
  flipped[three.length - 1] ^= 1;
  expect(scan(flipped)).toMatchObject({
    kind: "tornTail",
    validEnd: record(1).length + record(2).length,
  });
});

test("an empty segment is clean", () => {
  expect(scan(new Uint8Array(0))).toEqual({
    kind: "clean",
    validEnd: 0,
    records: 0,
    lastId: undefined,
  });
});

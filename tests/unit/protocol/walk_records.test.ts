import { expect, test } from "bun:test";
import { walkRecords } from "../../../lib/protocol/record.ts";
import { encodeRecord } from "../../../lib/protocol/record.ts";
import { concatBytes } from "../../../lib/bytes.ts";

const ascii = (text: string) => new TextEncoder().encode(text);

test("walkRecords counts complete records and stops at a partial one, at every cut", () => {
  const records = ["hello", "", "a longer payload"].map((text, index) =>
    encodeRecord({ id: BigInt(index + 1), flag: 0, data: ascii(text) })
  );
  const body = concatBytes(records);
  const ends = [0, 25, 45, 81];
  for (let cut = 0; cut <= body.length; cut++) {
    const walk = walkRecords(body.subarray(0, cut), 1024);
    const complete = ends.filter((end) => end > 0 && end <= cut).length;
    expect(walk, `cut=${cut}`).toEqual({ records: complete, bytes: ends[complete] });
  }
});

test("walkRecords hands each record's position and data length to the visitor, without copying", () => {
  const body = concatBytes([
    encodeRecord({ id: 7n, flag: 0, data: ascii("abc") }),
    encodeRecord({ id: 8n, flag: 0, data: ascii("de") }),
  ]);
  const seen: [number, number][] = [];
  walkRecords(body, 1024, (position, length) => seen.push([position, length]));
  expect(seen).toEqual([[0, 3], [23, 2]]);
});

test("walkRecords refuses a length above the limit, as MetaQ's iterator does", () => {
  const body = encodeRecord({ id: 1n, flag: 0, data: new Uint8Array(100) });
  expect(() => walkRecords(body, 99)).toThrow("invalid length 100");
});

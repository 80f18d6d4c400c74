import { expect, test } from "bun:test";
import {
  decodeRecords,
  encodeRecord,
  FLAG_HAS_ATTRIBUTE,
  joinAttribute,
  readHeader,
  splitAttribute,
} from "../../../lib/protocol/record.ts";
import { crc32Portable } from "../../../lib/crc32.ts";
import { ascii, concat, fromHex, hex, text } from "../../support/bytes.ts";

test("the 'hello' record matches the reference bytes exactly", () => {
  const record = encodeRecord({ id: 4194308098n, flag: 0, data: ascii("hello") });
  expect(hex(record)).toBe("000000053610A68600000000FA0010020000000068656C6C6F");
  expect(record.length).toBe(25);
});

test("a record header decodes back to its fields", () => {
  const record = encodeRecord({ id: -5n, flag: 0x7fffffff, data: ascii("xyz") });
  expect(readHeader(record, 0)).toEqual({
    length: 3,
    checksum: crc32Portable(ascii("xyz")) & 0x7fffffff,
    id: -5n,
    flag: 0x7fffffff,
  });
});

test("the attribute example of the reference has checksum 1264772380", () => {
  const data = joinAttribute("attr", ascii("hello"));
  expect(hex(data)).toBe("0000000461747472" + "68656C6C6F");
  const record = encodeRecord({ id: 1n, flag: FLAG_HAS_ATTRIBUTE, data });
  expect(readHeader(record, 0).checksum).toBe(1264772380);
  const split = splitAttribute(FLAG_HAS_ATTRIBUTE, data);
  expect(split.attribute).toBe("attr");
  expect(text(split.payload)).toBe("hello");
});

test("an empty attribute is a zero length with flag bit 0 set", () => {
  const data = joinAttribute("", ascii("p"));
  expect(hex(data)).toBe("0000000070");
  expect(splitAttribute(1, data)).toEqual({ attribute: "", payload: ascii("p") });
});

test("decodeRecords walks complete records and ignores a partial tail", () => {
  const a = encodeRecord({ id: 1n, flag: 0, data: ascii("first") });
  const b = encodeRecord({ id: 2n, flag: 0, data: ascii("second") });
  const bytes = concat(a, b, b.subarray(0, 7));
  const records = decodeRecords(bytes, 100);
  expect(records.map((r) => [r.offset, r.id, text(r.data)])).toEqual([[100, 1n, "first"], [
    125,
    2n,
    "second",
  ]]);
});

test("decodeRecords rejects a record whose checksum does not match", () => {
  const record = encodeRecord({ id: 1n, flag: 0, data: ascii("hello") });
  record[21] ^= 1;
  expect(() => decodeRecords(record)).toThrow("checksum mismatch");
});

test("decodeRecords rejects a negative length", () => {
  expect(() => decodeRecords(fromHex("FFFFFFFF" + "00".repeat(16)))).toThrow("invalid length");
});

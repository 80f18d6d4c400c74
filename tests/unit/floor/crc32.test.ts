import { expect, test } from "bun:test";
import {
  crc32,
  crc32Combine,
  crc32Continue,
  crc32IsNative,
  crc32Portable,
  metaqChecksum,
} from "../../../lib/crc32.ts";
import { ascii } from "../../support/bytes.ts";

test("crc32 of 'hello' is MetaQ's reference checksum 907060870", () => {
  expect(crc32(ascii("hello"))).toBe(0x3610a686);
  expect(metaqChecksum(ascii("hello"))).toBe(907060870);
});

test("the portable crc32 agrees with the native one on random inputs", () => {
  let seed = 7;
  for (let round = 0; round < 200; round++) {
    const bytes = new Uint8Array(round * 13);
    for (let i = 0; i < bytes.length; i++) {
      bytes[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
    }
    expect(crc32Portable(bytes)).toBe(crc32(bytes));
  }
});

test("metaq checksum masks the top bit so it is never negative", () => {
  // crc32("a") = 0xE8B7BE43 has the top bit set.
  expect(crc32(ascii("a"))).toBe(0xe8b7be43);
  expect(metaqChecksum(ascii("a"))).toBe(0x68b7be43);
});

test("the native crc32 is in use, and chained over chunks it equals the crc32 of the whole", () => {
  // Found without node:zlib (Bun.hash.crc32, or process.getBuiltinModule elsewhere): were it
  // missing, every checksum would take the slow table.
  expect(crc32IsNative).toBe(true);
  let seed = 11;
  for (let round = 1; round < 50; round++) {
    const bytes = new Uint8Array(round * 97);
    for (let i = 0; i < bytes.length; i++) {
      bytes[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
    }
    const cut = (round * 31) % bytes.length;
    const chained = crc32Continue(bytes.subarray(cut), crc32(bytes.subarray(0, cut)));
    expect(chained).toBe(crc32(bytes));
    expect(chained).toBe(crc32Portable(bytes.subarray(cut), crc32Portable(bytes.subarray(0, cut))));
  }
});

test("crc32Combine gives the crc32 of the concatenation, from the two parts' crc32s and length", () => {
  let seed = 5;
  const random = (length: number) => {
    const bytes = new Uint8Array(length);
    for (let i = 0; i < length; i++) bytes[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
    return bytes;
  };
  const lengths = [0, 1, 2, 3, 7, 8, 100, 4095, 4096, 65_537, 1 << 20, (1 << 20) + 13];
  for (const lengthA of [0, 1, 17, 4096]) {
    for (const lengthB of lengths) {
      const a = random(lengthA);
      const b = random(lengthB);
      const whole = new Uint8Array(lengthA + lengthB);
      whole.set(a);
      whole.set(b, lengthA);
      expect(crc32Combine(crc32(a), crc32(b), lengthB)).toBe(crc32(whole));
    }
  }
  expect(() => crc32Combine(1, 2, -1)).toThrow(RangeError);
  expect(() => crc32Combine(1, 2, 2 ** 32)).toThrow(RangeError);
});

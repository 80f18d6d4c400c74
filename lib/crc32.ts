/**
 * @module CRC-32 (IEEE/zlib), as MetaQ computes message checksums. Uses the runtime's native
 * crc32 where it has one (lib/runtime/native_crc32.ts: Bun.hash.crc32, or node:zlib's on Deno
 * and Node) and a table-driven fallback otherwise; both give identical results.
 */
import { nativeCrc32 as findNativeCrc32 } from "./runtime/native_crc32.ts";

const nativeCrc32 = findNativeCrc32();

const TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** Portable CRC-32; exported so tests can check it against the native one. */
export function crc32Portable(data: Uint8Array, initial = 0): number {
  let crc = (initial ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) crc = TABLE[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** CRC-32 of `data` as an unsigned 32-bit number. */
export const crc32: (data: Uint8Array) => number = nativeCrc32
  ? (data) => nativeCrc32(data) >>> 0
  : (data) => crc32Portable(data);

/** CRC-32 of bytes that follow those whose CRC-32 is `previous` (chained over chunks). */
export const crc32Continue: (data: Uint8Array, previous: number) => number = nativeCrc32
  ? (data, previous) => nativeCrc32(data, previous) >>> 0
  : (data, previous) => crc32Portable(data, previous);

/** MetaQ's message checksum: CRC-32 masked to 31 bits, so it is never negative. */
export function metaqChecksum(data: Uint8Array): number {
  return (crc32(data) & 0x7fffffff) >>> 0;
}

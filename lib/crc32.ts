/**
 * @module CRC-32 (IEEE/zlib), as MetaQ computes message checksums. Uses the runtime's native
 * crc32 where it has one and a table-driven fallback otherwise; both give identical results.
 * The native one is found without importing `node:zlib`: on Bun that import alone costs ~10 ms of
 * start-up (it initialises most of `node:stream`), a third of a broker's start. Bun has
 * `Bun.hash.crc32`; Deno and Node (20.16+) hand `node:zlib` over on demand through
 * `process.getBuiltinModule`. (The floor may import only the floor, so this adapter is here and
 * not under lib/runtime.)
 */
import process from "node:process";

/** CRC-32 of `data`, continuing from `initial` (the CRC-32 of the bytes before it). */
type Crc32 = (data: Uint8Array, initial?: number) => number;

function findNativeCrc32(): Crc32 | undefined {
  const bun = (globalThis as { Bun?: { hash?: { crc32?: Crc32 } } }).Bun;
  if (typeof bun?.hash?.crc32 === "function") return bun.hash.crc32;
  const getBuiltin = (process as { getBuiltinModule?: (name: string) => unknown })
    .getBuiltinModule;
  const zlib = getBuiltin?.call(process, "node:zlib") as { crc32?: Crc32 } | undefined;
  return typeof zlib?.crc32 === "function" ? zlib.crc32 : undefined;
}

const nativeCrc32 = findNativeCrc32();

/** Whether a native CRC-32 was found (tests: the fast path is the one in use). */
export const crc32IsNative: boolean = nativeCrc32 !== undefined;

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

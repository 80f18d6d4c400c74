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

// CRC-32 combination. A CRC is the remainder of the message (as a polynomial over GF(2)) modulo
// the generator; appending n zero bytes to A multiplies its remainder by x^(8n). So the CRC of A
// then B follows from CRC(A), CRC(B) and B's length alone: CRC(A) times x^(8 len B), plus CRC(B)
// (the initial and final inversions cancel in that sum). Polynomials are stored reflected, as
// the table above: bit 31 is x^0 and bit 0 is x^31.

const REFLECTED_POLY = 0xedb88320;
/** x^0 in the reflected layout. */
const X_POWER_0 = 0x80000000;

/** a times b, modulo the CRC-32 generator. */
function multiplyModPoly(a: number, b: number): number {
  let product = 0;
  for (let term = X_POWER_0; term !== 0; term >>>= 1) {
    if (a & term) product ^= b;
    b = b & 1 ? (b >>> 1) ^ REFLECTED_POLY : b >>> 1; // b times x
  }
  return product >>> 0;
}

/** x^(2^k) modulo the generator, for k = 0..34 (enough for lengths below 2^32 bytes). */
const X_POWER_TWO_POWERS = (() => {
  const powers = new Uint32Array(35);
  powers[0] = X_POWER_0 >>> 1; // x^1
  for (let k = 1; k < powers.length; k++) {
    powers[k] = multiplyModPoly(powers[k - 1], powers[k - 1]);
  }
  return powers;
})();

/**
 * CRC-32 of A followed by B, from `crcA`, `crcB` and B's length in bytes: lets a large buffer's
 * CRC be computed once and joined to different prefixes, without reading its bytes again.
 */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  if (!Number.isInteger(lengthB) || lengthB < 0 || lengthB > 0xffffffff) {
    throw new RangeError(`cannot combine a CRC-32 over ${lengthB} bytes`);
  }
  // x^(8 lengthB): multiply the powers x^(2^(k+3)) for the bits k set in lengthB.
  let shift = X_POWER_0;
  for (let rest = lengthB, k = 3; rest !== 0; rest = Math.floor(rest / 2), k++) {
    if (rest % 2 === 1) shift = multiplyModPoly(X_POWER_TWO_POWERS[k], shift);
  }
  return (multiplyModPoly(shift, crcA) ^ crcB) >>> 0;
}

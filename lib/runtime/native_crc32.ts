/**
 * @module The runtime's native CRC-32 (IEEE, as zlib computes it), found without importing
 * `node:zlib`: on Bun that import alone costs ~10 ms of start-up (it initialises most of
 * `node:stream`), which is a third of a broker's start. Bun has `Bun.hash.crc32`; Deno and
 * Node (20.16+) hand `node:zlib` over on demand through `process.getBuiltinModule`. Undefined
 * where neither exists; lib/crc32.ts then uses its portable table.
 */
import process from "node:process";

/** CRC-32 of `data`, continuing from `initial` (the CRC-32 of the bytes before it). */
export type Crc32 = (data: Uint8Array, initial?: number) => number;

export function nativeCrc32(): Crc32 | undefined {
  const bun = (globalThis as { Bun?: { hash?: { crc32?: Crc32 } } }).Bun;
  if (typeof bun?.hash?.crc32 === "function") return bun.hash.crc32;
  const getBuiltin = (process as { getBuiltinModule?: (name: string) => unknown })
    .getBuiltinModule;
  const zlib = getBuiltin?.call(process, "node:zlib") as { crc32?: Crc32 } | undefined;
  return typeof zlib?.crc32 === "function" ? zlib.crc32 : undefined;
}

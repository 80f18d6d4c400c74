/**
 * @module CRC-32 over a frame sent in parts, where a large part's own CRC is computed once and
 * remembered. A leader's append references its entries instead of copying them
 * (encodeMessageParts), and each append is checksummed twice: the Raft message's body, then the
 * peer frame around it. At R=3 a 1 MiB batch was read four times to checksum it (two layers, two
 * followers); with its CRC remembered it is read once and joined to each prefix by
 * `crc32Combine`. Referenced parts must not change while they are sent; one that changed anyway
 * would fail the receiver's check (computed over the bytes it got), never pass as good.
 */
import { crc32, crc32Combine, crc32Continue } from "../crc32.ts";

/** Parts at least this large have their CRC-32 remembered (below it, hashing is as cheap). */
export const REMEMBERED_CRC_BYTES_MIN = 64 * 1024;

const remembered = new WeakMap<Uint8Array, number>();

/** CRC-32 of `part` alone, from memory when it was computed before. */
function crc32OfLargePart(part: Uint8Array): number {
  let crc = remembered.get(part);
  if (crc === undefined) {
    crc = crc32(part);
    remembered.set(part, crc);
  }
  return crc;
}

/** CRC-32 of the bytes of `parts` that follow bytes whose CRC-32 is `previous`. */
export function crc32ContinueParts(parts: readonly Uint8Array[], previous: number): number {
  let crc = previous;
  for (const part of parts) {
    crc = part.length >= REMEMBERED_CRC_BYTES_MIN
      ? crc32Combine(crc, crc32OfLargePart(part), part.length)
      : crc32Continue(part, crc);
  }
  return crc;
}

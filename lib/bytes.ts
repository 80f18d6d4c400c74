/** @module Byte-array helpers shared by the codecs, the transports and the tests. */

/** `parts` back to back in one new array; pass `total` when the caller already counted it. */
export function concatBytes(
  parts: readonly Uint8Array[],
  total = parts.reduce((sum, part) => sum + part.length, 0),
): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

import { concatBytes } from "../../lib/bytes.ts";
/** @module Byte helpers for tests. */

export const ascii = (text: string): Uint8Array => new TextEncoder().encode(text);
export const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);
export const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex").toUpperCase();
export const fromHex = (digits: string): Uint8Array =>
  Uint8Array.from(Buffer.from(digits.replace(/\s+/g, ""), "hex"));

export const concat = (...parts: Uint8Array[]): Uint8Array => concatBytes(parts);

/** `size` bytes of a pattern that `seed` shifts: payloads a test can tell apart byte for byte. */
export function patterned(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let index = 0; index < size; index++) bytes[index] = (index * 31 + seed * 7) & 0xff;
  return bytes;
}

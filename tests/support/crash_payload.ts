/** @module The deterministic payload of record number `n` in the store crash test. */
export function payloadOf(n: number): Uint8Array {
  const text = `record-${n}-`.padEnd(20 + (n % 200), String.fromCharCode(97 + (n % 26)));
  return new TextEncoder().encode(text);
}

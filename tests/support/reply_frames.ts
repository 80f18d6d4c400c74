/** @module Splitting a stream of replies read off a raw socket into its frames (wire tests). */

/** Splits `bytes` into reply frames (`value` and `result`): header line and body. */
export function splitReplyFrames(bytes: Buffer): { header: string; body: Buffer }[] {
  const found: { header: string; body: Buffer }[] = [];
  let at = 0;
  while (at < bytes.length) {
    const end = bytes.indexOf("\r\n", at);
    if (end < 0) throw new Error(`a cut header at byte ${at}`);
    const header = bytes.subarray(at, end).toString();
    const tokens = header.split(" ");
    const length = Number(tokens[0] === "value" ? tokens[1] : tokens[2]);
    const body = bytes.subarray(end + 2, end + 2 + length);
    if (body.length < length) throw new Error(`a cut body: ${header}, ${body.length} bytes`);
    found.push({ header, body });
    at = end + 2 + length;
  }
  return found;
}

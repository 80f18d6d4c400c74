/** A forwarded put's reply, as wire bytes, read back as the code and text the HTTP routes use. */
import { expect, test } from "bun:test";
import { result } from "../../../lib/protocol/reply.ts";
import { plainReply } from "../../../lib/protocol/forwarded_reply.ts";
import { encodeResult } from "../../../lib/protocol/encoder.ts";

test("wire bytes of a result become its code and text; plain results pass through", () => {
  const frame = { kind: "frame" as const, bytes: encodeResult(200, "77 1 4096", -3) };
  expect(plainReply(frame)).toEqual(result(200, "77 1 4096"));
  const refused = encodeResult(503, "Cannot serve st-1: it has no leader now; retry shortly", 0);
  expect(plainReply({ kind: "frame", bytes: refused })).toEqual(
    result(503, "Cannot serve st-1: it has no leader now; retry shortly"),
  );
  const plain = result(500, "x");
  expect(plainReply(plain)).toBe(plain);
});

test("bytes that are not a result line answer 500 instead of passing garbage on", () => {
  const garbage = new TextEncoder().encode("value 3 0\r\nabc");
  expect(plainReply({ kind: "frame", bytes: garbage })).toMatchObject({
    kind: "result",
    code: 500,
  });
  expect(plainReply({ kind: "frame", bytes: new Uint8Array([1, 2, 3]) })).toMatchObject({
    code: 500,
  });
});

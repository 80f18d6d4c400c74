import { expect, test } from "bun:test";
import { decodeReply } from "../../../lib/http/wire_reply.ts";
import { encodeResult, encodeValue } from "../../../lib/protocol/encoder.ts";
import { result } from "../../../lib/protocol/reply.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

test("a result reads the same served here or as another node's wire bytes", () => {
  const here = decodeReply(result(301, "4096"));
  const forwarded = decodeReply({ kind: "frame", bytes: encodeResult(301, "4096", 0) });
  expect(here).toEqual({ kind: "result", code: 301, text: "4096" });
  expect(forwarded).toEqual(here);
  expect(decodeReply(result(200, bytes("ok")))).toEqual({ kind: "result", code: 200, text: "ok" });
  expect(decodeReply(result(404))).toEqual({ kind: "result", code: 404, text: "" });
});

test("a value frame gives its body, whoever built it", () => {
  const body = new Uint8Array([
    0,
    0,
    0,
    2,
    9,
    8,
    7,
    6,
    5,
    4,
    3,
    2,
    1,
    0,
    1,
    2,
    0,
    0,
    0,
    0,
    104,
    105,
  ]);
  const decoded = decodeReply({ kind: "frame", bytes: encodeValue(body, 5) });
  expect(decoded.kind).toBe("value");
  expect(decoded.kind === "value" && [...decoded.body]).toEqual([...body]);
});

test("bytes that are no reply decode as an internal error, not a throw", () => {
  const decoded = decodeReply({ kind: "frame", bytes: bytes("garbage\r\n") });
  expect(decoded).toMatchObject({ kind: "result", code: 500 });
});

import { expect, test } from "bun:test";
import { ManualClock } from "../../../lib/clock.ts";
import {
  BATCH_PUT_VERB,
  BatchPutBuilder,
  checkBatch,
  formatBatchReply,
  idInBatch,
  parseBatchReply,
  stampIds,
} from "../../../lib/protocol/batch_put.ts";
import { ID_EPOCH_MS, MessageIdGenerator } from "../../../lib/protocol/message_id.ts";
import { Parser } from "../../../lib/protocol/parser.ts";
import { decodeRecords, splitAttribute } from "../../../lib/protocol/record.ts";

const text = new TextEncoder();
const utf8 = new TextDecoder();

function builderOf(payloads: readonly string[], attribute?: string): BatchPutBuilder {
  const builder = new BatchPutBuilder();
  for (const payload of payloads) builder.add(text.encode(payload), 0, attribute);
  return builder;
}

/** The request as the broker's parser reads it, with bput registered as an extension. */
function parse(bytes: Uint8Array) {
  const parser = new Parser({
    bodyBytesMax: 1024,
    extensions: new Map([[BATCH_PUT_VERB, { args: 4, bodyLengthArg: 3, bodyBytesMax: 1 << 20 }]]),
  });
  const { commands, error } = parser.push(bytes);
  expect(error).toBeUndefined();
  expect(commands).toHaveLength(1);
  const command = commands[0];
  if (command.kind !== "extension") throw new Error(`parsed as ${command.kind}`);
  return command;
}

test("a built batch parses as one bput whose body is the records in MetaQ's layout", () => {
  // Enough records to make the builder grow its buffer several times.
  const payloads = Array.from({ length: 500 }, (_, n) => `message-${n}-${"x".repeat(n % 97)}`);
  const builder = builderOf(payloads);
  const command = parse(builder.encode("orders", 3, 77));
  expect(command.verb).toBe("bput");
  expect(command.args).toEqual(["orders", "3", "500", String(builder.bytes)]);
  expect(command.opaque).toBe(77);
  const checked = checkBatch(command.body, 500, 4096);
  expect(checked).toEqual({
    ok: true,
    payloadBytes: payloads.reduce((sum, p) => sum + p.length, 0),
  });
  const records = decodeRecords(command.body, 0);
  expect(records.map((record) => utf8.decode(record.data))).toEqual(payloads);
  expect(records.every((record) => record.id === 0n && record.flag === 0)).toBe(true);
});

test("an attribute is joined before the payload and flagged, as a plain put does it", () => {
  const command = parse(builderOf(["body"], "kéy=1").encode("t", 0, 1));
  const [record] = decodeRecords(command.body, 0);
  expect(record.flag & 1).toBe(1);
  const { attribute, payload } = splitAttribute(record.flag, record.data);
  expect(attribute).toBe("kéy=1");
  expect(utf8.decode(payload)).toBe("body");
  expect(checkBatch(command.body, 1, 4096).ok).toBe(true);
});

test("a damaged batch is refused with the reason, before any id is given", () => {
  const body = () => parse(builderOf(["aaaa", "bbbbbbbb", "cc"]).encode("t", 0, 1)).body;
  expect(checkBatch(body(), 2, 4096)).toMatchObject({
    ok: false,
    problem: { kind: "badRequest" },
  });
  expect(checkBatch(body(), 4, 4096)).toMatchObject({
    ok: false,
    problem: { kind: "badRequest", detail: expect.stringContaining("3 records") },
  });
  expect(checkBatch(body(), 3, 6)).toEqual({
    ok: false,
    problem: { kind: "messageTooLarge", bytes: 8 },
  });
  const flipped = body();
  flipped[20 + 4 + 20 + 3] ^= 1; // a byte of the second record's data
  expect(checkBatch(flipped, 3, 4096)).toEqual({
    ok: false,
    problem: { kind: "checksumMismatch", index: 1 },
  });
  expect(checkBatch(body().subarray(0, 50), 3, 4096)).toMatchObject({
    ok: false,
    problem: { kind: "badRequest", detail: expect.stringContaining("past the end") },
  });
  expect(checkBatch(body().subarray(0, 30), 3, 4096)).toMatchObject({
    ok: false,
    problem: { kind: "badRequest", detail: expect.stringContaining("cut in its header") },
  });
});

test("ids are written into the records as runs; the reply's runs name every record's id", () => {
  const clock = new ManualClock(ID_EPOCH_MS + 5_000);
  const ids = new MessageIdGenerator({ brokerId: 7, clock });
  const before = ids.next();
  // 6000 records cannot take consecutive ids from one millisecond (4096 sequence numbers).
  const payloads = Array.from({ length: 6000 }, (_, n) => String(n));
  const body = parse(builderOf(payloads).encode("t", 0, 1)).body;
  const runs = stampIds(body, payloads.length, ids);
  expect(runs.length).toBe(2);
  expect(runs.reduce((sum, run) => sum + run.count, 0)).toBe(6000);
  const after = ids.next();
  const stored = decodeRecords(body, 0);
  const reply = parseBatchReply(formatBatchReply(0, 4242, runs))!;
  expect(reply.partition).toBe(0);
  expect(reply.offset).toBe(4242);
  let previous = before;
  for (const [index, record] of stored.entries()) {
    expect(record.id).toBe(idInBatch(reply, index));
    expect(record.id > previous).toBe(true);
    previous = record.id;
  }
  expect(after > previous).toBe(true);
  expect(() => idInBatch(reply, 6000)).toThrow(RangeError);
});

test("a reply that is not a batch's is not read as one", () => {
  for (const bad of ["", "0", "0 12", "0 12 5", "0 12 5:x", "a 12 5:1", "0 12 5:1 junk"]) {
    expect(parseBatchReply(bad), bad).toBeUndefined();
  }
});

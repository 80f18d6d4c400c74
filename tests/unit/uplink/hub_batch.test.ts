import { expect, test } from "bun:test";
import { metaqChecksum } from "../../../lib/crc32.ts";
import {
  decodeRecords,
  encodeRecord,
  FLAG_HAS_ATTRIBUTE,
  joinAttribute,
  splitAttribute,
} from "../../../lib/protocol/record.ts";
import { originId, parseOriginAttribute } from "../../../lib/protocol/uplink_origin.ts";
import { checkBatch } from "../../../lib/uplink/hub_commands.ts";
import { buildHubBatch } from "../../../lib/uplink/hub_batch.ts";

const encoder = new TextEncoder();
const FROM = { site: "edge-a", topic: "orders", partition: 2 };

/** Source records as an edge partition holds them, starting at `base`. */
function sourceOf(messages: { payload: string; attribute?: string; flag?: number }[]) {
  const parts = messages.map((message, index) => {
    const payload = encoder.encode(message.payload);
    const data = message.attribute === undefined
      ? payload
      : joinAttribute(message.attribute, payload);
    const flag = (message.flag ?? 0) | (message.attribute === undefined ? 0 : FLAG_HAS_ATTRIBUTE);
    return encodeRecord({ id: 1000n + BigInt(index), flag, data });
  });
  const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return { bytes, parts };
}

test("a batch carries every message with its origin, its attribute and its flag bits", () => {
  const base = 4096;
  const { bytes, parts } = sourceOf([
    { payload: "plain" },
    { payload: "tagged", attribute: "gold" },
    { payload: "", attribute: "", flag: 6 },
  ]);
  const batch = buildHubBatch(FROM, bytes, base, 1024 * 1024);
  expect(batch.records).toBe(3);
  expect(batch.sourceBytes).toBe(bytes.length);
  expect(checkBatch(batch.body, 1024 * 1024)).toEqual({
    records: 3,
    dataBytes: expect.any(Number),
  });
  const records = decodeRecords(batch.body);
  const offsets = [base, base + parts[0].length, base + parts[0].length + parts[1].length];
  const expected = [
    { payload: "plain", attribute: undefined, flag: 1 },
    { payload: "tagged", attribute: "gold", flag: 1 },
    { payload: "", attribute: "", flag: 7 },
  ];
  records.forEach((record, index) => {
    const { attribute, payload } = splitAttribute(record.flag, record.data);
    const parsed = parseOriginAttribute(attribute!)!;
    expect(parsed.origin).toEqual({ ...FROM, offset: offsets[index], id: 1000n + BigInt(index) });
    expect(parsed.attribute).toBe(expected[index].attribute);
    expect(new TextDecoder().decode(payload)).toBe(expected[index].payload);
    expect(record.flag).toBe(expected[index].flag);
    expect(record.id).toBe(originId(FROM.site, FROM.topic, FROM.partition, offsets[index]));
    expect(record.checksum).toBe(metaqChecksum(record.data));
  });
});

test("a batch stops before the record that would pass its limit", () => {
  const { bytes, parts } = sourceOf(
    Array.from({ length: 10 }, (_, index) => ({ payload: "x".repeat(100 + index) })),
  );
  const one = buildHubBatch(FROM, bytes, 0, 1024 * 1024).body.length / 10;
  const batch = buildHubBatch(FROM, bytes, 0, Math.floor(one * 3.5));
  expect(batch.records).toBe(3);
  expect(batch.sourceBytes).toBe(parts[0].length + parts[1].length + parts[2].length);
  expect(buildHubBatch(FROM, bytes, 0, 100).records).toBe(0);
  // A partial record at the end of what was read is left for the next batch.
  const cut = buildHubBatch(FROM, bytes.subarray(0, parts[0].length + 5), 0, 1024 * 1024);
  expect(cut.records).toBe(1);
  expect(cut.sourceBytes).toBe(parts[0].length);
});

test("the hub refuses batches that are not an uplink's", () => {
  const { bytes } = sourceOf([{ payload: "a" }, { payload: "b" }]);
  const good = buildHubBatch(FROM, bytes, 0, 1024 * 1024).body;
  expect(checkBatch(good, 1024)).toEqual({ records: 2, dataBytes: expect.any(Number) });
  expect(checkBatch(good, 10)).toContain("exceed maxMessageSize 10");
  expect(checkBatch(good.subarray(0, good.length - 1), 1024)).toContain("not whole records");
  expect(checkBatch(bytes, 1024)).toContain("not an origin id");
  const corrupt = good.slice();
  corrupt[corrupt.length - 1] ^= 1;
  expect(checkBatch(corrupt, 1024)).toContain("bad checksum");
  const negativeButPlain = encodeRecord({ id: -7n, flag: 0, data: encoder.encode("x") });
  expect(checkBatch(negativeButPlain, 1024)).toContain("does not start with metaq-origin:");
  expect(checkBatch(new Uint8Array(0), 1024)).toEqual({ records: 0, dataBytes: 0 });
});

test("messages that came from this site through the hub are passed over, not sent again", () => {
  const fromHere = `metaq-origin:${FROM.site}/orders/2/0/5`;
  const { bytes, parts } = sourceOf([
    { payload: "mine again", attribute: fromHere },
    { payload: "via another edge", attribute: `metaq-origin:edge-b/x/0/1/2;${fromHere};tag` },
    { payload: "other edge", attribute: "metaq-origin:edge-b/x/0/1/2" },
    { payload: "user text", attribute: `tag;${fromHere}` },
    { payload: "similar site", attribute: `metaq-origin:${FROM.site}x/orders/2/0/5` },
  ]);
  const batch = buildHubBatch(FROM, bytes, 0, 1024 * 1024);
  expect(batch.looped).toBe(2);
  expect(batch.records).toBe(3);
  expect(batch.sourceBytes).toBe(bytes.length);
  expect(
    decodeRecords(batch.body).map((record) =>
      new TextDecoder().decode(splitAttribute(record.flag, record.data).payload)
    ),
  ).toEqual(["other edge", "user text", "similar site"]);
  // A batch of nothing but such messages still moves past them.
  const only = buildHubBatch(FROM, bytes.subarray(0, parts[0].length), 0, 1024 * 1024);
  expect(only).toMatchObject({ records: 0, looped: 1, sourceBytes: parts[0].length });
});

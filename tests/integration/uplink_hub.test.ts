/**
 * The hub's side of an uplink, over real TCP to a broker with users: `uput` appends a batch of
 * forwarded records once however often it is sent (the whole batch again, or a longer one that
 * starts with it), answers an empty batch with the partition's end and its message limit, needs
 * produce permission on the topic, and refuses what an uplink would never send.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type App, assemble } from "../../lib/app/assemble.ts";
import { BrokerConnection, type Reply } from "../../lib/client/connection.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { UPLINK_BATCH_BYTES_MAX } from "../../lib/limits.ts";
import { silentLogger } from "../../lib/log.ts";
import { encodeExtension } from "../../lib/protocol/encoder.ts";
import { decodeRecords, encodeRecord, splitAttribute } from "../../lib/protocol/record.ts";
import { isOriginId, parseOriginAttribute } from "../../lib/protocol/uplink_origin.ts";
import { buildHubBatch } from "../../lib/uplink/hub_batch.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";

const EDGE_TOKEN = "edge-token-0123456789abcdef";
const READER_TOKEN = "reader-token-0123456789abcdef";
const MAX_MESSAGE_BYTES = 4000;
/** The limits every reply ends with: the largest batch, then the largest message. */
const LIMITS = `${UPLINK_BATCH_BYTES_MAX} ${MAX_MESSAGE_BYTES}`;
const FROM = { site: "edge-1", topic: "orders", partition: 1 };

let temp: TempDir;
let hub: App;

beforeAll(async () => {
  temp = tempDir("metaq-uplink-hub-");
  hub = await assemble({
    config: buildConfig({
      fileText: `[system]
dataPath=${temp.path}
numPartitions=2
maxMessageSize=${MAX_MESSAGE_BYTES}
[topic=site.*]
[topic=other]
[user=edge]
token=${EDGE_TOKEN}
produce=site.*
consume=site.*
[user=reader]
token=${READER_TOKEN}
consume=*
`,
      overrides: { serverPort: "0", httpEnabled: "false" },
    }),
    logger: silentLogger,
  });
});

afterAll(async () => {
  await hub.close();
  temp[Symbol.dispose]();
});

/** `count` edge records of `orders-1` as they lie in its log, from offset 0. */
function edgeRecords(count: number): Uint8Array {
  const parts = Array.from(
    { length: count },
    (_, index) =>
      encodeRecord({
        id: 5000n + BigInt(index),
        flag: 0,
        data: new TextEncoder().encode(`m${index}`),
      }),
  );
  const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  parts.reduce((at, part) => (bytes.set(part, at), at + part.length), 0);
  return bytes;
}

async function connectAs(user: string, token: string): Promise<BrokerConnection> {
  return await BrokerConnection.connect({
    host: "127.0.0.1",
    port: hub.port,
    auth: { user, token },
  });
}

async function uput(
  connection: BrokerConnection,
  args: (string | number)[],
  body = new Uint8Array(0),
): Promise<string> {
  const opaque = connection.nextOpaque();
  const reply: Reply = await connection.request(
    encodeExtension("uput", [...args, body.length], opaque, body),
    opaque,
  );
  expect(reply.kind).toBe("result");
  return `${(reply as { code: number }).code} ${new TextDecoder().decode(reply.body)}`;
}

/** Every record of `topic`-`partition` at the hub. */
function hubRecords(topic: string, partition: number) {
  const log = hub.logs.get(topic, partition)!;
  const bytes = new Uint8Array(log.endOffset - log.startOffset);
  log.readInto(bytes, 0, log.startOffset, bytes.length);
  return decodeRecords(bytes, log.startOffset);
}

test("a batch sent again, whole or as the start of a longer one, lands once and in order", async () => {
  const connection = await connectAs("edge", EDGE_TOKEN);
  try {
    expect(await uput(connection, ["site.orders", 1, 0])).toBe(`200 0 0 ${LIMITS}`);
    const source = edgeRecords(5);
    const three = buildHubBatch(FROM, source.subarray(0, 3 * 22), 0, 1 << 20);
    expect(three.records).toBe(3);
    // Answered with the batch's first offset and the partition's end: the next `since`.
    const first = await uput(connection, ["site.orders", 1, 0], three.body);
    expect(first).toBe(`200 0 ${three.body.length} ${LIMITS}`);
    // The reply was lost: the same batch again, from the same `since`.
    expect(await uput(connection, ["site.orders", 1, 0], three.body)).toBe(first);
    // After a restart the edge reads further: the first three are found, two are new.
    const five = buildHubBatch(FROM, source, 0, 1 << 20);
    expect(await uput(connection, ["site.orders", 1, 0], five.body)).toBe(
      `200 0 ${five.body.length} ${LIMITS}`,
    );
    const records = hubRecords("site.orders", 1);
    expect(records.map((record) => splitAttribute(record.flag, record.data).attribute))
      .toEqual(
        [0, 22, 44, 66, 88].map((offset, index) =>
          `metaq-origin:edge-1/orders/1/${offset}/${5000 + index}`
        ),
      );
    expect(records.every((record) => isOriginId(record.id))).toBe(true);
    const payloads = records.map((record) =>
      new TextDecoder().decode(splitAttribute(record.flag, record.data).payload)
    );
    expect(payloads).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    expect(parseOriginAttribute(splitAttribute(records[4].flag, records[4].data).attribute!))
      .toMatchObject({ origin: { site: "edge-1", topic: "orders", partition: 1, offset: 88 } });
    // The probe now answers the end: where a batch from a fresh edge would be looked for.
    const end = hub.logs.get("site.orders", 1)!.endOffset;
    expect(await uput(connection, ["site.orders", 1, 0])).toBe(
      `200 ${end} ${end} ${LIMITS}`,
    );
  } finally {
    connection.close();
  }
});

test("uput needs produce permission on its topic", async () => {
  const batch = buildHubBatch(FROM, edgeRecords(1), 0, 1 << 20).body;
  const reader = await connectAs("reader", READER_TOKEN);
  const edge = await connectAs("edge", EDGE_TOKEN);
  try {
    expect(await uput(reader, ["site.orders", 0, 0], batch)).toMatch(
      /^403 Cannot allow this operation: user 'reader' may not produce topic 'site.orders'/,
    );
    expect(await uput(edge, ["other", 0, 0], batch)).toMatch(
      /^403 Cannot allow this operation: user 'edge' may not produce topic 'other'/,
    );
  } finally {
    reader.close();
    edge.close();
  }
  expect(hub.logs.get("site.orders", 0)).toBeUndefined();
});

test("uput refuses what an uplink would never send, and appends nothing", async () => {
  const connection = await connectAs("edge", EDGE_TOKEN);
  const good = buildHubBatch(FROM, edgeRecords(2), 0, 1 << 20).body;
  const before = hubRecords("site.orders", 1).length;
  try {
    expect(await uput(connection, ["site.orders", 2, 0], good)).toMatch(
      /^500 Cannot use partition: out of range: wrong partition 2: topic site.orders has 2/,
    );
    expect(await uput(connection, ["site.orders", "x", 0], good)).toMatch(
      /^400 Bad request: bad uput/,
    );
    expect(await uput(connection, ["site.orders", 1, 0], edgeRecords(2))).toMatch(
      /^400 .*its id is not an origin id/,
    );
    expect(await uput(connection, ["site.a/b", 1, 0], good)).toMatch(
      /^500 The server do not accept/,
    );
    // A message longer than the hub's maxMessageSize (with its origin) is refused...
    const big = buildHubBatch(
      FROM,
      encodeRecord({ id: 1n, flag: 0, data: new Uint8Array(MAX_MESSAGE_BYTES) }),
      0,
      1 << 20,
    ).body;
    expect(await uput(connection, ["site.orders", 1, 0], big)).toMatch(
      /^400 .*exceed maxMessageSize 4000/,
    );
    // ...and a body over the largest batch ends the stream, as any frame over a limit does: an
    // edge sizes its batches by the limit the hub's answers carry.
    const huge = new Uint8Array(UPLINK_BATCH_BYTES_MAX + 1);
    await expect(uput(connection, ["site.orders", 1, 0], huge)).rejects.toThrow("closed");
  } finally {
    connection.close();
  }
  expect(hubRecords("site.orders", 1).length).toBe(before);
});

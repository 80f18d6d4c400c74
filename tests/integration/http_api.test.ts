/**
 * The HTTP API of one broker started with assemble(), through `app.request()`: MetaQ's plugin
 * routes, topics, produce and fetch, the live stream, stats and metrics, and consumer groups as
 * the real group coordinator keeps them (asked through the edge, as every node asks). The same
 * API on a three-node cluster is in http_cluster.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Hono } from "hono";
import { type App, assemble } from "../../lib/app/assemble.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { createAdminApp } from "../../lib/http/admin.ts";
import { groupsOverWire } from "../../lib/http/groups_over_wire.ts";
import { ask, HTTP_REQUEST_CONTEXT } from "../../lib/http/wire_reply.ts";
import { silentLogger } from "../../lib/log.ts";
import { LogRing, ringLogger } from "../../lib/log_ring.ts";
import { encodeRecord, joinAttribute } from "../../lib/protocol/record.ts";
import type { Log } from "../../lib/store/log.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";

const CONFIG = (dataPath: string) => `
[system]
brokerId=3
numPartitions=2
dataPath=${dataPath}
maxSegmentSize=4096
maxMessageSize=1000
deletePolicy=delete,0s
[topic=orders]
[topic=events]
numPartitions=3
[topic=logs-*]
[topic=empty]
[topic=retained]
numPartitions=1
`;

let temp: TempDir;
let running: App;
let app: Hono;
let bare: Hono;
const recentLog = new LogRing(10);
const shutdown = new AbortController();

beforeAll(async () => {
  temp = tempDir();
  running = await assemble({
    config: buildConfig({
      fileText: CONFIG(temp.path),
      overrides: { serverPort: "0", httpEnabled: "false" },
    }),
    logger: ringLogger(silentLogger, recentLog),
  });
  app = createAdminApp(running.broker, {
    requests: running.edge,
    groups: groupsOverWire(running.edge),
    recentLog,
    signal: shutdown.signal,
    heartbeatMs: 200,
    snapshotIntervalMs: 50,
    streamsMax: 4,
  });
  bare = createAdminApp(running.broker, { signal: shutdown.signal });
});

afterAll(async () => {
  shutdown.abort();
  await running.close();
  temp[Symbol.dispose]();
});

/** The log of a partition, which the test expects to exist. */
function logOf(topic: string, partition: number): Log {
  const log = running.logs.get(topic, partition);
  if (!log) throw new Error(`no log ${topic}-${partition}`);
  return log;
}

/** A group wire command through the broker's edge, as a client sends it; its text on success. */
async function groupCommand(verb: string, args: string[]): Promise<string> {
  const answer = await ask(
    (command, respond) => running.edge.dispatch(command, HTTP_REQUEST_CONTEXT, respond),
    { kind: "extension", verb, args, opaque: 0, body: new Uint8Array(0) },
  );
  if (answer.kind !== "result" || answer.code !== 200) {
    throw new Error(`${verb} failed: ${JSON.stringify(answer)}`);
  }
  return answer.text;
}

/** Sets `group`'s committed offset of a partition, as `metaq groups reset --force` does. */
function commit(group: string, topic: string, partition: number, offset: number) {
  return groupCommand("adjust", [group, topic, String(partition), String(offset), "force"]);
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

async function json(response: Response | Promise<Response>) {
  const answer = await response;
  return { status: answer.status, body: await answer.json() };
}

function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  return app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
}

async function produce(topic: string, messages: unknown[]) {
  const answer = await json(post(`/v1/topics/${topic}/messages`, { messages }));
  expect(answer.status).toBe(200);
  return answer.body.results as { partition: number; offset: number; id: string }[];
}

/** A request body that counts how much of it was pulled. */
function countingBody(totalBytes: number, chunkBytes: number) {
  const state = { pulled: 0 };
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= totalBytes) return controller.close();
      const chunk = new Uint8Array(Math.min(chunkBytes, totalBytes - sent)).fill(120);
      sent += chunk.length;
      state.pulled += chunk.length;
      controller.enqueue(chunk);
    },
  });
  return { stream, state };
}

function dirsOf(topic: string): string[] {
  return fs.readdirSync(temp.path).filter((name) => name.startsWith(`${topic}-`));
}

describe("MetaQ's HTTP plugin: /put, /get, /offset", () => {
  test("put answers MetaQ's text, get serves the exact record bytes, offset a segment start", async () => {
    const put = await app.request("/put/3?topic=orders&partition=0&flag=0&length=5", {
      method: "POST",
      body: "hello",
    });
    expect(put.status).toBe(200);
    const [id, partition, offset] = (await put.text()).split(" ");
    expect([partition, offset]).toEqual(["0", "0"]);

    const get = await app.request("/get/3?topic=orders&partition=0&group=g&offset=0&maxsize=1024");
    expect(get.status).toBe(200);
    expect(get.headers.get("content-type")).toBe("application/octet-stream");
    expect(new Uint8Array(await get.arrayBuffer())).toEqual(
      encodeRecord({ id: BigInt(id), flag: 0, data: new TextEncoder().encode("hello") }),
    );

    const atOffset = await app.request("/offset?topic=orders&partition=0&group=g&offset=10");
    expect([atOffset.status, await atOffset.text()]).toEqual([200, "0"]);
  });

  test("the first character after / picks the operation, as in MetaQ", async () => {
    const put = await app.request("/p?topic=orders&partition=1&flag=0&length=3", {
      method: "POST",
      body: "abc",
    });
    expect(put.status).toBe(200);
    const get = await app.request("/gimme?topic=orders&partition=1&group=g&offset=0&maxsize=100");
    expect(get.status).toBe(200);
    expect(text(new Uint8Array(await get.arrayBuffer())).endsWith("abc")).toBe(true);
    for (const bad of ["/", "/xyz", "/7/put"]) {
      const answer = await app.request(bad, { method: "POST", body: "x" });
      expect([bad, answer.status, await answer.text()]).toEqual([bad, 400, "Invalid request"]);
    }
  });

  test("get answers MetaQ's codes and texts: caught up, past the end, end marker, bad size", async () => {
    const end = logOf("orders", 0).endOffset;
    const caughtUp = await app.request(
      `/get?topic=orders&partition=0&group=g&offset=${end}&maxsize=100`,
    );
    expect([caughtUp.status, await caughtUp.text()]).toEqual([
      404,
      `Could not find message at position ${end}`,
    ]);
    const latest = await app.request(
      "/get?topic=orders&partition=0&group=g&offset=9223372036854775807&maxsize=100",
    );
    expect([latest.status, await latest.text()]).toEqual([301, String(end)]);
    const badSize = await app.request("/get?topic=orders&partition=0&group=g&offset=0&maxsize=0");
    expect([badSize.status, await badSize.text()]).toEqual([400, "Bad request,invalid max size:0"]);
    const noStore = await app.request("/get?topic=nope&partition=0&group=g&offset=0&maxsize=9");
    expect([noStore.status, await noStore.text()]).toEqual([
      404,
      "The topic `nope` in partition `0` is not exists",
    ]);
  });

  test("put failures carry MetaQ's codes and texts and write nothing", async () => {
    const before = logOf("orders", 0).endOffset;
    const wrong = await app.request("/put?topic=orders&partition=9&flag=0&length=1", {
      method: "POST",
      body: "x",
    });
    expect(wrong.status).toBe(500);
    expect(await wrong.text()).toContain("[partition 'orders-9'] failed.Detail:wrong partition 9");
    const checksum = await app.request(
      "/put?topic=orders&partition=0&flag=0&length=5&checksum=1",
      { method: "POST", body: "hello" },
    );
    expect(checksum.status).toBe(500);
    expect(await checksum.text()).toContain("Checksum failure");
    const unknown = await app.request("/put?topic=nope&partition=0&flag=0&length=1", {
      method: "POST",
      body: "x",
    });
    expect(unknown.status).toBe(500);
    expect(await unknown.text()).toContain("The server do not accept topic nope");
    for (
      const query of ["partition=x&flag=0&length=1", "partition=0&length=1", "partition=0&flag=0"]
    ) {
      const answer = await app.request(`/put?topic=orders&${query}`, { method: "POST", body: "x" });
      expect(answer.status).toBe(400);
      expect(await answer.text()).toMatch(/^Bad request,(invalid|missing parameter)/);
    }
    const short = await app.request("/put?topic=orders&partition=0&flag=0&length=9", {
      method: "POST",
      body: "abc",
    });
    expect([short.status, await short.text()]).toEqual([
      400,
      "Bad request,body has 3 bytes but length is 9",
    ]);
    expect(logOf("orders", 0).endOffset).toBe(before);
    expect(dirsOf("nope")).toEqual([]);
  });

  test("a put body over maxMessageSize is refused with 413 before it is read whole", async () => {
    const { stream, state } = countingBody(1_000_000, 4096);
    const answer = await app.request("/put?topic=orders&partition=0&flag=0&length=1000000", {
      method: "POST",
      body: stream,
      duplex: "half",
    } as RequestInit);
    expect(answer.status).toBe(413);
    expect(await answer.text()).toContain("exceeds 1000 bytes");
    expect(state.pulled).toBeLessThan(20_000);
  });
});

describe("topics: list, create, describe", () => {
  test("creating a topic makes its configured partitions; again is a 200 that changes nothing", async () => {
    const created = await json(post("/v1/topics", { name: "events" }));
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: "events", numPartitions: 3, messages: 0 });
    expect(created.body.partitions.map((p: { partition: number }) => p.partition)).toEqual([
      0,
      1,
      2,
    ]);
    expect(dirsOf("events").sort()).toEqual(["events-0", "events-1", "events-2"]);
    const again = await json(post("/v1/topics", { name: "events", partitions: 3 }));
    expect(again.status).toBe(200);
  });

  test("a wildcard section accepts matching names; invalid and refused names change nothing", async () => {
    expect((await json(post("/v1/topics", { name: "logs-web" }))).status).toBe(201);
    const invalid = await json(post("/v1/topics", { name: "../etc" }));
    expect(invalid.status).toBe(400);
    expect(invalid.body.error.kind).toBe("invalidName");
    const internal = await json(post("/v1/topics", { name: "__meta" }));
    expect(internal.status).toBe(500);
    expect(internal.body.error.message).toContain("topics starting with '__'");
    const zero = await json(post("/v1/topics", { name: "orders", partitions: 0 }));
    expect(zero.status).toBe(400);
    expect(zero.body.error.message).toContain("give a whole number of at least 1");
    const extra = await json(post("/v1/topics", { name: "orders", replicas: 3 }));
    expect(extra.status).toBe(400);
    const notJson = await app.request("/v1/topics", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{nope",
    });
    expect((await json(notJson)).body.error.kind).toBe("badRequest");
    expect(fs.readdirSync(path.dirname(temp.path)).includes("etc-0")).toBe(false);
  });

  test("a topic no section names is created with the partitions asked for; grown, never shrunk", async () => {
    const created = await json(post("/v1/topics", { name: "clicks", partitions: 3 }));
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: "clicks", numPartitions: 3 });
    expect(dirsOf("clicks").sort()).toEqual(["clicks-0", "clicks-1", "clicks-2"]);
    const grown = await json(post("/v1/topics", { name: "clicks", partitions: 5 }));
    expect(grown.status).toBe(201);
    expect(grown.body.numPartitions).toBe(5);
    expect(dirsOf("clicks").length).toBe(5);
    const shrink = await json(post("/v1/topics", { name: "clicks", partitions: 2 }));
    expect(shrink.status).toBe(400);
    expect(shrink.body.error.message).toContain("Cannot shrink topic clicks from 5 to 2");
    expect((await json(app.request("/v1/topics/clicks"))).body.numPartitions).toBe(5);
  });

  test("DELETE removes a topic and its files; it is then unknown until created again", async () => {
    await json(post("/v1/topics", { name: "doomed", partitions: 2 }));
    expect(dirsOf("doomed").length).toBe(2);
    const deleted = await json(app.request("/v1/topics/doomed", { method: "DELETE" }));
    expect(deleted).toEqual({
      status: 200,
      body: { topic: "doomed", deleted: true, partitionsRemoved: 2, offsetsRemoved: 0 },
    });
    expect(dirsOf("doomed")).toEqual([]);
    expect((await json(app.request("/v1/topics/doomed"))).status).toBe(404);
    const again = await json(app.request("/v1/topics/doomed", { method: "DELETE" }));
    expect(again.status).toBe(404);
    expect(again.body.error.message).toBe("Cannot delete topic doomed: it is deleted already");
    const unknown = await json(app.request("/v1/topics/never", { method: "DELETE" }));
    expect(unknown.status).toBe(404);
    const internal = await json(app.request("/v1/topics/__meta", { method: "DELETE" }));
    expect(internal.status).toBe(400);
  });

  test("the list shows stored topics and configured ones without data", async () => {
    const { status, body } = await json(app.request("/v1/topics"));
    expect(status).toBe(200);
    const names = body.topics.map((topic: { name: string }) => topic.name);
    expect(names).toEqual(expect.arrayContaining(["orders", "events", "logs-web", "empty"]));
    expect(running.logs.list().some((entry) => entry.topic.startsWith("__"))).toBe(true);
    expect(names.filter((name: string) => name.startsWith("__"))).toEqual([]);
    const empty = body.topics.find((topic: { name: string }) => topic.name === "empty");
    expect(empty).toMatchObject({ numPartitions: 2, messages: 0, partitions: [] });
  });

  test("describe gives every partition's offsets, size and count; unknown topics are 404", async () => {
    const { status, body } = await json(app.request("/v1/topics/orders"));
    expect(status).toBe(200);
    const zero = body.partitions[0];
    const log = logOf("orders", 0);
    expect(zero).toMatchObject({
      partition: 0,
      startOffset: 0,
      endOffset: log.endOffset,
      bytes: log.facts().bytes,
      messages: log.facts().messages,
      segments: 1,
      closed: false,
      leader: null,
    });
    expect(typeof zero.produceMessagesPerSecond).toBe("number");
    const missing = await json(app.request("/v1/topics/nope"));
    expect(missing).toEqual({
      status: 404,
      body: { error: { kind: "topicNotFound", message: "Cannot find topic: nope" } },
    });
    expect((await json(app.request("/v1/topics/bad%20name"))).status).toBe(400);
  });
});

describe("produce and fetch", () => {
  test("a JSON batch with UTF-8, base64, key and attribute reads back exactly", async () => {
    const results = await produce("logs-app", [
      { payload: "plain text", partition: 0 },
      { payload: "AAEC/w==", encoding: "base64", partition: 0 },
      { payload: "with attr", attribute: "trace=1", partition: 0 },
      { payload: "keyed", key: "customer-7" },
    ]);
    expect(results.slice(0, 3).map((result) => result.offset)).toEqual([0, 30, 54]);
    expect(results[3].partition).toBe(results[3].partition === 0 ? 0 : 1);
    const fetched = await json(app.request("/v1/topics/logs-app/partitions/0/messages"));
    expect(fetched.status).toBe(200);
    const messages = fetched.body.messages;
    expect(
      messages.slice(0, 3).map((
        m: Record<string, unknown>,
      ) => [m.payload, m.encoding, m.attribute]),
    )
      .toEqual([
        ["plain text", "utf8", null],
        ["AAEC/w==", "base64", null],
        ["with attr", "utf8", "trace=1"],
      ]);
    expect(messages[0]).toMatchObject({ offset: 0, nextOffset: 30, id: results[0].id, flag: 0 });
    expect(messages[2].flag).toBe(1);
    expect(fetched.body.nextOffset).toBe(messages.at(-1).nextOffset);
    const log = logOf("logs-app", 0);
    const raw = new Uint8Array(log.readableAt(54, 1000));
    log.readInto(raw, 0, 54, raw.length);
    expect(raw.subarray(20, 20 + 4 + 7 + 9)).toEqual(
      joinAttribute("trace=1", new TextEncoder().encode("with attr")),
    );
  });

  test("the same key always lands on the same partition", async () => {
    const results = await produce("logs-app", [
      { payload: "a", key: "k-1" },
      { payload: "b", key: "k-1" },
      { payload: "c", key: "k-1" },
    ]);
    expect(new Set(results.map((result) => result.partition)).size).toBe(1);
  });

  test("a raw body is one message, options in the query string", async () => {
    const bytes = new Uint8Array([0, 159, 146, 150, 255]);
    const answer = await json(
      app.request("/v1/topics/orders/messages?partition=1&attribute=bin", {
        method: "POST",
        headers: { "content-type": "application/octet-stream" },
        body: bytes,
      }),
    );
    expect(answer.status).toBe(200);
    const [{ partition, offset }] = answer.body.results;
    expect(partition).toBe(1);
    const fetched = await json(
      app.request(`/v1/topics/orders/partitions/1/messages?offset=${offset}&max=1`),
    );
    expect(fetched.body.messages[0]).toMatchObject({
      attribute: "bin",
      encoding: "base64",
      payload: btoa(String.fromCharCode(...bytes)),
    });
  });

  test("invalid messages are refused before anything is written", async () => {
    const before = logOf("orders", 0).endOffset;
    const cases: [unknown, number, string][] = [
      [
        { messages: [{ payload: "ok", partition: 0 }, { payload: "%%", encoding: "base64" }] },
        400,
        "badRequest",
      ],
      [{ messages: [{ payload: "ok", partition: 0 }, { body: "typo" }] }, 400, "badRequest"],
      [{ messages: [{ payload: "x", flag: 1 }] }, 400, "badRequest"],
      [{ messages: [{ payload: "x", partition: 0, key: "k" }] }, 400, "badRequest"],
      [
        { messages: [{ payload: "ok", partition: 0 }, { payload: "x", partition: 2 }] },
        400,
        "wrongPartition",
      ],
      [{ messages: [{ payload: "x".repeat(1001), partition: 0 }] }, 400, "messageTooLarge"],
      [{ messages: [] }, 400, "badRequest"],
      [{ messages: Array.from({ length: 1001 }, () => ({ payload: "x" })) }, 400, "badRequest"],
      [{ messages: "nope" }, 400, "badRequest"],
      [{ payload: 7 }, 400, "badRequest"],
      [{ payload: "x", partition: -1 }, 400, "badRequest"],
      [{ payload: "x", encoding: "latin1" }, 400, "badRequest"],
    ];
    for (const [body, status, kind] of cases) {
      const answer = await json(post("/v1/topics/orders/messages", body));
      expect([JSON.stringify(body).slice(0, 60), answer.status, answer.body.error?.kind])
        .toEqual([JSON.stringify(body).slice(0, 60), status, kind]);
    }
    const refused = await json(post("/v1/topics/nope/messages", { payload: "x" }));
    expect(refused.body.error.kind).toBe("topicNotAccepted");
    expect(logOf("orders", 0).endOffset).toBe(before);
    expect(dirsOf("nope")).toEqual([]);
  });

  test("a closed partition refuses produce with 403 and fetch with 403", async () => {
    running.broker.closedPartitions.add("orders-1");
    try {
      const put = await json(post("/v1/topics/orders/messages", { payload: "x", partition: 1 }));
      expect([put.status, put.body.error.kind]).toEqual([403, "partitionClosed"]);
      const get = await json(app.request("/v1/topics/orders/partitions/1/messages"));
      expect([get.status, get.body.error.kind]).toEqual([403, "partitionClosed"]);
    } finally {
      running.broker.closedPartitions.delete("orders-1");
    }
  });

  test("bodies over the limit are refused with 413, by Content-Length or by counting", async () => {
    const declared = await app.request("/v1/topics/orders/messages", {
      method: "POST",
      headers: { "content-type": "application/json", "content-length": String(64 * 1024 * 1024) },
      body: "{}",
    });
    expect(declared.status).toBe(413);
    expect((await declared.json()).error.kind).toBe("requestTooLarge");
    const { stream, state } = countingBody(40 * 1024 * 1024, 64 * 1024);
    const counted = await app.request("/v1/topics/orders/messages", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: stream,
      duplex: "half",
    } as RequestInit);
    expect(counted.status).toBe(413);
    expect(state.pulled).toBeLessThan(17 * 1024 * 1024 + 256 * 1024);
    const raw = await app.request("/v1/topics/orders/messages?partition=0", {
      method: "POST",
      body: "x".repeat(1001),
    });
    expect(raw.status).toBe(413);
  });

  test("fetch pages with max and nextOffset, and answers the end with an empty page", async () => {
    await produce(
      "logs-page",
      Array.from({ length: 5 }, (_, i) => ({ payload: `m${i}`, partition: 1 })),
    );
    const pages: string[][] = [];
    let offset = 0;
    for (let page = 0; page < 10; page++) {
      const answer = await json(
        app.request(`/v1/topics/logs-page/partitions/1/messages?offset=${offset}&max=2`),
      );
      expect(answer.status).toBe(200);
      if (answer.body.messages.length === 0) break;
      pages.push(answer.body.messages.map((m: { payload: string }) => m.payload));
      offset = answer.body.nextOffset;
    }
    expect(pages).toEqual([["m0", "m1"], ["m2", "m3"], ["m4"]]);
    const end = await json(
      app.request(`/v1/topics/logs-page/partitions/1/messages?offset=${offset}`),
    );
    expect(end.body).toMatchObject({ messages: [], nextOffset: offset, endOffset: offset });
  });

  test("fetch by count and by time: last=N is the last N messages, fromTime the first at or after it", async () => {
    // One message per request, so ids (and their times) grow; several may share a millisecond.
    for (let index = 0; index < 8; index++) {
      await produce("logs-seek", [{ payload: `s${index}`, partition: 0 }]);
    }
    const path = "/v1/topics/logs-seek/partitions/0/messages";
    const all = (await json(app.request(path))).body.messages as {
      offset: number;
      payload: string;
      timestamp: string;
    }[];
    expect(all.map((m) => m.payload)).toEqual(Array.from({ length: 8 }, (_, i) => `s${i}`));
    const last3 = await json(app.request(`${path}?last=3`));
    expect(last3.status).toBe(200);
    expect(last3.body.offset).toBe(all[5].offset);
    expect(last3.body.messages.map((m: { payload: string }) => m.payload)).toEqual([
      "s5",
      "s6",
      "s7",
    ]);
    // max pages within the last N; more than stored starts at the first.
    const paged = await json(app.request(`${path}?last=3&max=1`));
    expect(paged.body.messages.map((m: { payload: string }) => m.payload)).toEqual(["s5"]);
    expect((await json(app.request(`${path}?last=100`))).body.offset).toBe(all[0].offset);
    for (const pick of [0, 3, 7]) {
      const at = all[pick].timestamp;
      const expected = all.find((m) => m.timestamp >= at)!;
      const answer = await json(app.request(`${path}?fromTime=${encodeURIComponent(at)}&max=2`));
      expect([at, answer.status, answer.body.offset]).toEqual([at, 200, expected.offset]);
      expect(answer.body.messages[0].timestamp >= at).toBe(true);
      // Milliseconds since 1970 are the same time.
      const ms = await json(app.request(`${path}?fromTime=${Date.parse(at)}&max=2`));
      expect(ms.body.offset).toBe(expected.offset);
    }
    const end = logOf("logs-seek", 0).endOffset;
    const later = new Date(Date.parse(all[7].timestamp) + 1).toISOString();
    const after = await json(app.request(`${path}?fromTime=${later}`));
    expect(after.body).toMatchObject({ offset: end, nextOffset: end, messages: [] });
    const before = await json(app.request(`${path}?fromTime=2020-01-01`));
    expect(before.body.offset).toBe(all[0].offset);
    // The page before a page: the last N before an offset, ending there.
    const pageBefore = await json(app.request(`${path}?last=2&before=${all[4].offset}`));
    expect(pageBefore.body.messages.map((m: { payload: string }) => m.payload))
      .toEqual(["s2", "s3"]);
    expect(pageBefore.body.nextOffset).toBe(all[4].offset);
    const first = await json(app.request(`${path}?last=5&before=${all[2].offset}&max=10`));
    expect(first.body.messages.map((m: { payload: string }) => m.payload)).toEqual(["s0", "s1"]);
    const cases: [string, string][] = [
      ["last=2&before=3", "invalidOffset"],
      ["last=2&before=999999", "invalidOffset"],
      ["before=0", "badRequest"],
      ["last=0", "badRequest"],
      ["last=x", "badRequest"],
      ["last=", "badRequest"],
      ["fromTime=yesterday", "badRequest"],
      ["fromTime=2026-12-06T10:00:00", "badRequest"], // no zone: refused, not guessed
      ["last=2&offset=0", "badRequest"],
      ["last=2&fromTime=2026-12-06", "badRequest"],
    ];
    for (const [query, kind] of cases) {
      const answer = await json(app.request(`${path}?${query}`));
      expect([query, answer.status, answer.body.error?.kind]).toEqual([query, 400, kind]);
    }
    // An empty configured partition: both land at its end.
    for (const query of ["last=5", "fromTime=2026-01-01"]) {
      const empty = await json(app.request(`/v1/topics/events/partitions/2/messages?${query}`));
      expect([query, empty.status, empty.body.messages]).toEqual([query, 200, []]);
    }
  });

  test("fetch errors: bad offsets are 400, past the end 404, unknown partition 404", async () => {
    const cases: [string, number, string][] = [
      ["offset=-1", 400, "invalidOffset"],
      ["offset=abc", 400, "invalidOffset"],
      ["offset=3", 400, "invalidOffset"],
      ["offset=100000", 404, "notFound"],
      ["max=0", 400, "badRequest"],
      ["max=1001", 400, "badRequest"],
      ["encoding=latin1", 400, "badRequest"],
    ];
    for (const [query, status, kind] of cases) {
      const answer = await json(app.request(`/v1/topics/logs-page/partitions/1/messages?${query}`));
      expect([query, answer.status, answer.body.error?.kind]).toEqual([query, status, kind]);
    }
    const none = await json(app.request("/v1/topics/logs-page/partitions/7/messages"));
    expect([none.status, none.body.error.kind]).toEqual([404, "topicNotFound"]);
    const badPartition = await json(app.request("/v1/topics/logs-page/partitions/x/messages"));
    expect(badPartition.status).toBe(400);
    for (const internal of ["/v1/topics/__meta/partitions/0/messages", "/v1/topics/__meta"]) {
      const hidden = await json(app.request(internal));
      expect([internal, hidden.status, hidden.body.error.kind])
        .toEqual([internal, 404, "topicNotFound"]);
    }
  });

  test("an empty partition of an existing topic answers 200 with no messages; unknown topics 404", async () => {
    // Regression: a configured partition nothing was written to answered 404.
    const empty = await json(app.request("/v1/topics/events/partitions/2/messages"));
    expect(empty).toEqual({
      status: 200,
      body: {
        topic: "events",
        partition: 2,
        offset: 0,
        nextOffset: 0,
        startOffset: 0,
        endOffset: 0,
        messages: [],
      },
    });
    const past = await json(app.request("/v1/topics/events/partitions/2/messages?offset=5"));
    expect(past.status).toBe(404);
    const outOfRange = await json(app.request("/v1/topics/events/partitions/3/messages"));
    expect([outOfRange.status, outOfRange.body.error.kind]).toEqual([404, "topicNotFound"]);
    // A name the wildcard section accepts but that holds nothing is not a topic yet.
    const unknown = await json(app.request("/v1/topics/logs-none/partitions/0/messages"));
    expect([unknown.status, unknown.body.error.kind]).toEqual([404, "topicNotFound"]);
    const stream = await app.request("/v1/topics/logs-none/stream");
    expect(stream.status).toBe(404);
    expect((await stream.json()).error.kind).toBe("topicNotFound");
  });

  test("a fetch below the first stored offset is a 301 to it, which fetch() follows", async () => {
    const big = "r".repeat(900);
    await produce("retained", Array.from({ length: 12 }, () => ({ payload: big, partition: 0 })));
    const log = logOf("retained", 0);
    await log.applyRetention(running.broker.topicSettings("retained")!.deletePolicy, Date.now());
    expect(log.startOffset).toBeGreaterThan(0);
    const moved = await app.request("/v1/topics/retained/partitions/0/messages?offset=0&max=1");
    expect(moved.status).toBe(301);
    expect(moved.headers.get("location")).toBe(
      `/v1/topics/retained/partitions/0/messages?offset=${log.startOffset}&max=1`,
    );
    expect((await moved.json()).offset).toBe(log.startOffset);
    const followed = await json(app.request(moved.headers.get("location")!));
    expect(followed.body.messages[0].offset).toBe(log.startOffset);
  });
});

describe("live stream over Server-Sent Events", () => {
  /** Reads SSE text until `count` message events arrived (bounded by reads and time). */
  async function readEvents(response: Response, count: number) {
    const reader = response.body!.getReader();
    const events: { id: string; data: Record<string, unknown> }[] = [];
    let buffer = "";
    const deadline = Date.now() + 5000;
    for (let reads = 0; reads < 200 && events.length < count && Date.now() < deadline; reads++) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += text(value);
      const blocks = buffer.split("\n\n");
      buffer = blocks.pop()!;
      for (const block of blocks) {
        const fields = Object.fromEntries(
          block.split("\n").filter((line) => !line.startsWith(":")).map((line) => {
            const colon = line.indexOf(": ");
            return [line.slice(0, colon), line.slice(colon + 2)];
          }),
        );
        if (fields.event === "message") {
          events.push({ id: fields.id, data: JSON.parse(fields.data) });
        }
        if (fields.event === "error") events.push({ id: "error", data: JSON.parse(fields.data) });
      }
    }
    return { events, reader };
  }

  test("a stream from the beginning sends stored records, then new ones as they are appended", async () => {
    await produce("logs-live", [{ payload: "one", partition: 0 }, {
      payload: "two",
      partition: 1,
    }]);
    const response = await app.request("/v1/topics/logs-live/stream?from=beginning");
    expect(response.headers.get("content-type")).toStartWith("text/event-stream");
    const first = await readEvents(response, 2);
    expect(first.events.map((event) => event.data.payload).sort()).toEqual(["one", "two"]);
    const later = produce("logs-live", [{ payload: "three", partition: 0 }]);
    const [next] = (await readEventsFrom(first.reader, 1)).events;
    await later;
    expect(next.data).toMatchObject({ topic: "logs-live", partition: 0, payload: "three" });
    expect(next.id).toBe(`0:${next.data.nextOffset},1:23`);
    await first.reader.cancel();
  });

  async function readEventsFrom(reader: ReadableStreamDefaultReader<Uint8Array>, count: number) {
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
    });
    return await readEvents(new Response(stream), count);
  }

  test("Last-Event-ID resumes exactly after the last event seen", async () => {
    const response = await app.request("/v1/topics/logs-live/stream?from=beginning");
    const { events, reader } = await readEvents(response, 1);
    await reader.cancel();
    const resumed = await app.request("/v1/topics/logs-live/stream", {
      headers: { "last-event-id": events[0].id },
    });
    const rest = await readEvents(resumed, 2);
    await rest.reader.cancel();
    const seen = [events[0], ...rest.events].map((event) => event.data.payload).sort();
    expect(seen).toEqual(["one", "three", "two"]);
  });

  test("a stream of one partition may start at an offset; bad starts are 400", async () => {
    const at = (await json(app.request("/v1/topics/logs-live/partitions/0/messages"))).body
      .messages[1].offset;
    const response = await app.request(`/v1/topics/logs-live/stream?partition=0&from=${at}`);
    const { events, reader } = await readEvents(response, 1);
    await reader.cancel();
    expect(events[0].data.payload).toBe("three");
    const cases: [string, Record<string, string>, number][] = [
      ["from=5", {}, 400],
      ["partition=0&from=99999", {}, 400],
      ["partition=5", {}, 400],
      ["group=bad%20name", {}, 400],
      ["", { "last-event-id": "0:abc" }, 400],
      ["partition=0", { "last-event-id": "1:0" }, 400],
    ];
    for (const [query, headers, status] of cases) {
      const answer = await app.request(`/v1/topics/logs-live/stream?${query}`, { headers });
      expect([query, answer.status]).toEqual([query, status]);
      expect((await answer.json()).error.kind).toBeString();
    }
    expect((await app.request("/v1/topics/nope/stream")).status).toBe(404);
  });

  test("a stream for a group starts at the group's committed offsets", async () => {
    const second = (await json(app.request("/v1/topics/logs-live/partitions/0/messages"))).body
      .messages[1];
    await commit("live-readers", "logs-live", 0, second.offset);
    await commit("live-readers", "logs-live", 1, 23);
    const response = await app.request("/v1/topics/logs-live/stream?group=live-readers");
    const { events, reader } = await readEvents(response, 1);
    await reader.cancel();
    expect(events.map((event) => event.data.payload)).toEqual(["three"]);
  });

  test("open streams are bounded; a stream ends when the broker shuts down", async () => {
    const local = new AbortController();
    const limited = createAdminApp(running.broker, { signal: local.signal, streamsMax: 1 });
    const open = await limited.request("/v1/topics/logs-live/stream");
    const refused = await json(limited.request("/v1/topics/logs-live/stream"));
    expect([refused.status, refused.body.error.kind]).toEqual([503, "unavailable"]);
    const reader = open.body!.getReader();
    await reader.read(); // the opening comment
    const ended = reader.read();
    local.abort();
    expect((await ended).done).toBe(true);
    const again = await limited.request("/v1/topics/logs-live/stream");
    expect(again.status).toBe(200);
    expect((await again.body!.getReader().read()).value).toBeDefined();
  });
});

describe("stats, metrics and health", () => {
  test("stats as MetaQ's text equals the TCP reply; as JSON it is parsed from the same text", async () => {
    const general = await app.request("/v1/stats/text");
    const body = await general.text();
    expect(body.startsWith("STATS\r\npid ")).toBe(true);
    expect(body.endsWith("END\r\n")).toBe(true);
    const offsets = await (await app.request("/v1/stats/text/offsets")).text();
    expect(offsets).toContain("orders part 0 min_offset 0 max_offset ");
    const config = await app.request("/v1/stats/text/config");
    expect([config.status, await config.text()]).toEqual([200, CONFIG(temp.path)]);
    const { status, body: stats } = await json(app.request("/v1/stats"));
    expect(status).toBe(200);
    expect(stats.general).toMatchObject({ broker_id: 3, slave: false });
    expect(stats.general.cmd_put).toBe(running.broker.stats.counters.cmdPut);
    expect(stats.topics).toContainEqual(
      expect.objectContaining({ topic: "orders", partitions: 2 }),
    );
    expect(stats.offsets).toContainEqual(
      expect.objectContaining({ topic: "orders", partition: 0, min_offset: 0 }),
    );
    expect(Object.keys(stats.realtime)).toContain("realtime_put");
  });

  test("metrics expose counters, partitions, fsync latency and group lag, no internal topic", async () => {
    await produce("orders", [{ payload: "metric", partition: 0 }]);
    await commit("billing", "orders", 0, 0);
    const response = await app.request("/metrics");
    expect(response.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
    const body = await response.text();
    const value = (line: string) =>
      Number(body.split("\n").find((l) => l.startsWith(`${line} `))?.split(" ")[1]);
    expect(value("metaq_put_requests_total")).toBe(running.broker.stats.counters.cmdPut);
    const end = logOf("orders", 0).endOffset;
    expect(value('metaq_partition_end_offset{topic="orders",partition="0"}')).toBe(end);
    expect(value('metaq_group_lag_bytes{group="billing",topic="orders",partition="0"}')).toBe(end);
    expect(value("metaq_fsync_duration_seconds_count")).toBeGreaterThan(0);
    expect(value('metaq_fsync_duration_seconds_bucket{le="+Inf"}')).toBe(
      value("metaq_fsync_duration_seconds_count"),
    );
    expect(value('metaq_transactions_total{event="commit"}')).toBe(0);
    expect(body).not.toContain('topic="__');
    expect(body).not.toContain("metaq_raft_role");
    expect(body).not.toContain("metaq_partition_leader");
    for (const line of body.trimEnd().split("\n")) {
      expect(line).toMatch(/^(# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? [-+\w.]+)$/);
    }
    const plain = await (await bare.request("/metrics")).text();
    expect(plain).not.toContain("metaq_group_lag_bytes");
  });

  test("healthz is always ok; readyz is ready until shutdown begins", async () => {
    expect(await json(app.request("/healthz"))).toEqual({ status: 200, body: { status: "ok" } });
    expect(await json(app.request("/readyz"))).toEqual({
      status: 200,
      body: { status: "ready", reasons: [], damagedPartitions: 0 },
    });
    const local = new AbortController();
    const stopping = createAdminApp(running.broker, { signal: local.signal });
    local.abort();
    expect((await json(stopping.request("/readyz"))).body.reasons).toEqual(["shutting down"]);
  });
});

describe("consumer groups, as the group coordinator keeps them", () => {
  test("without a groups provider or a cluster the routes answer 503 with a clear message", async () => {
    for (const path of ["/v1/groups", "/v1/groups/g1", "/v1/cluster"]) {
      const answer = await json(bare.request(path));
      expect([path, answer.status, answer.body.error.kind]).toEqual([path, 503, "unavailable"]);
    }
    const single = await json(app.request("/v1/cluster"));
    expect(single.body.error.message).toContain("this broker runs alone");
    const reset = await json(
      bare.request("/v1/groups/g1/reset", { method: "POST", body: "{}" }),
    );
    expect(reset.status).toBe(503);
  });

  test("groups list and describe with the lag of each partition", async () => {
    await commit("shipping", "events", 0, 0);
    await produce("events", [{ payload: "e1", partition: 0 }, { payload: "e2", partition: 0 }]);
    const end = logOf("events", 0).endOffset;
    const described = await json(app.request("/v1/groups/shipping"));
    expect(described.status).toBe(200);
    expect(described.body).toMatchObject({
      group: "shipping",
      lagBytes: end,
      members: [],
      partitions: [{
        topic: "events",
        partition: 0,
        committedOffset: 0,
        endOffset: end,
        lagBytes: end,
        owner: null,
      }],
    });
    const list = await json(app.request("/v1/groups"));
    expect(list.body.groups.map((group: { group: string }) => group.group)).toContain("shipping");
    expect((await json(app.request("/v1/groups/nobody"))).status).toBe(404);
    expect((await json(app.request("/v1/groups/bad%20name"))).status).toBe(400);
  });

  test("reset moves offsets to the end, the beginning or a record boundary", async () => {
    const end = logOf("events", 0).endOffset;
    const toEnd = await json(post("/v1/groups/shipping/reset", { topic: "events", to: "end" }));
    expect(toEnd.status).toBe(200);
    expect(toEnd.body.reset).toContainEqual({
      group: "shipping",
      topic: "events",
      partition: 0,
      offset: end,
    });
    expect(toEnd.body.reset.length).toBe(3);
    const lag = await json(app.request("/v1/groups/shipping"));
    expect(lag.body.lagBytes).toBe(0);
    const second = (await json(app.request("/v1/topics/events/partitions/0/messages"))).body
      .messages[1].offset;
    const toOffset = await json(
      post("/v1/groups/shipping/reset", { topic: "events", partition: 0, to: second }),
    );
    expect(toOffset.body.reset).toEqual([{
      group: "shipping",
      topic: "events",
      partition: 0,
      offset: second,
    }]);
    expect((await json(app.request("/v1/groups/shipping"))).body.partitions[0].lagBytes).toBe(
      end - second,
    );
  });

  test("reset by time moves to the first message at or after it; a dry run changes nothing", async () => {
    const messages = (await json(app.request("/v1/topics/events/partitions/0/messages"))).body
      .messages as { offset: number; timestamp: string }[];
    const at = messages[messages.length - 1].timestamp;
    const expected = messages.find((m) => m.timestamp >= at)!.offset;
    const committed = async () =>
      (await json(app.request("/v1/groups/shipping"))).body.partitions[0].committedOffset;
    const before = await committed();
    const dry = await json(post("/v1/groups/shipping/reset", {
      topic: "events",
      partition: 0,
      toTime: at,
      dryRun: true,
    }));
    expect(dry.body).toEqual({
      group: "shipping",
      reset: [{ group: "shipping", topic: "events", partition: 0, offset: expected }],
      dryRun: true,
    });
    expect(await committed()).toBe(before);
    const done = await json(
      post("/v1/groups/shipping/reset", { topic: "events", partition: 0, toTime: at }),
    );
    expect(done.body.reset).toEqual(dry.body.reset);
    expect(await committed()).toBe(expected);
    // After every message: the end.
    const later = await json(post("/v1/groups/shipping/reset", {
      topic: "events",
      partition: 0,
      toTime: String(Date.parse(at) + 1),
    }));
    expect(later.body.reset[0].offset).toBe(logOf("events", 0).endOffset);
  });

  test("invalid resets are refused and change nothing; active members refuse a reset", async () => {
    const before = (await json(app.request("/v1/groups/shipping"))).body;
    const cases: [unknown, number, string][] = [
      [{ topic: "events", partition: 0, to: 3 }, 400, "invalidOffset"],
      [{ topic: "events", partition: 0, to: 999999 }, 400, "invalidOffset"],
      [{ topic: "events", to: "middle" }, 400, "invalidOffset"],
      [{ topic: "events", partition: 9, to: "end" }, 400, "wrongPartition"],
      [{ topic: "nope", to: "end" }, 404, "topicNotFound"],
      [{ topic: "__meta", to: "end" }, 404, "topicNotFound"],
      [{ topic: "events", to: "end", force: true }, 400, "badRequest"],
      [{ topic: "events", toTime: "noon" }, 400, "badRequest"],
      [{ topic: "events", toTime: 5 }, 400, "badRequest"],
      [{ topic: "events", to: "end", toTime: "2026-12-06" }, 400, "badRequest"],
      [{ topic: "events", to: "end", dryRun: "yes" }, 400, "badRequest"],
      [[], 400, "badRequest"],
    ];
    for (const [body, status, kind] of cases) {
      const answer = await json(post("/v1/groups/shipping/reset", body));
      expect([JSON.stringify(body), answer.status, answer.body.error?.kind])
        .toEqual([JSON.stringify(body), status, kind]);
    }
    const unknown = await json(post("/v1/groups/nobody/reset", { topic: "events", to: "end" }));
    expect(unknown.status).toBe(404);
    await groupCommand("join", ["shipping", "m1", "events", "DEFAULT"]);
    try {
      const busy = await json(post("/v1/groups/shipping/reset", { topic: "events", to: "end" }));
      expect([busy.status, busy.body.error.kind]).toEqual([409, "membersActive"]);
      const joined = await json(app.request("/v1/groups/shipping"));
      expect(joined.body.members).toEqual([{ id: "m1", topics: ["events"] }]);
    } finally {
      await groupCommand("leave", ["shipping", "m1"]);
    }
    const after = (await json(app.request("/v1/groups/shipping"))).body;
    expect(after.partitions.map((p: { committedOffset: number }) => p.committedOffset))
      .toEqual(before.partitions.map((p: { committedOffset: number }) => p.committedOffset));
  });
});

describe("dashboard data", () => {
  test("the page is served from the binary; overview and events carry the same snapshot", async () => {
    const page = await app.request("/");
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const html = await page.text();
    expect(html).toContain("<title>metaq");
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href="http/);
    const overview = await json(app.request("/v1/overview"));
    expect(overview.body.broker).toMatchObject({ brokerId: 3 });
    expect(overview.body.topics.map((topic: { name: string }) => topic.name)).toContain("orders");
    expect(overview.body.groups.map((group: { group: string }) => group.group)).toContain(
      "shipping",
    );
    expect(overview.body.cluster).toBeNull();
    const names = overview.body.topics.map((topic: { name: string }) => topic.name);
    expect(names.filter((name: string) => name.startsWith("__"))).toEqual([]);
    running.broker.logger.log("warn", "Disk is getting full", { free: "2%" });
    const events = await app.request("/v1/events");
    const reader = events.body!.getReader();
    let received = "";
    for (let reads = 0; reads < 20 && !received.includes("\n\nevent: snapshot"); reads++) {
      received += text((await reader.read()).value!);
    }
    await reader.cancel();
    const data = received.split("\nevent: snapshot\ndata: ")[1].split("\n")[0];
    const snapshot = JSON.parse(data);
    expect(snapshot.totals.cmdPut).toBe(running.broker.stats.counters.cmdPut);
    expect(snapshot.recentErrors[0]).toMatchObject({
      level: "warn",
      message: "Disk is getting full",
      fields: { free: "2%" },
    });
  });

  test("whoami: without users everyone may administer", async () => {
    expect(await json(app.request("/v1/whoami"))).toEqual({
      status: 200,
      body: { user: null, admin: true, authentication: false },
    });
  });

  test("unknown /v1 routes are a JSON 404", async () => {
    expect(await json(app.request("/v1/nothing"))).toEqual({
      status: 404,
      body: {
        error: { kind: "notFound", message: "Cannot find resource: no route GET /v1/nothing" },
      },
    });
  });

  test("a route used with a method it does not take is a 405 that names the methods it does", async () => {
    const cases: [string, string, string][] = [
      ["PUT", "/v1/topics", "GET, POST"],
      ["PUT", "/v1/topics/orders", "DELETE, GET"],
      ["GET", "/v1/topics/orders/messages", "POST"],
      ["POST", "/v1/groups", "GET"],
      ["GET", "/v1/groups/g1/reset", "POST"],
      ["POST", "/metrics", "GET"],
    ];
    for (const [method, path, allow] of cases) {
      const answer = await app.request(path, { method });
      expect([method, path, answer.status, answer.headers.get("allow")]).toEqual([
        method,
        path,
        405,
        allow,
      ]);
      expect((await answer.json()).error.kind).toBe("methodNotAllowed");
    }
  });
});

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MetaqClient } from "../../lib/client/client.ts";
import { GroupClient } from "../../lib/client/group_client.ts";
import { Producer } from "../../lib/client/producer.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { refusal } from "../support/refusal.ts";
import { memoryLogger } from "../../lib/log.ts";
import { type App, assemble } from "../../lib/app/assemble.ts";
import { Consumer } from "../../lib/client/consumer.ts";
import { decodeRecords, splitAttribute } from "../../lib/protocol/record.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const CONFIG = (dataPath: string) => `
[system]
numPartitions=4
dataPath=${dataPath}
groupSessionTimeoutMs=60000
[topic=orders]
group.vip=attribute=gold || attribute^=platinum
group.legacy=com.taobao.example.VipFilter
[topic=events]
numPartitions=2
[topic=invoices]
numPartitions=1
group.billing=payload*=big
`;

let temp: TempDir;
let running: App;
let client: MetaqClient;
let groups: GroupClient;
const logger = memoryLogger();

async function start(): Promise<App> {
  return await assemble({
    config: buildConfig({
      fileText: CONFIG(temp.path),
      overrides: { serverPort: "0", httpEnabled: "false" },
    }),
    logger,
  });
}

beforeAll(async () => {
  temp = tempDir();
  running = await start();
  client = new MetaqClient({ brokers: [`127.0.0.1:${running.port}`] });
  groups = new GroupClient(client);
});

afterAll(async () => {
  client.close();
  await running.close();
  temp[Symbol.dispose]();
});

describe("group commands on the wire", () => {
  test("join, assignment and commit are one CRLF line each with result replies", async () => {
    using socket = await RawSocket.connect(running.port);
    socket.write("join wire m1 orders DEFAULT 7\r\n");
    const joined = await socket.readFrame();
    expect([joined.header, joined.body.toString()]).toEqual(["result 200 7 7", "1 60000"]);
    socket.write("assignment wire m1 8\r\n");
    const assignment = await socket.readFrame();
    expect(assignment.body.toString()).toBe(
      "1 0\r\norders 0 1 -1\r\norders 1 1 -1\r\norders 2 1 -1\r\norders 3 1 -1",
    );
    socket.write("commit wire m1 1 orders 2 0 9\r\n");
    expect((await socket.readFrame()).header).toBe("result 200 1 9");
    socket.write("committed wire orders 2 10\r\n");
    expect((await socket.readFrame()).body.toString()).toBe("0");
    socket.write("leave wire m1 11\r\n");
    expect((await socket.readFrame()).header).toBe("result 200 0 11");
  });

  test("a member that commits sees its offset in describe, with log end and lag", async () => {
    const producer = new Producer(client);
    for (let i = 0; i < 5; i++) await producer.send("events", `e${i}`, { partition: 1 });
    const joined = await groups.join({
      group: "reporting",
      memberId: "r1",
      topics: ["events"],
      strategy: "DEFAULT",
    });
    await groups.commit({
      group: "reporting",
      memberId: "r1",
      generation: joined.generation,
      topic: "events",
      partition: 1,
      offset: 44,
    });
    const [report] = await groups.describe("reporting");
    expect(report.members.map((m) => [m.id, m.partitions])).toEqual([
      ["r1", ["events-0", "events-1"]],
    ]);
    expect(report.partitions).toEqual([
      { topic: "events", partition: 0, owner: "r1", committed: null, end: 0, lag: 0 },
      { topic: "events", partition: 1, owner: "r1", committed: 44, end: 110, lag: 66 },
    ]);
    await groups.leave({ group: "reporting", memberId: "r1" });
  });

  test("bad input gets a clear error and changes nothing", async () => {
    const joined = await groups.join({
      group: "strict",
      memberId: "s1",
      topics: ["orders"],
      strategy: "DEFAULT",
    });
    await groups.join({ group: "strict", memberId: "s2", topics: ["orders"], strategy: "DEFAULT" });
    const mine = await groups.assignment({ group: "strict", memberId: "s1" });
    await groups.heartbeat({ group: "strict", memberId: "s1", generation: mine.generation });
    const s2 = await groups.assignment({ group: "strict", memberId: "s2" });
    await groups.heartbeat({ group: "strict", memberId: "s2", generation: s2.generation });
    await groups.commit({
      group: "strict",
      memberId: "s1",
      generation: mine.generation,
      topic: "orders",
      partition: 0,
      offset: 0,
    });
    const before = await groups.describe("strict");
    const commit = {
      group: "strict",
      memberId: "s1",
      generation: mine.generation,
      topic: "orders",
      partition: 0,
      offset: 0,
    };
    expect(
      await refusal(
        groups.join({ group: "bad/name", memberId: "x", topics: ["orders"], strategy: "DEFAULT" }),
      ),
    )
      .toEqual({
        status: 400,
        message:
          "Cannot accept name: group name 'bad/name' may use only letters, digits, '_', '-' and '@'",
      });
    expect(
      await refusal(
        groups.join({ group: "strict", memberId: "x", topics: ["nope"], strategy: "DEFAULT" }),
      ),
    )
      .toEqual({
        status: 500,
        message: "Cannot accept topic: the server does not accept topic nope",
      });
    expect(await refusal(groups.commit({ ...commit, partition: 3 }))).toEqual({
      status: 403,
      message:
        "Cannot commit offset: the partition is not owned by this member: orders-3 is owned by s2, not s1",
    });
    expect(await refusal(groups.commit({ ...commit, generation: joined.generation }))).toEqual({
      status: 409,
      message:
        `Cannot accept request: the group generation is stale: group strict is at generation ${mine.generation}, not ${joined.generation}`,
    });
    expect((await refusal(groups.commit({ ...commit, memberId: "ghost" }))).status).toBe(404);
    expect((await refusal(groups.committed("strict", "orders", 9))).message).toBe(
      "Cannot use partition: out of range: orders has partitions 0 to 3, not 9",
    );
    expect(
      (await refusal(
        groups.reset({ group: "strict", topic: "orders", to: "earliest", force: false }),
      ))
        .status,
    ).toBe(409);
    expect(await groups.describe("strict")).toEqual(
      before.map((group) => ({
        ...group,
        members: group.members.map((m) => ({ ...m, idleMs: expect.any(Number) })),
      })),
    );
    for (const memberId of ["s1", "s2"]) await groups.leave({ group: "strict", memberId });
  });

  test("a malformed group command closes the connection, as MetaQ does with bad frames", async () => {
    using socket = await RawSocket.connect(running.port);
    socket.write("commit g m1 1 orders 0\r\n"); // one argument short
    expect(await socket.waitClosed()).toBe(true);
  });

  test("reset is refused while members are active, and forced it moves the offsets", async () => {
    const joined = await groups.join({
      group: "rs",
      memberId: "a",
      topics: ["orders"],
      strategy: "DEFAULT",
    });
    await groups.commit({
      group: "rs",
      memberId: "a",
      generation: joined.generation,
      topic: "orders",
      partition: 1,
      offset: 0,
    });
    const forced = await groups.reset({
      group: "rs",
      topic: "orders",
      partition: 1,
      to: "latest",
      force: true,
    });
    expect(forced).toEqual([{ group: "rs", topic: "orders", partition: 1, offset: 0 }]);
    const after = await groups.assignment({ group: "rs", memberId: "a" });
    expect(after.generation).toBe(joined.generation + 1);
    expect(after.partitions.every((p) => p.grantedAt === after.generation)).toBe(true);
    await groups.leave({ group: "rs", memberId: "a" });
    expect(await groups.reset({ group: "rs", topic: "orders", to: "earliest", force: false }))
      .toHaveLength(4);
  });
});

test("a reset to a byte offset must name a record start", async () => {
  // Regression: `adjust` took an offset inside a record; the group then re-read the segment.
  const producer = new Producer(client);
  const first = await producer.send("events", "first", { partition: 0 });
  const second = await producer.send("events", "second", { partition: 0 });
  const reset = (to: number) =>
    groups.reset({ group: "rewind", topic: "events", partition: 0, to, force: false });
  expect(await refusal(reset(first.offset + 5))).toEqual({
    status: 400,
    message: `Cannot accept offset: no record starts at offset ${
      first.offset + 5
    } of events-0 (give a record's first byte, as 'metaq consume --format json' prints it)`,
  });
  expect(await groups.committed("rewind", "events", 0)).toBeUndefined();
  expect(await reset(second.offset)).toEqual([
    { group: "rewind", topic: "events", partition: 0, offset: second.offset },
  ]);
});

describe("server-side group filters", () => {
  test("a group with a filter reads only accepted records; others read everything", async () => {
    const producer = new Producer(client);
    const sent = [["gold", "a"], ["silver", "b"], ["platinum-x", "c"], [undefined, "d"]] as const;
    for (const [attribute, text] of sent) {
      await producer.send("orders", text, { partition: 3, attribute });
    }
    /** Reads the partition to its end as a consumer does: each reply from where the last ended. */
    const read = async (group: string) => {
      const texts: string[] = [];
      for (let offset = 0, fetches = 0; fetches < 20; fetches++) {
        const reply = await client.get({
          topic: "orders",
          group,
          partition: 3,
          offset,
          maxSize: 1 << 16,
        });
        if (reply.kind === "none") return texts;
        if (reply.kind === "moved") {
          offset = reply.offset;
          continue;
        }
        for (const record of decodeRecords(reply.bytes, offset)) {
          texts.push(new TextDecoder().decode(splitAttribute(record.flag, record.data).payload));
          offset = record.offset + 20 + record.length;
        }
      }
      throw new Error("did not reach the end in 20 fetches");
    };
    expect(await read("vip")).toEqual(["a", "c"]);
    expect(await read("plain")).toEqual(["a", "b", "c", "d"]);
    // The Java class cannot run: logged once at start-up, and the group sees everything.
    expect(await read("legacy")).toEqual(["a", "b", "c", "d"]);
    expect(logger.lines.join("\n")).toContain(
      "Ignoring server-side filter: metaq cannot run Java classes topic=orders group=legacy class=com.taobao.example.VipFilter",
    );
  });

  test("when a filter rejects a whole slice the reply is 301 past the records examined", async () => {
    const producer = new Producer(client);
    const first = await producer.send("orders", "x", { partition: 2, attribute: "bronze" });
    await producer.send("orders", "y", { partition: 2, attribute: "bronze" });
    const reply = await client.get({
      topic: "orders",
      group: "vip",
      partition: 2,
      offset: first.offset,
      maxSize: 1 << 16,
    });
    expect(reply).toEqual({ kind: "moved", offset: first.offset + 2 * (20 + 4 + 6 + 1) });
  });

  test("a filtered get at an offset inside a record is served, not a crash", async () => {
    const producer = new Producer(client);
    const sent = await producer.send("orders", "inside", { partition: 1, attribute: "gold" });
    const reply = await client.get({
      topic: "orders",
      group: "vip",
      partition: 1,
      offset: sent.offset + 5,
      maxSize: 1 << 16,
    });
    expect(reply.kind).toBe("records");
    expect(await client.version()).toBeTruthy(); // the broker still answers
  });

  test("a filtered group reads every accepted message once and commits to the log end", async () => {
    // Regression: the broker compacted accepted records back to back, so the consumer's offsets
    // pointed inside records; the group spun on the same fetch and its lag never drained.
    const producer = new Producer(client);
    const sizes = ["big", "small", "small", "big", "big", "small", "big", "small"];
    const payloads = Array.from({ length: 120 }, (_, i) => `${sizes[i % sizes.length]}-${i}`);
    let end = 0;
    for (const payload of payloads) {
      const sent = await producer.send("invoices", payload, { partition: 0 });
      end = sent.offset + 20 + payload.length;
    }
    const received: string[] = [];
    const consumer = new Consumer(client, {
      group: "billing",
      maxDelayFetchMs: 100,
      commitOffsetPeriodMs: 50,
      heartbeatIntervalMs: 50,
      recoverDir: `${temp.path}/recover`,
    }).subscribe("invoices", (message) => {
      received.push(new TextDecoder().decode(message.payload));
    });
    await consumer.start();
    try {
      await waitFor(
        "the group's committed offset to reach the log end",
        async () => (await groups.committed("billing", "invoices", 0)) === end,
      );
      expect(received).toEqual(payloads.filter((payload) => payload.startsWith("big")));
      // Two fetches per run of accepted records and one per rejected run, not a spin.
      expect(consumer.counters.fetches).toBeLessThan(payloads.length);
    } finally {
      await consumer.close();
    }
  });
});

test("committed offsets survive a broker restart", async () => {
  const joined = await groups.join({
    group: "durable",
    memberId: "d1",
    topics: ["events"],
    strategy: "CONSIST",
  });
  await groups.commit({
    group: "durable",
    memberId: "d1",
    generation: joined.generation,
    topic: "events",
    partition: 0,
    offset: 0,
  });
  await groups.commit({
    group: "durable",
    memberId: "d1",
    generation: joined.generation,
    topic: "events",
    partition: 1,
    offset: 22,
  });
  client.close();
  await running.close();
  running = await start();
  client = new MetaqClient({ brokers: [`127.0.0.1:${running.port}`] });
  groups = new GroupClient(client);
  expect(await groups.committed("durable", "events", 1)).toBe(22);
  expect(await groups.committed("durable", "events", 0)).toBe(0);
  expect(await groups.committed("nobody", "events", 0)).toBeUndefined();
  // Membership is not kept across restarts: the member has to join again.
  expect(
    (await refusal(groups.heartbeat({ group: "durable", memberId: "d1", generation: 1 }))).status,
  )
    .toBe(404);
});

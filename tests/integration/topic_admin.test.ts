/**
 * Creating, growing and deleting topics on one broker over TCP (the `catalogue` verb `metaq topics
 * create|delete` sends): the count survives a restart on the same data directory, a deleted
 * topic's files go and it stays deleted across a restart, groups' offsets of it go too, and
 * clients' partition discovery (`meta`) follows every change.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { type App, assemble } from "../../lib/app/assemble.ts";
import { MetaqClient } from "../../lib/client/client.ts";
import { GroupClient } from "../../lib/client/group_client.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { refusal } from "../support/refusal.ts";
import { silentLogger } from "../../lib/log.ts";
import { decodeRecords } from "../../lib/protocol/record.ts";
import { CATALOGUE_FILE } from "../../lib/broker/topic_catalogue_file.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const CONFIG = (dataPath: string) => `
[system]
numPartitions=2
dataPath=${dataPath}
[topic=orders]
[topic=logs-*]
`;

let temp: TempDir;
let running: App;
let client: MetaqClient;

async function start(): Promise<void> {
  running = await assemble({
    config: buildConfig({
      fileText: CONFIG(temp.path),
      overrides: { serverPort: "0", httpEnabled: "false" },
    }),
    logger: silentLogger,
  });
  client = new MetaqClient({ brokers: [`127.0.0.1:${running.port}`], reconnectAttemptsMax: 1 });
}

async function restart(): Promise<void> {
  client.close();
  await running.close();
  await start();
}

beforeAll(async () => {
  temp = tempDir();
  await start();
});

afterAll(async () => {
  client.close();
  await running.close();
  temp[Symbol.dispose]();
});

const topicVerb = async (action: string, topic: string, count: number | "-" = "-") =>
  JSON.parse(await client.extension("catalogue", [action, topic, count]));

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

describe("topic admin on one broker", () => {
  test("create a topic no section names, with N partitions; put to partition N-1", async () => {
    expect((await refusal(client.topicMetadata("clicks"))).message).toContain(
      "The server do not accept topic clicks",
    );
    expect(await topicVerb("create", "clicks", 5)).toEqual({
      topic: "clicks",
      partitions: 5,
      previous: 0,
      changed: true,
    });
    const meta = await client.topicMetadata("clicks");
    expect([meta.partitions, meta.exists]).toEqual([5, true]);
    const put = await client.put("clicks", 4, { payload: new TextEncoder().encode("last") });
    expect(put.partition).toBe(4);
    expect(fs.existsSync(path.join(temp.path, "clicks-4"))).toBe(true);
    expect(await refusal(client.put("clicks", 5, { payload: new Uint8Array(1) }))).toMatchObject({
      message: expect.stringContaining("wrong partition 5"),
    });
  });

  test("a configured topic grows past server.ini; a smaller count is refused", async () => {
    expect(await topicVerb("create", "orders", 4)).toMatchObject({ previous: 2, partitions: 4 });
    expect((await client.topicMetadata("orders")).partitions).toBe(4);
    await client.put("orders", 3, { payload: new TextEncoder().encode("grown") });
    const shrink = await refusal(topicVerb("create", "orders", 3));
    expect(shrink.status).toBe(400);
    expect(shrink.message).toContain("Cannot shrink topic orders from 4 to 3 partitions");
    expect(await topicVerb("create", "orders", 4)).toMatchObject({ changed: false });
  });

  test("a group reading a topic that grows balances over the new partitions", async () => {
    const groups = new GroupClient(client);
    await groups.join({
      group: "readers",
      memberId: "m1",
      topics: ["clicks"],
      strategy: "DEFAULT",
    });
    const before = await groups.assignment({ group: "readers", memberId: "m1" });
    expect(before.partitions.map((p) => p.partition)).toEqual([0, 1, 2, 3, 4]);
    await topicVerb("create", "clicks", 7);
    await waitFor("the member to be given the new partitions", async () => {
      await groups.heartbeat({ group: "readers", memberId: "m1", generation: before.generation });
      const after = await groups.assignment({ group: "readers", memberId: "m1" });
      return after.partitions.length === 7;
    });
    await groups.leave({ group: "readers", memberId: "m1" });
  });

  test("counts and messages survive a restart on the same data directory", async () => {
    await restart();
    expect((await client.topicMetadata("clicks")).partitions).toBe(7);
    expect((await client.topicMetadata("orders")).partitions).toBe(4);
    const got = await client.get({
      topic: "clicks",
      group: "reader",
      partition: 4,
      offset: 0,
      maxSize: 1024,
    });
    expect(got.kind).toBe("records");
    const records = got.kind === "records" ? [...decodeRecords(got.bytes)] : [];
    expect(records.map((record) => text(record.data))).toEqual(["last"]);
  });

  test("delete removes the files and the groups' offsets; it stays deleted", async () => {
    const groups = new GroupClient(client);
    await client.put("orders", 0, { payload: new TextEncoder().encode("x") });
    await groups.reset({ group: "billing", topic: "orders", to: "latest", force: false });
    expect((await groups.describe("billing"))[0].partitions.length).toBeGreaterThan(0);
    const deleted = await topicVerb("delete", "orders");
    expect(deleted).toEqual({
      topic: "orders",
      deleted: true,
      partitionsRemoved: 4,
      offsetsRemoved: 4,
    });
    expect(fs.readdirSync(temp.path).filter((name) => name.startsWith("orders-"))).toEqual([]);
    const refused = await refusal(client.put("orders", 0, { payload: new Uint8Array(1) }));
    expect(refused.message).toContain("it was deleted (metaq topics create orders");
    expect(await groups.describe("billing")).toEqual([
      expect.objectContaining({ partitions: [] }),
    ]);
    await restart();
    expect((await refusal(client.topicMetadata("orders"))).message).toContain("it was deleted");
    expect(fs.readdirSync(temp.path).filter((name) => name.startsWith("orders-"))).toEqual([]);
    // Created again: from offset 0, with the configured count.
    expect(await topicVerb("create", "orders")).toMatchObject({ partitions: 2, previous: 0 });
    expect((await client.put("orders", 1, { payload: new Uint8Array(1) })).offset).toBe(0);
  });

  test("refusals: unknown, deleted twice, internal, bad names and counts", async () => {
    expect(await refusal(topicVerb("delete", "nope"))).toEqual({
      status: 404,
      message: "Cannot delete topic nope: no such topic (metaq topics lists them)",
    });
    await topicVerb("create", "logs-a");
    await topicVerb("delete", "logs-a");
    expect((await refusal(topicVerb("delete", "logs-a"))).message).toBe(
      "Cannot delete topic logs-a: it is deleted already",
    );
    expect((await refusal(topicVerb("delete", "__meta"))).message).toContain(
      "topics starting with '__' hold the broker's own state",
    );
    expect((await refusal(topicVerb("create", "a/b", 1))).status).toBe(400);
    expect((await refusal(topicVerb("create", "x", 0))).message).toContain(
      "Cannot change topic x: partitions must be 1 to 1024, not 0",
    );
    expect((await refusal(topicVerb("frobnicate", "x", 1))).message).toContain(
      "unknown topic action 'frobnicate'",
    );
  });

  test("the catalogue file is checksummed: a damaged one stops the broker", async () => {
    client.close();
    await running.close();
    const file = path.join(temp.path, CATALOGUE_FILE);
    const bytes = fs.readFileSync(file);
    bytes[30] ^= 1;
    fs.writeFileSync(file, bytes);
    await expect(start()).rejects.toThrow(/topic-catalogue is damaged/);
    bytes[30] ^= 1;
    fs.writeFileSync(file, bytes);
    await start();
    expect((await client.topicMetadata("clicks")).partitions).toBe(7);
  });
});

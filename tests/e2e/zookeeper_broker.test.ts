/**
 * metaq brokers in ZooKeeper mode against a real ZooKeeper (Debian's 3.8, started by the test on
 * 127.0.0.1): the znodes two brokers with different ids write, byte for byte against MetaQ's
 * layout (shared/spec/zookeeper-layout.md); a topic that appears later; clean removal at
 * shutdown; a SIGKILLed broker's ephemeral nodes expiring with its session; registration again
 * after the session expired (the broker paused past its timeout) and after ZooKeeper restarted.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { crc32 } from "../../lib/crc32.ts";
import { ZkClient } from "../../lib/zk/client.ts";
import { BrokerProcess, runMetaq } from "../support/harness.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";
import { readTree } from "../support/zk_tree.ts";
import { startZooKeeper, type ZooKeeperServer } from "../support/zookeeper.ts";

let zk: ZooKeeperServer;
let temp: TempDir;
let reader: ZkClient;
beforeAll(async () => {
  zk = await startZooKeeper();
  temp = tempDir();
  reader = await ZkClient.open({
    connect: zk.connect,
    sessionTimeoutMs: 10_000,
    connectionTimeoutMs: 10_000,
  });
}, 600_000); // the first run on a fresh machine installs ZooKeeper (apt-get)
afterAll(async () => {
  await reader?.close();
  await zk?.[Symbol.asyncDispose]();
  temp?.[Symbol.dispose]();
});

const persistent = (data: string | null) => ({ data, ephemeral: false });
const ephemeral = (data: string) => ({ data, ephemeral: true });

test(
  "two brokers register MetaQ's znodes byte for byte, add a new topic, and leave cleanly",
  async () => {
    const ini = [
      "[system]",
      "brokerId=1",
      "numPartitions=2",
      "[zookeeper]",
      `zk.zkConnect=${zk.connect}`,
      "zk.zkSessionTimeoutMs=10000",
      "[topic=orders]",
      "numPartitions=3",
      "[topic=audit]",
      "acceptPublish=false",
      "[topic=feed]",
      "acceptSubscribe=false",
      "[topic=*]",
      "",
    ].join("\n");
    const iniPath = path.join(temp.path, "one.ini");
    fs.writeFileSync(iniPath, ini);
    const checksum = String(crc32(new TextEncoder().encode(ini)));
    await using one = await BrokerProcess.start({
      dataDir: path.join(temp.path, "one"),
      args: ["--config", iniPath],
    });
    await using two = await BrokerProcess.start({
      dataDir: path.join(temp.path, "two"),
      args: ["--broker-id", "2", "--partitions", "4", "--zk-connect", zk.connect],
    });
    // Broker 2 has no topic sections, so it registers a topic once it holds one.
    const put = await runMetaq(["produce", "orders", "--broker", two.address, "--message", "x"]);
    expect(put.code).toBe(0);
    const uri1 = `meta://127.0.0.1:${one.port}`;
    const uri2 = `meta://127.0.0.1:${two.port}`;
    const json = (parts: number, broker: string) => `{"numParts":${parts},"broker":"${broker}"}`;
    const expected = {
      "/meta": persistent(null),
      "/meta/brokers": persistent(null),
      "/meta/brokers/ids": persistent(null),
      "/meta/brokers/ids/1": persistent(uri1),
      "/meta/brokers/ids/1/master": ephemeral(uri1),
      "/meta/brokers/ids/1/master_config_checksum": ephemeral(checksum),
      "/meta/brokers/ids/2": persistent(uri2),
      "/meta/brokers/ids/2/master": ephemeral(uri2),
      "/meta/brokers/ids/2/master_config_checksum": ephemeral("0"),
      "/meta/brokers/topics": persistent(null),
      "/meta/brokers/topics/audit": persistent(null),
      "/meta/brokers/topics/audit/1-m": ephemeral("2"),
      "/meta/brokers/topics/feed": persistent(null),
      "/meta/brokers/topics/feed/1-m": ephemeral("2"),
      "/meta/brokers/topics/orders": persistent(null),
      "/meta/brokers/topics/orders/1-m": ephemeral("3"),
      "/meta/brokers/topics/orders/2-m": ephemeral("4"),
      "/meta/brokers/topics-pub": persistent(null),
      "/meta/brokers/topics-pub/feed": persistent(null),
      "/meta/brokers/topics-pub/feed/1-m": ephemeral(json(2, "1-m")),
      "/meta/brokers/topics-pub/orders": persistent(null),
      "/meta/brokers/topics-pub/orders/1-m": ephemeral(json(3, "1-m")),
      "/meta/brokers/topics-pub/orders/2-m": ephemeral(json(4, "2-m")),
      "/meta/brokers/topics-sub": persistent(null),
      "/meta/brokers/topics-sub/audit": persistent(null),
      "/meta/brokers/topics-sub/audit/1-m": ephemeral(json(2, "1-m")),
      "/meta/brokers/topics-sub/orders": persistent(null),
      "/meta/brokers/topics-sub/orders/1-m": ephemeral(json(3, "1-m")),
      "/meta/brokers/topics-sub/orders/2-m": ephemeral(json(4, "2-m")),
    };
    await waitFor(
      "broker 2's orders nodes",
      async () =>
        (await readTree(reader, "/meta"))["/meta/brokers/topics-sub/orders/2-m"] !== undefined,
    );
    expect(await readTree(reader, "/meta")).toEqual(expected);

    // A topic that appears later (through [topic=*]) is registered when its first message lands.
    expect((await runMetaq(["produce", "later", "--broker", one.address, "--message", "y"])).code)
      .toBe(0);
    await waitFor(
      "the new topic's nodes",
      async () =>
        (await readTree(reader, "/meta/brokers/topics-sub/later"))[
          "/meta/brokers/topics-sub/later/1-m"
        ]
          ?.data === json(2, "1-m"),
    );
    const later = await readTree(reader, "/meta/brokers");
    expect(later["/meta/brokers/topics/later/1-m"]).toEqual(ephemeral("2"));
    expect(later["/meta/brokers/topics-pub/later/1-m"]).toEqual(ephemeral(json(2, "1-m")));

    // SIGTERM: broker 1 removes its nodes (and the old clients' parent) before it exits.
    expect((await one.kill("SIGTERM")).code).toBe(0);
    const after = await readTree(reader, "/meta");
    const left = Object.keys(after).filter((key) => /\/1(-m)?(\/|$)/.test(key));
    expect(left).toEqual([]);
    expect(after["/meta/brokers/ids/2/master"]).toEqual(ephemeral(uri2));
    expect(after["/meta/brokers/topics/orders"]).toEqual(persistent(null)); // parents stay, as MetaQ's
  },
  90_000,
);

test("a SIGKILLed broker's ephemeral nodes stay until its session expires, then go", async () => {
  await using broker = await BrokerProcess.start({
    dataDir: path.join(temp.path, "killed"),
    args: [
      "--broker-id",
      "7",
      "--zk-connect",
      zk.connect,
      "--zk-root",
      "/killed",
      "--zk-session-timeout-ms",
      "2000",
    ],
  });
  expect((await runMetaq(["produce", "t", "--broker", broker.address, "--message", "m"])).code)
    .toBe(0);
  await waitFor(
    "the topic node",
    async () => (await reader.exists("/killed/brokers/topics-sub/t/7-m")) !== undefined,
  );
  await broker.kill("SIGKILL");
  const killedAt = Date.now();
  expect(await reader.exists("/killed/brokers/ids/7/master")).toBeDefined();
  await waitFor(
    "the session to expire",
    async () => (await reader.exists("/killed/brokers/ids/7/master")) === undefined,
    { timeoutMs: 15_000 },
  );
  expect(Date.now() - killedAt).toBeGreaterThan(1000);
  const tree = await readTree(reader, "/killed");
  expect(Object.entries(tree).filter(([, node]) => node.ephemeral)).toEqual([]);
  // Only a clean shutdown removes the old clients' copy; MetaQ leaves it behind a crash too.
  expect(tree["/killed/brokers/ids/7"]).toEqual(persistent(`meta://127.0.0.1:${broker.port}`));
}, 60_000);

test("a broker registers again in a new session after its session expired", async () => {
  await using broker = await BrokerProcess.start({
    dataDir: path.join(temp.path, "paused"),
    args: [
      "--broker-id",
      "8",
      "--zk-connect",
      zk.connect,
      "--zk-root",
      "/paused",
      "--zk-session-timeout-ms",
      "1500",
      "--partitions",
      "2",
    ],
  });
  expect((await runMetaq(["produce", "t", "--broker", broker.address, "--message", "m"])).code)
    .toBe(0);
  const master = "/paused/brokers/ids/8/master";
  await waitFor(
    "the topic node",
    async () => (await reader.exists("/paused/brokers/topics-sub/t/8-m")) !== undefined,
  );
  const before = await readTree(reader, "/paused");
  const owner = (await reader.exists(master))!.ephemeralOwner;
  // A pause longer than the session timeout (as a long GC pause would be) ends the session.
  broker.child!.kill("SIGSTOP");
  try {
    await waitFor(
      "the session to expire",
      async () => (await reader.exists(master)) === undefined,
      {
        timeoutMs: 15_000,
      },
    );
  } finally {
    broker.child!.kill("SIGCONT");
  }
  await waitFor("the registration to come back", async () => {
    const stat = await reader.exists("/paused/brokers/topics-sub/t/8-m");
    return stat !== undefined && (await reader.exists(master)) !== undefined;
  }, { timeoutMs: 20_000 });
  const renewed = (await reader.exists(master))!.ephemeralOwner;
  expect(renewed).not.toBe(owner);
  expect(await readTree(reader, "/paused")).toEqual(before);
}, 60_000);

test("a broker keeps its session and nodes across a ZooKeeper restart", async () => {
  await using broker = await BrokerProcess.start({
    dataDir: path.join(temp.path, "zkrestart"),
    args: [
      "--broker-id",
      "9",
      "--zk-connect",
      zk.connect,
      "--zk-root",
      "/restart",
      "--zk-session-timeout-ms",
      "4000",
    ],
  });
  const master = "/restart/brokers/ids/9/master";
  await waitFor("the master node", async () => (await reader.exists(master)) !== undefined);
  const owner = (await reader.exists(master))!.ephemeralOwner;
  await reader.close();
  await zk.kill();
  await zk.start();
  reader = await ZkClient.open({
    connect: zk.connect,
    sessionTimeoutMs: 10_000,
    connectionTimeoutMs: 10_000,
  });
  // The restarted server gives old sessions a full timeout to come back; past two of them, the
  // node is still there only if the broker reconnected and kept its session alive.
  const restartedAt = Date.now();
  await waitFor("two session timeouts", () => Date.now() - restartedAt > 8000, {
    timeoutMs: 10_000,
  });
  expect((await reader.exists(master))?.ephemeralOwner).toBe(owner);
  // It still answers for its registration: it resumed the same session, not a new one.
  expect(broker.stderr).not.toContain("ZooKeeper session renewed");
}, 90_000);

test("a second broker with the same id is refused with a clear error", async () => {
  await using first = await BrokerProcess.start({
    dataDir: path.join(temp.path, "dup1"),
    args: ["--broker-id", "5", "--zk-connect", zk.connect, "--zk-root", "/dup"],
  });
  const second = await runMetaq([
    "serve",
    "--port",
    "0",
    "--no-http",
    "--data",
    path.join(temp.path, "dup2"),
    "--broker-id",
    "5",
    "--zk-connect",
    zk.connect,
    "--zk-root",
    "/dup",
  ], { timeoutMs: 30_000 });
  expect(second.code).toBe(1);
  expect(second.stderr).toContain(
    `Cannot register broker 5 in ZooKeeper: /dup/brokers/ids/5/master holds meta://127.0.0.1:${first.port}`,
  );
  expect((await readTree(reader, "/dup/brokers/ids/5"))["/dup/brokers/ids/5/master"])
    .toEqual(ephemeral(`meta://127.0.0.1:${first.port}`));
}, 60_000);

test("topics created, grown and deleted with metaq topics are registered as such", async () => {
  const ini = [
    "[system]",
    "brokerId=7",
    "numPartitions=2",
    "[zookeeper]",
    `zk.zkConnect=${zk.connect}`,
    "zk.zkRoot=/catalogue",
    "zk.zkSyncTimeMs=200",
    "[topic=orders]",
    "",
  ].join("\n");
  const iniPath = path.join(temp.path, "catalogue.ini");
  fs.writeFileSync(iniPath, ini);
  await using broker = await BrokerProcess.start({
    dataDir: path.join(temp.path, "catalogue"),
    args: ["--config", iniPath],
  });
  const topics = (...args: string[]) => runMetaq(["topics", ...args, "--broker", broker.address]);
  const node = (topic: string) => `/catalogue/brokers/topics/${topic}/7-m`;
  const registered = async (topic: string) =>
    (await readTree(reader, "/catalogue/brokers/topics"))[node(topic)]?.data;
  expect((await topics("create", "clicks", "--partitions", "5")).code).toBe(0);
  await waitFor(
    "clicks registered with 5 partitions",
    async () => await registered("clicks") === "5",
  );
  expect((await topics("create", "orders", "--partitions", "6")).code).toBe(0);
  await waitFor(
    "orders registered with 6 partitions",
    async () => await registered("orders") === "6",
  );
  // The registrar writes the legacy node first, then topics-pub: wait for the second too.
  const published = async () =>
    (await readTree(reader, "/catalogue/brokers/topics-pub/orders"))[
      "/catalogue/brokers/topics-pub/orders/7-m"
    ]?.data;
  await waitFor(
    "orders published with 6 partitions",
    async () => await published() === '{"numParts":6,"broker":"7-m"}',
  );
  expect((await topics("delete", "clicks")).code).toBe(0);
  await waitFor("clicks unregistered", async () => await registered("clicks") === undefined);
}, 60_000);

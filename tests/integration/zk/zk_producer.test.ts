/**
 * ZkProducer against a real ZooKeeper and a real broker (in-process, registered as broker id 2),
 * with other broker ids registered by hand for addresses that misbehave: one that refuses
 * connections (its put was never written: the producer moves on), one that takes puts and never
 * answers (the outcome is unknown: the put must not be sent to another broker, where it would be
 * stored twice). Also routing by key and by name, and the publishers read again after the
 * producer's ZooKeeper session expired (its watches died with it).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as net from "node:net";
import { type App, assemble } from "../../../lib/app/assemble.ts";
import { MetaqClient } from "../../../lib/client/client.ts";
import { BrokerError, TimeoutError } from "../../../lib/client/errors.ts";
import { ZkProducer } from "../../../lib/client/zk_producer.ts";
import { buildConfig } from "../../../lib/config/config.ts";
import { silentLogger } from "../../../lib/log.ts";
import { decodeRecords } from "../../../lib/protocol/record.ts";
import { ZkClient, type ZkState } from "../../../lib/zk/client.ts";
import { MASTER, MetaLayout, topicBrokerJson } from "../../../lib/zk/meta_layout.ts";
import { deleteIfExists, writePersistent } from "../../../lib/zk/nodes.ts";
import { freePorts } from "../../support/free_port.ts";
import { type TempDir, tempDir } from "../../support/temp_dir.ts";
import { waitFor } from "../../support/wait.ts";
import { expireSession, startZooKeeper, type ZooKeeperServer } from "../../support/zookeeper.ts";

const layout = new MetaLayout("/meta");
let zk: ZooKeeperServer;
let temp: TempDir;
let broker: App;
let admin: ZkClient;
let reader: MetaqClient;

beforeAll(async () => {
  zk = await startZooKeeper();
  temp = tempDir();
  broker = await assemble({
    config: buildConfig({
      fileText: [
        "[system]",
        "brokerId=2",
        "numPartitions=2",
        `dataPath=${temp.path}`,
        "[zookeeper]",
        `zk.zkConnect=${zk.connect}`,
        "[topic=t]",
        "",
      ].join("\n"),
      overrides: { serverPort: "0", httpEnabled: "false" },
    }),
    logger: silentLogger,
  });
  admin = await open();
  reader = new MetaqClient({ brokers: [`127.0.0.1:${broker.port}`] });
}, 600_000); // the first run on a fresh machine installs ZooKeeper (apt-get)

afterAll(async () => {
  reader?.close();
  await admin?.close();
  await broker?.close();
  await zk?.[Symbol.asyncDispose]();
  temp?.[Symbol.dispose]();
});

function open(sessionTimeoutMs = 4000): Promise<ZkClient> {
  return ZkClient.open({ connect: zk.connect, sessionTimeoutMs, connectionTimeoutMs: 10_000 });
}

/** Registers `brokerId` as the master of topic `t` at `address`, as a MetaQ broker would. */
async function register(brokerId: number, address: string, partitions = 2): Promise<void> {
  await writePersistent(admin, layout.brokerPath(brokerId, MASTER), `meta://${address}`);
  await writePersistent(
    admin,
    `${layout.brokerTopicsPub}/t/${brokerId}-m`,
    topicBrokerJson(partitions, brokerId, MASTER),
  );
}

async function unregister(brokerId: number): Promise<void> {
  await deleteIfExists(admin, `${layout.brokerTopicsPub}/t/${brokerId}-m`);
  await deleteIfExists(admin, layout.brokerPath(brokerId, MASTER));
}

async function payloadsOf(partition: number): Promise<string[]> {
  const reply = await reader.get({
    topic: "t",
    group: "g",
    partition,
    offset: 0,
    maxSize: 1 << 20,
  });
  if (reply.kind !== "records") return [];
  return decodeRecords(reply.bytes).map((record) => new TextDecoder().decode(record.data));
}

const message = (text: string) => ({ payload: new TextEncoder().encode(text) });

test("the partitions of every master, sorted; a broker refusing connections is skipped", async () => {
  const [closedPort] = await freePorts(1);
  await register(1, `127.0.0.1:${closedPort}`);
  const zkClient = await open();
  const producer = new ZkProducer({
    zk: zkClient,
    clientOptions: { reconnectAttemptsMax: 1, requestTimeoutMs: 2000 },
  });
  try {
    await waitFor(
      "broker 2 to register t",
      async () => (await producer.partitionsOf("t")).some((partition) => partition.brokerId === 2),
    );
    expect((await producer.partitionsOf("t")).map((partition) => partition.name))
      .toEqual(["1-0", "1-1", "2-0", "2-1"]);
    const names: string[] = [];
    for (let i = 0; i < 6; i++) names.push((await producer.put("t", message(`s${i}`))).name);
    // 1-0 and 1-1 were never written (connection refused): each put went on to broker 2.
    expect(names).toEqual(["2-0", "2-1", "2-0", "2-1", "2-0", "2-1"]);
    expect(await payloadsOf(0)).toEqual(["s0", "s2", "s4"]);
    expect(await payloadsOf(1)).toEqual(["s1", "s3", "s5"]);
  } finally {
    producer.close();
    await zkClient.close();
    await unregister(1);
  }
});

test("a put whose outcome is unknown is never sent to another broker", async () => {
  // Broker 1 takes connections and requests and never answers.
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("data", () => {});
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const { port } = silent.address() as net.AddressInfo;
  await register(1, `127.0.0.1:${port}`);
  const zkClient = await open();
  const producer = new ZkProducer({
    zk: zkClient,
    clientOptions: { reconnectAttemptsMax: 1, requestTimeoutMs: 300 },
  });
  try {
    const before = [...await payloadsOf(0), ...await payloadsOf(1)];
    await waitFor(
      "broker 1 in the list",
      async () => (await producer.partitionsOf("t")).some((partition) => partition.brokerId === 1),
    );
    const error = await producer.put("t", message("unknown")).catch((e) => e);
    expect(error).toBeInstanceOf(TimeoutError);
    expect([...await payloadsOf(0), ...await payloadsOf(1)]).toEqual(before);
  } finally {
    producer.close();
    await zkClient.close();
    await unregister(1);
    for (const socket of sockets) socket.destroy();
    silent.close();
  }
});

test("routing by key keeps one partition per key; by name, the named one", async () => {
  const zkClient = await open();
  const producer = new ZkProducer({ zk: zkClient });
  try {
    await waitFor(
      "only broker 2 publishing",
      async () => (await producer.partitionsOf("t")).length === 2,
    );
    const byKey = new Set<string>();
    for (let i = 0; i < 5; i++) {
      byKey.add((await producer.put("t", message(`k${i}`), { key: "customer-7" })).name);
    }
    expect(byKey.size).toBe(1);
    expect((await producer.put("t", message("named"), { name: "2-1" })).name).toBe("2-1");
    expect((await payloadsOf(1)).at(-1)).toBe("named");
    const error = await producer.put("t", message("x"), { name: "3-0" }).catch((e) => e);
    expect(error).toBeInstanceOf(BrokerError);
    expect(String(error.message)).toContain("t has no partition 3-0");
  } finally {
    producer.close();
    await zkClient.close();
  }
});

test("after its session expired the producer reads the publishers again", async () => {
  const zkClient = await open();
  const states: ZkState[] = [];
  zkClient.onState((state) => states.push(state));
  const producer = new ZkProducer({ zk: zkClient });
  try {
    await waitFor("broker 2 alone", async () => (await producer.partitionsOf("t")).length === 2);
    await expireSession(zk, zkClient.sessionId, zkClient.sessionPassword);
    await waitFor("a new session", () => states.includes("session"), { timeoutMs: 20_000 });
    // Registered after the expiry: no watch of the old session can report it.
    await register(5, "127.0.0.1:1", 1);
    expect((await producer.partitionsOf("t")).map((partition) => partition.name))
      .toEqual(["2-0", "2-1", "5-0"]);
  } finally {
    producer.close();
    await zkClient.close();
    await unregister(5);
  }
});

/**
 * The ZooKeeper client against a real ZooKeeper 3.8 (Debian's, started by the test on
 * 127.0.0.1): the operations, watches, ephemeral nodes, reconnection to a restarted server in the
 * same session, and a new session after expiry.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type WatchedEvent, ZkClient, type ZkState } from "../../../lib/zk/client.ts";
import {
  childrenOf,
  createEphemeral,
  deleteIfExists,
  ensurePath,
  readText,
  writePersistent,
} from "../../../lib/zk/nodes.ts";
import { isZkError } from "../../../lib/zk/protocol.ts";
import { expireSession, startZooKeeper, type ZooKeeperServer } from "../../support/zookeeper.ts";
import { waitFor } from "../../support/wait.ts";

let zk: ZooKeeperServer;
beforeAll(async () => {
  zk = await startZooKeeper();
}, 600_000); // the first run on a fresh machine installs ZooKeeper (apt-get)
afterAll(async () => {
  await zk?.[Symbol.asyncDispose]();
});

const open = (connect = zk.connect, sessionTimeoutMs = 4000) =>
  ZkClient.open({ connect, sessionTimeoutMs, connectionTimeoutMs: 10_000 });

test("create, read, write, list and delete nodes; errors carry ZooKeeper's codes", async () => {
  const client = await open();
  try {
    await ensurePath(client, "/t1/a/b");
    expect((await client.getData("/t1/a")).data).toBeNull(); // parents hold no data, as zkclient's
    await writePersistent(client, "/t1/a/b/c", "one");
    expect(await readText(client, "/t1/a/b/c")).toBe("one");
    await writePersistent(client, "/t1/a/b/c", "two");
    const { data, stat } = await client.getData("/t1/a/b/c");
    expect(new TextDecoder().decode(data!)).toBe("two");
    expect(stat.version).toBe(1);
    expect(stat.ephemeralOwner).toBe(0n);
    const sequential = await client.create("/t1/a/s-", "x", "persistentSequential");
    expect(sequential).toMatch(/^\/t1\/a\/s-\d{10}$/);
    expect((await client.getChildren("/t1/a")).sort()).toEqual(["b", sequential.slice(6)].sort());
    const failure = await client.create("/t1/a/b/c", "x", "persistent").catch((error) => error);
    expect(isZkError(failure, "nodeExists")).toBe(true);
    const badVersion = await client.delete("/t1/a/b/c", 0).catch((error) => error);
    expect(isZkError(badVersion, "badVersion")).toBe(true);
    expect(await deleteIfExists(client, "/t1/a/b/c")).toBe(true);
    expect(await deleteIfExists(client, "/t1/a/b/c")).toBe(false);
    expect(await client.exists("/t1/a/b/c")).toBeUndefined();
    expect(await childrenOf(client, "/t1/none")).toEqual([]);
  } finally {
    await client.close();
  }
});

test("an ephemeral node belongs to its session and goes when the session is closed", async () => {
  const owner = await open();
  const reader = await open();
  try {
    await createEphemeral(owner, "/t2/x/e", "mine");
    const stat = await reader.exists("/t2/x/e");
    expect(stat?.ephemeralOwner).toBe(owner.sessionId);
    const deleted = Promise.withResolvers<WatchedEvent>();
    await reader.exists("/t2/x/e", deleted.resolve);
    await owner.close();
    expect(await deleted.promise).toEqual({ type: "deleted", path: "/t2/x/e" });
    expect(await reader.exists("/t2/x/e")).toBeUndefined();
  } finally {
    await owner.close();
    await reader.close();
  }
});

test("data, exists and children watches fire once for the change they watch", async () => {
  const client = await open();
  const writer = await open();
  try {
    await ensurePath(client, "/t3");
    const created = Promise.withResolvers<WatchedEvent>();
    expect(await client.exists("/t3/n", created.resolve)).toBeUndefined();
    const children = Promise.withResolvers<WatchedEvent>();
    await client.getChildren("/t3", children.resolve);
    await writer.create("/t3/n", "1", "persistent");
    expect(await created.promise).toEqual({ type: "created", path: "/t3/n" });
    expect(await children.promise).toEqual({ type: "childrenChanged", path: "/t3" });
    const changed = Promise.withResolvers<WatchedEvent>();
    await client.getData("/t3/n", changed.resolve);
    await writer.setData("/t3/n", "2");
    expect(await changed.promise).toEqual({ type: "dataChanged", path: "/t3/n" });
  } finally {
    await client.close();
    await writer.close();
  }
});

test("a chroot in the connect string is invisible to the caller", async () => {
  const plain = await open();
  const rooted = await open(`${zk.connect}/t4/root`);
  try {
    await ensurePath(plain, "/t4/root");
    const path = await rooted.create("/node", "r", "persistent");
    expect(path).toBe("/node");
    expect(await readText(plain, "/t4/root/node")).toBe("r");
    expect(await rooted.getChildren("/")).toEqual(["node"]);
  } finally {
    await plain.close();
    await rooted.close();
  }
});

test(
  "a killed and restarted server keeps the session: ephemerals and watches survive",
  async () => {
    const client = await open(zk.connect, 20_000);
    const states: ZkState[] = [];
    client.onState((state) => states.push(state));
    try {
      await createEphemeral(client, "/t5/e", "alive");
      const sessionId = client.sessionId;
      const changed = Promise.withResolvers<WatchedEvent>();
      await client.getData("/t5/e", changed.resolve);
      await zk.kill();
      await waitFor("the client to notice", () => states.includes("disconnected"));
      await zk.start();
      await waitFor("the client to reconnect", () => states.includes("reconnected"), {
        timeoutMs: 30_000,
      });
      expect(client.sessionId).toBe(sessionId);
      expect(states).not.toContain("expired");
      expect(await readText(client, "/t5/e")).toBe("alive");
      await client.setData("/t5/e", "changed"); // the watch was re-armed by setWatches
      expect(await changed.promise).toEqual({ type: "dataChanged", path: "/t5/e" });
    } finally {
      await client.close();
    }
  },
  90_000,
);

test(
  "an expired session is replaced by a new one, announced, and its ephemerals are gone",
  async () => {
    const client = await open();
    const other = await open();
    const states: ZkState[] = [];
    client.onState((state) => states.push(state));
    try {
      await createEphemeral(client, "/t6/e", "old");
      const oldSession = client.sessionId;
      await expireSession(zk, oldSession, client.sessionPassword);
      await waitFor("a new session", () => states.includes("session"), { timeoutMs: 30_000 });
      expect(states).toContain("expired");
      expect(client.sessionId).not.toBe(oldSession);
      expect(await other.exists("/t6/e")).toBeUndefined();
      await createEphemeral(client, "/t6/e", "new");
      expect((await other.exists("/t6/e"))?.ephemeralOwner).toBe(client.sessionId);
    } finally {
      await client.close();
      await other.close();
    }
  },
  60_000,
);

test("opening against no server fails after the connection timeout with a clear error", async () => {
  const started = Date.now();
  const error = await ZkClient.open({
    connect: "127.0.0.1:1",
    sessionTimeoutMs: 2000,
    connectionTimeoutMs: 500,
  }).catch((error) => error);
  expect(String(error)).toContain("Cannot connect to ZooKeeper at 127.0.0.1:1");
  expect(Date.now() - started).toBeLessThan(5000);
});

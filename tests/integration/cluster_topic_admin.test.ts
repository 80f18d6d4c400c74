/**
 * The topic catalogue on a three-node Raft-lite cluster (in process, real TCP): a topic created
 * or grown through a node that does not lead `__cluster-0` is committed there by its leader (the
 * edge forwards the `catalogue` verb), every node learns the new count, and the new partitions
 * are placed, replicated and writable like configured ones. A delete removes every node's
 * copies and files.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import type { App } from "../../lib/app/assemble.ts";
import { MetaqClient } from "../../lib/client/client.ts";
import { GroupClient } from "../../lib/client/group_client.ts";
import { CLUSTER_GROUP } from "../../lib/cluster/metadata.ts";
import { BrokerError } from "../../lib/errors.ts";
import { type InProcessCluster, startCluster } from "../support/cluster_in_process.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const CONFIG = `
[system]
numPartitions=2
[topic=orders]
`;

let temp: TempDir;
let cluster: InProcessCluster;
let nodes: App[] = [];
const clients = new Map<App, MetaqClient>();

beforeAll(async () => {
  temp = tempDir();
  cluster = await startCluster({ dataPath: temp.path, configText: CONFIG });
  nodes = cluster.nodes;
  await waitFor(
    "the cluster's metadata on every node",
    () => nodes.every((node) => node.cluster?.metadata?.state.initialized === true),
    {
      timeoutMs: 15_000,
    },
  );
});

afterAll(async () => {
  for (const client of clients.values()) client.close();
  await cluster.close();
  temp[Symbol.dispose]();
});

function clientOf(node: App): MetaqClient {
  let client = clients.get(node);
  if (!client) {
    client = new MetaqClient({ brokers: [`127.0.0.1:${node.port}`] });
    clients.set(node, client);
  }
  return client;
}

/** A node that does not lead `__cluster-0` now. */
async function metadataFollower(): Promise<App> {
  let follower: App | undefined;
  await waitFor("a leader of __cluster-0", () => {
    const leader = nodes.find((node) =>
      node.cluster?.leaderOf(CLUSTER_GROUP)?.nodeId === node.cluster?.nodeId
    );
    follower = nodes.find((node) => node !== leader);
    return leader !== undefined;
  }, { timeoutMs: 10_000 });
  return follower!;
}

/** Waits until `meta` through every node's client port says `topic` has `partitions`. */
async function everyNodeSays(topic: string, partitions: number): Promise<void> {
  await waitFor(`every node to give ${topic} ${partitions} partitions`, async () => {
    const counts = await Promise.all(
      nodes.map((node) =>
        clientOf(node).topicMetadata(topic).then((meta) => meta.partitions, () => undefined)
      ),
    );
    return counts.every((count) => count === partitions);
  }, { timeoutMs: 10_000 });
}

const dirs = (node: App, topic: string) =>
  fs.readdirSync(node.config.system.dataPath).filter((name) => name.startsWith(`${topic}-`));

describe("topic admin on a cluster", () => {
  test("create on a follower: every node has the count; the new partitions replicate", async () => {
    const follower = await metadataFollower();
    const client = clientOf(follower);
    const created = JSON.parse(await client.extension("catalogue", ["create", "clicks", 4]));
    expect(created).toEqual({ topic: "clicks", partitions: 4, previous: 0, changed: true });
    await everyNodeSays("clicks", 4);
    const put = await client.put("clicks", 3, { payload: new TextEncoder().encode("fourth") });
    expect(put.partition).toBe(3);
    // Three copies (the default on three nodes): every node holds the record.
    await waitFor(
      "clicks-3 replicated to every node",
      () => nodes.every((node) => (node.logs.get("clicks", 3)?.endOffset ?? 0) > put.offset),
      {
        timeoutMs: 10_000,
      },
    );
  });

  test("a configured topic grows on every node; shrinking is refused", async () => {
    const follower = await metadataFollower();
    const client = clientOf(follower);
    const grown = JSON.parse(await client.extension("catalogue", ["create", "orders", 3]));
    expect(grown).toMatchObject({ partitions: 3, previous: 2, changed: true });
    await everyNodeSays("orders", 3);
    const put = await clientOf(nodes[0]).put("orders", 2, {
      payload: new TextEncoder().encode("third"),
    });
    expect(put.partition).toBe(2);
    const refused = await client.extension("catalogue", ["create", "orders", 2]).catch((e) => e);
    expect(refused).toBeInstanceOf(BrokerError);
    expect(refused.message).toContain("Cannot shrink topic orders from 3 to 2 partitions");
  });

  test("delete removes every node's copies and files; the name is not used again", async () => {
    const follower = await metadataFollower();
    const client = clientOf(follower);
    expect(nodes.every((node) => dirs(node, "clicks").length > 0)).toBe(true);
    // A group's offset of the topic goes with it, wherever groups are coordinated.
    const groups = new GroupClient(client);
    await groups.reset({ group: "g", topic: "clicks", partition: 3, to: "latest", force: false });
    const deleted = JSON.parse(await client.extension("catalogue", ["delete", "clicks", "-"]));
    expect(deleted).toEqual({
      topic: "clicks",
      deleted: true,
      partitionsRemoved: null,
      offsetsRemoved: 1,
    });
    await waitFor(
      "every node to drop clicks",
      () =>
        nodes.every((node) =>
          dirs(node, "clicks").length === 0 &&
          node.logs.list().every((entry) => entry.topic !== "clicks")
        ),
      { timeoutMs: 10_000 },
    );
    for (const node of nodes) {
      const refusal = await clientOf(node).topicMetadata("clicks").catch((e) => e);
      expect(refusal.message).toContain("it was deleted");
    }
    expect(await groups.describe("g")).toEqual([expect.objectContaining({ partitions: [] })]);
    const again = await client.extension("catalogue", ["create", "clicks", 1]).catch((e) => e);
    expect(again.message).toContain("a topic of that name was deleted on this cluster");
  });
});

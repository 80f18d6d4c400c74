/**
 * A 3-node cluster of `dist/metaq` grows to 4 nodes and shrinks back to 3 while a producer
 * keeps sending and a consumer group keeps reading, without restarting any seed node: node 4
 * starts with `--join`, `metaq cluster add` makes it a member (then it is SIGKILLed and restarted
 * once), `rebalance --apply` moves copies to it, `remove --node-id 2` moves node 2's copies away.
 * Afterwards every acknowledged message is in its partition exactly once, the log holds no
 * duplicate, the consumer group saw every acknowledged message, and every copy of each partition
 * is byte for byte the same.
 */
import { expect, test } from "bun:test";
import { Buffer } from "node:buffer";
import * as fs from "node:fs";
import { MetaqClient } from "../../lib/client/client.ts";
import { Consumer } from "../../lib/client/consumer.ts";
import type { ClusterStatusReport } from "../../lib/cluster/status.ts";
import { clusterStatusOf, eventually, startClusterProcesses } from "../support/cluster_process.ts";
import { FAST_RAFT_FLAGS } from "../support/cluster_process.ts";
import { freePorts } from "../support/free_port.ts";
import { BrokerProcess, readPartitionBytes, runMetaq } from "../support/harness.ts";
import { messagesThrough } from "../support/partition_reads.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";

const TOPIC = "grow";
const PARTITIONS = 4;
/** Bounds of the steady producer. */
const SENDS_MAX = 50_000;
const RUN_MS_MAX = 90_000;

/** Runs `metaq cluster ...` against `node`; fails the test on a non-zero exit. */
async function clusterCommand(node: BrokerProcess, args: string[]): Promise<string> {
  const result = await runMetaq(["cluster", ...args, "--broker", node.address], {
    timeoutMs: 20_000,
  });
  if (result.code !== 0) throw new Error(`cluster ${args.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

/** Group -> the nodes holding a copy of it, as their own status reports say. */
async function holders(nodes: readonly BrokerProcess[]): Promise<Map<string, number[]>> {
  const held = new Map<string, number[]>();
  for (const node of nodes) {
    const status = await clusterStatusOf(node);
    for (const group of status?.groups ?? []) {
      if (group.group.startsWith("__")) continue;
      held.set(group.group, [...(held.get(group.group) ?? []), status!.nodeId].sort());
    }
  }
  return held;
}

/** Whether no node reports a group whose copies are still moving. */
async function settled(nodes: readonly BrokerProcess[]): Promise<boolean> {
  const reports = await Promise.all(nodes.map(clusterStatusOf));
  return reports.every((report): report is ClusterStatusReport =>
    report !== undefined && report.reassignments.length === 0 &&
    report.groups.every((group) => group.leader !== 0)
  );
}

test(
  "grow a 3-node cluster to 4 and shrink it to 3 under load: nothing acknowledged is lost or doubled",
  async () => {
    await using temp = tempDir("metaq-membership-");
    const [n1, n2, n3] = await startClusterProcesses({
      dataDir: temp.path,
      args: ["--partitions", String(PARTITIONS)],
    });
    await using _n1 = n1;
    await using _n2 = n2;
    await using _n3 = n3;
    const pids = [n1, n2, n3].map((node) => node.child!.pid);

    // A steady producer (one put at a time, no retries: a failed put is simply not counted)
    // and a consumer group, both through nodes 1 and 3, which stay members throughout.
    const brokers = [n1.address, n3.address];
    const producerClient = new MetaqClient({ brokers, requestTimeoutMs: 15_000 });
    const acknowledged = new Map<string, { partition: number; offset: number }>();
    let failed = 0;
    let producing = true;
    const started = performance.now();
    const producing$ = (async () => {
      for (let n = 0; n < SENDS_MAX && producing; n++) {
        if (performance.now() - started > RUN_MS_MAX) break;
        const payload = `m-${n}`;
        try {
          const put = await producerClient.put(TOPIC, n % PARTITIONS, {
            payload: new TextEncoder().encode(payload),
          });
          acknowledged.set(payload, { partition: put.partition, offset: put.offset });
        } catch {
          failed++;
        }
      }
    })();
    const consumerClient = new MetaqClient({ brokers });
    const consumed = new Set<string>();
    const consumer = new Consumer(consumerClient, {
      group: "readers",
      maxDelayFetchMs: 100,
      commitOffsetPeriodMs: 200,
      heartbeatIntervalMs: 100,
      recoverDir: `${temp.path}/recover`,
      offsetDir: `${temp.path}/offsets`,
    });
    consumer.subscribe(TOPIC, (message) => {
      consumed.add(new TextDecoder().decode(message.payload));
    });
    await consumer.start();
    await eventually(
      "the producer under way",
      () => Promise.resolve(acknowledged.size >= 50),
      30_000,
    );

    // Grow: node 4 joins with an empty data directory and is added.
    const [peerPort4] = await freePorts(1);
    await using n4 = await BrokerProcess.start({
      dataDir: `${temp.path}/n4`,
      args: [
        "--node-id",
        "4",
        "--peer-port",
        String(peerPort4),
        "--join",
        n1.peerAddress,
        "--partitions",
        String(PARTITIONS),
        ...FAST_RAFT_FLAGS,
      ],
    });
    await clusterCommand(n2, ["add", "--node-id", "4", "--address", `127.0.0.1:${peerPort4}`]);
    await eventually("node 4 holding the broker's own logs", async () => {
      const status = await clusterStatusOf(n4);
      return ["__cluster-0", "__meta-0", "__tx-0"].every((name) =>
        status?.groups.some((group) => group.group === name && group.leader !== 0)
      ) ?? false;
    }, 30_000);
    // A joined node that restarts opens its copy of the metadata from its disk (started with
    // --join, it once failed to: 'Cannot open replica ... 0 voters', T19 seed 673642991).
    await n4.kill("SIGKILL");
    n4.stdout = n4.stderr = "";
    await n4.restart();
    await eventually("node 4 holding the broker's own logs after its restart", async () => {
      const status = await clusterStatusOf(n4);
      return ["__cluster-0", "__meta-0", "__tx-0"].every((name) =>
        status?.groups.some((group) => group.group === name && group.leader !== 0)
      ) ?? false;
    }, 30_000);
    expect(`${n4.stdout}${n4.stderr}`).not.toContain("Cannot open replica");
    const plan = await clusterCommand(n3, ["rebalance", "--apply"]);
    expect(plan).toContain("-> ");
    await eventually("copies moved to node 4", async () => {
      const held = await holders([n1, n2, n3, n4]);
      const onFour = [...held.values()].filter((nodes) => nodes.includes(4)).length;
      return onFour >= 3 && [...held.values()].every((nodes) => nodes.length === 3) &&
        await settled([n1, n2, n3, n4]);
    }, 60_000);
    const afterGrow = acknowledged.size;

    // Shrink: node 2 leaves; its copies move to the other three.
    await clusterCommand(n3, ["remove", "--node-id", "2"]);
    await eventually("node 2 holding no partition", async () => {
      const held = await holders([n1, n2, n3, n4]);
      return [...held.values()].every((nodes) => nodes.length === 3 && !nodes.includes(2)) &&
        await settled([n1, n3, n4]);
    }, 60_000);
    await eventually(
      "more puts after the shrink",
      () => Promise.resolve(acknowledged.size > afterGrow + 50),
    );
    producing = false;
    await producing$;
    producerClient.close();

    // Every node ran throughout: no restart.
    for (const [index, node] of [n1, n2, n3].entries()) {
      expect(node.child!.pid).toBe(pids[index]);
      expect(node.child!.exitCode).toBeNull();
    }
    console.log(
      `acknowledged ${acknowledged.size}, failed ${failed}, consumed ${consumed.size} (before the ` +
        `shrink: ${afterGrow})`,
    );
    expect(acknowledged.size).toBeGreaterThan(200);

    // The log: every acknowledged message once, at its acknowledged offset; no duplicate.
    using socket = await RawSocket.connect(n1.port);
    const remaining = [n1, n3, n4];
    for (let partition = 0; partition < PARTITIONS; partition++) {
      const messages = await messagesThrough(socket, TOPIC, partition);
      expect(new Set(messages).size).toBe(messages.length);
      const mine = [...acknowledged].filter(([, put]) => put.partition === partition);
      const present = new Set(messages);
      const missing = mine.filter(([payload]) => !present.has(payload)).map(([p]) => p);
      expect(missing).toEqual([]);
      // Every copy of the partition is the same, byte for byte.
      const group = `${TOPIC}-${partition}`;
      const held = (await holders(remaining)).get(group) ?? [];
      expect(held.length).toBe(3);
      const nodesById = new Map([[1, n1], [3, n3], [4, n4]]);
      await eventually(`copies of ${group} alike`, () => {
        const copies = held.map((id) =>
          readPartitionBytes(nodesById.get(id)!.options.dataDir, TOPIC, partition)
        );
        return Promise.resolve(copies.every((copy) => Buffer.compare(copy, copies[0]) === 0));
      }, 20_000);
    }
    // Node 2 kept only its copy of the cluster's metadata group.
    expect(fs.readdirSync(`${temp.path}/n2`).filter((name) => name.startsWith(TOPIC))).toEqual([]);

    // The consumer group read every acknowledged message.
    await eventually(
      "the group consumed everything",
      () => Promise.resolve([...acknowledged.keys()].every((payload) => consumed.has(payload))),
      30_000,
    );
    await consumer.close();
    consumerClient.close();
  },
  240_000,
);

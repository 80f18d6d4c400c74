/**
 * Raft-lite clusters of the compiled binary on 127.0.0.1: replication, reads on any node,
 * leader failover without losing acknowledged puts, node replacement after a wiped disk, status.
 * The fault catalogue (partitions, pauses, power loss, corruption) is in tests/chaos.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import { MetaqClient } from "../../lib/client/client.ts";
import type { ClusterStatusReport } from "../../lib/cluster/status.ts";
import { decodeRecords } from "../../lib/store/record.ts";
import { freePorts } from "../support/free_port.ts";
import { BrokerProcess, readPartitionBytes, runMetaq } from "../support/harness.ts";
import { tempDir } from "../support/temp_dir.ts";

const TIMING = [
  "--raft-heartbeat-ms",
  "100",
  "--raft-election-ms",
  "800-1600",
  "--raft-check-quorum-ms",
  "700",
];

async function startCluster(
  dataDir: string,
  nodes = 3,
  http = false,
): Promise<BrokerProcess[]> {
  const peerPorts = await freePorts(nodes);
  const peers = peerPorts.map((port, index) => `${index + 1}=127.0.0.1:${port}`).join(",");
  return await Promise.all(peerPorts.map((port, index) =>
    BrokerProcess.start({
      dataDir: `${dataDir}/n${index + 1}`,
      http,
      args: [
        "--node-id",
        String(index + 1),
        "--peer-port",
        String(port),
        "--peers",
        peers,
        "--partitions",
        "2",
        ...TIMING,
      ],
    })
  ));
}

async function status(node: BrokerProcess): Promise<ClusterStatusReport> {
  const result = await runMetaq([
    "cluster",
    "status",
    "--broker",
    node.address,
    "--format",
    "json",
  ]);
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout);
}

/** Polls `check` every 100 ms until it holds, at most `timeoutMs`. */
async function eventually(check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Every node has the same end and commit for `group` (replication finished). */
async function converged(nodes: BrokerProcess[], group: string): Promise<boolean> {
  const views = await Promise.all(
    nodes.map(async (node) => (await status(node)).groups.find((g) => g.group === group)),
  );
  return views.every((view) =>
    view && view.commit === views[0]!.logEnd && view.logEnd === views[0]!.logEnd
  );
}

async function stopAll(nodes: BrokerProcess[]): Promise<void> {
  await Promise.all(nodes.map((node) => node.kill("SIGKILL")));
}

test(
  "a three-node cluster replicates every put byte for byte and serves reads from any node",
  async () => {
    await using temp = tempDir();
    const nodes = await startCluster(temp.path);
    try {
      const brokers = nodes.map((node) => node.address).join(",");
      const lines = Array.from({ length: 3000 }, (_, i) => `replicated ${i}`);
      const produced = await runMetaq(["produce", "orders", "--broker", brokers], {
        input: lines.join("\n"),
      });
      expect(produced.code).toBe(0);
      expect(produced.stderr).toContain("3,000 messages");
      await eventually(async () =>
        (await converged(nodes, "orders-0")) && (await converged(nodes, "orders-1"))
      );
      for (const node of nodes) {
        const consumed = await runMetaq(["consume", "orders", "--broker", node.address]);
        expect(consumed.stdout.trim().split("\n").sort()).toEqual([...lines].sort());
      }
      for (const partition of [0, 1]) {
        const copies = nodes.map((_, index) =>
          Buffer.from(readPartitionBytes(`${temp.path}/n${index + 1}`, "orders", partition))
        );
        expect(copies[0].length).toBeGreaterThan(0);
        expect(copies[1].equals(copies[0])).toBe(true);
        expect(copies[2].equals(copies[0])).toBe(true);
      }
    } finally {
      await stopAll(nodes);
    }
  },
  120_000,
);

test(
  "when a partition's leader is killed another takes over and no acknowledged put is lost",
  async () => {
    await using temp = tempDir();
    const nodes = await startCluster(temp.path);
    const client = new MetaqClient({
      brokers: nodes.map((node) => node.address),
      requestTimeoutMs: 3000,
      reconnectAttemptsMax: 20,
    });
    try {
      const acked: string[] = [];
      const send = async (value: string) => {
        try {
          await client.put("failover", 0, { payload: new TextEncoder().encode(value) });
          acked.push(value);
          return true;
        } catch {
          return false; // refused or indeterminate: never counted as acknowledged
        }
      };
      for (let i = 0; i < 200; i++) await send(`before-${i}`);
      const report = await status(nodes[0]);
      const leaderId = report.groups.find((group) => group.group === "failover-0")!.leader;
      expect(leaderId).toBeGreaterThan(0);
      await nodes[leaderId - 1].kill("SIGKILL");
      let resumed = false;
      const deadline = Date.now() + 30_000;
      for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
        if (await send(`after-${i}`) && i > 0) {
          resumed = true;
          if (acked.filter((value) => value.startsWith("after-")).length >= 100) break;
        }
      }
      expect(resumed).toBe(true);
      await nodes[leaderId - 1].restart();
      await eventually(() => converged(nodes, "failover-0"));
      const survivor = nodes.find((_, index) => index !== leaderId - 1)!;
      const stored = new Set(
        decodeRecords(readPartitionBytes(survivor.options.dataDir, "failover", 0)).map((record) =>
          new TextDecoder().decode(record.data)
        ),
      );
      expect(acked.filter((value) => !stored.has(value))).toEqual([]);
      const newLeader = (await status(survivor)).groups.find((group) =>
        group.group === "failover-0"
      )!;
      expect(newLeader.term).toBeGreaterThan(
        report.groups.find((group) => group.group === "failover-0")!.term,
      );
    } finally {
      client.close();
      await stopAll(nodes);
    }
  },
  120_000,
);

test("a node back with an empty disk stays out until replaced, then catches up", async () => {
  await using temp = tempDir();
  const nodes = await startCluster(temp.path);
  try {
    const brokers = nodes.map((node) => node.address).join(",");
    const lines = Array.from({ length: 500 }, (_, i) => `kept ${i}`);
    expect(
      (await runMetaq(["produce", "wiped", "--broker", brokers, "--partition", "0"], {
        input: lines.join("\n"),
      })).code,
    ).toBe(0);
    await eventually(() => converged(nodes, "wiped-0"));
    const termOf = async () =>
      (await status(nodes[0])).groups.find((group) => group.group === "wiped-0")!.term;
    const termBefore = await termOf();
    await nodes[2].kill("SIGKILL");
    fs.rmSync(`${temp.path}/n3`, { recursive: true, force: true });
    await nodes[2].restart();
    await eventually(
      async () =>
        (await status(nodes[2])).admitted === false && (await status(nodes[2])).groups.length === 0,
      10_000,
    );
    await new Promise((resolve) => setTimeout(resolve, 2500)); // longer than an election timeout
    expect(await termOf()).toBe(termBefore); // the stranger started no election
    expect((await status(nodes[2])).admitted).toBe(false);

    const replaced = await runMetaq([
      "cluster",
      "replace",
      "--node-id",
      "3",
      "--broker",
      nodes[0].address,
    ]);
    expect(replaced.code).toBe(0);
    await eventually(async () => (await status(nodes[2])).admitted);
    await eventually(() => converged(nodes, "wiped-0"), 30_000);
    const copy = readPartitionBytes(`${temp.path}/n3`, "wiped", 0);
    expect(Buffer.from(copy).equals(Buffer.from(readPartitionBytes(`${temp.path}/n1`, "wiped", 0))))
      .toBe(true);
  } finally {
    await stopAll(nodes);
  }
}, 120_000);

test(
  "cluster status and stats cluster explain roles, commits and replicas; transactions are refused",
  async () => {
    await using temp = tempDir();
    const nodes = await startCluster(temp.path, 3, true);
    try {
      expect(
        (await runMetaq([
          "produce",
          "st",
          "--broker",
          nodes[1].address,
          "--message",
          "x",
          "--partition",
          "1",
        ])).code,
      ).toBe(0);
      await eventually(() => converged(nodes, "st-1"));
      const reports = await Promise.all(nodes.map(status));
      const views = reports.map((report) => report.groups.find((group) => group.group === "st-1")!);
      expect(views.filter((view) => view.role === "leader").length).toBe(1);
      const leader = views.find((view) => view.role === "leader")!;
      expect(Object.keys(leader.matches ?? {}).length).toBe(2);
      for (const view of views) {
        expect(view).toMatchObject({
          term: leader.term,
          leader: leader.leader,
          commit: leader.logEnd,
          repair: false,
        });
      }
      const text = await runMetaq(["stats", "cluster", "--broker", nodes[0].address]);
      expect(text.stdout).toMatch(
        /^group st-1 role \w+ term \d+ leader \d+ commit \d+ log_end \d+/m,
      );
      const client = new MetaqClient({ brokers: [nodes[0].address] });
      await expect(client.transaction({ txKey: "TX:s:1", sessionId: "s", type: "BEGIN" })).rejects
        .toThrow(
          "transactions are not supported on replicated topics",
        );
      client.close();
      const asker = new MetaqClient({ brokers: [nodes[2].address] });
      const meta = await asker.topicMetadata("st");
      asker.close();
      expect((meta.leaders as Record<string, string>)["1"]).toBe(nodes[leader.leader - 1].address);
      // The HTTP API agrees with `cluster status` on who leads `__meta-0` (the group coordinator).
      const clusterViaHttp = async () =>
        await (await fetch(`${nodes[2].httpBase}/v1/cluster`)).json();
      await eventually(async () => (await clusterViaHttp()).ready === true);
      const viaHttp = await clusterViaHttp();
      const metaLeader = (await status(nodes[2])).groups.find((group) =>
        group.group === "__meta-0"
      )!.leader;
      expect(viaHttp).toMatchObject({ nodeId: "3", leaderId: String(metaLeader), ready: true });
      expect(viaHttp.nodes.map((node: { id: string }) => node.id).sort()).toEqual(["1", "2", "3"]);
      expect(viaHttp.nodes.every((node: { healthy: boolean }) => node.healthy)).toBe(true);
    } finally {
      await stopAll(nodes);
    }
  },
  120_000,
);

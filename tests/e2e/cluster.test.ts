/**
 * Raft-lite clusters of the compiled binary on 127.0.0.1: replication, reads on any node,
 * leader failover without losing acknowledged puts, node replacement after a wiped disk, status.
 * The fault catalogue (partitions, pauses, power loss, corruption) is in tests/chaos.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import { MetaqClient } from "../../lib/client/client.ts";
import type { ClusterStatusReport } from "../../lib/cluster/status.ts";
import { decodeRecords } from "../../lib/protocol/record.ts";
import { startClusterProcesses } from "../support/cluster_process.ts";
import { BrokerProcess, readPartitionBytes, runMetaq } from "../support/harness.ts";
import { tempDir } from "../support/temp_dir.ts";

/** Three (or `nodes`) nodes of the binary with fast Raft timing and 2 partitions per topic. */
function startCluster(
  dataDir: string,
  nodes = 3,
  http = false,
  extraArgs: readonly string[] = [],
): Promise<BrokerProcess[]> {
  return startClusterProcesses({ dataDir, nodes, http, args: extraArgs });
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

    const replaceNode3 = () =>
      runMetaq(["cluster", "replace", "--node-id", "3", "--broker", nodes[0].address]);
    const replaced = await replaceNode3();
    expect(replaced.code).toBe(0);
    await eventually(async () => (await status(nodes[2])).admitted);
    try {
      await eventually(() => converged(nodes, "wiped-0"), 30_000);
    } catch (error) {
      // What each node says if the copy stalls (it did, under load, until a replaced node's
      // admission woke its peers' sleeping groups again: docs/reliability.md).
      for (const node of nodes) {
        console.error(node.options.dataDir, JSON.stringify(await status(node)).slice(0, 3000));
        console.error(node.stderr.slice(-3000));
      }
      throw error;
    }
    const copy = readPartitionBytes(`${temp.path}/n3`, "wiped", 0);
    expect(Buffer.from(copy).equals(Buffer.from(readPartitionBytes(`${temp.path}/n1`, "wiped", 0))))
      .toBe(true);
    // Replacing it again, now that it runs as the identity the cluster has, would change nothing:
    // refused (after waiting for a new introduction), not answered as done. (Asked at the end: asked
    // before the wipe, its 5 s wait came before the term check above, and in one CI run the
    // group's term had risen by then, cause not found.)
    const again = await replaceNode3();
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain("with the identity the cluster already has for it");
  } finally {
    await stopAll(nodes);
  }
}, 120_000);

test(
  "a scrub finds a flipped message-id bit, which no checksum covers, and refills the copy",
  async () => {
    await using temp = tempDir();
    const nodes = await startCluster(temp.path);
    try {
      const brokers = nodes.map((node) => node.address).join(",");
      const lines = Array.from({ length: 300 }, (_, i) => `scrubbed ${i}`);
      expect(
        (await runMetaq(["produce", "scrubbed", "--broker", brokers, "--partition", "0"], {
          input: lines.join("\n"),
        })).code,
      ).toBe(0);
      await eventually(() => converged(nodes, "scrubbed-0"));
      const original = readPartitionBytes(`${temp.path}/n1`, "scrubbed", 0);
      const records = decodeRecords(original, 0);
      const target = records[200];

      await nodes[2].kill("SIGTERM");
      const segment = `${temp.path}/n3/scrubbed-0/${"0".repeat(20)}.meta`;
      const bytes = fs.readFileSync(segment);
      bytes[target.offset + 13] ^= 0x10; // inside the header's message id
      fs.writeFileSync(segment, bytes);
      // Checksums cover only the data: the local check passes the damaged copy.
      expect((await runMetaq(["verify", "--data", `${temp.path}/n3`])).code).toBe(0);
      await nodes[2].restart();

      const scrub = await runMetaq(["cluster", "scrub", "--broker", nodes[2].address]);
      expect(scrub.stdout).toContain(
        `scrubbed-0: DAMAGED at offset ${target.offset} (the record differs from the copies on nodes 1, 2)`,
      );
      expect(scrub.code).toBe(1);
      await eventually(() => converged(nodes, "scrubbed-0"), 30_000);
      const repaired = readPartitionBytes(`${temp.path}/n3`, "scrubbed", 0);
      expect(Buffer.from(repaired).equals(Buffer.from(original))).toBe(true);
      expect(fs.existsSync(`${segment}.damaged`)).toBe(true);

      const again = await runMetaq(["cluster", "scrub", "--broker", nodes[2].address]);
      expect(again.code).toBe(0);
      expect(again.stdout).toMatch(/^scrub: 0 damaged, \d+ groups agree with their peers/m);
    } finally {
      await stopAll(nodes);
    }
  },
  120_000,
);

test(
  "__meta-0 is compacted behind snapshots; offsets survive a lagging node, then a whole-cluster kill",
  async () => {
    await using temp = tempDir();
    fs.writeFileSync(`${temp.path}/server.ini`, "[system]\nmetaSegmentSize=4096\n[topic=*]\n");
    const nodes = await startCluster(temp.path, 3, false, ["--config", `${temp.path}/server.ini`]);
    const newClient = () =>
      new MetaqClient({
        brokers: nodes.map((node) => node.address),
        requestTimeoutMs: 5000,
        reconnectAttemptsMax: 20,
      });
    let client = newClient();
    try {
      const brokers = nodes.map((node) => node.address).join(",");
      const lines = Array.from({ length: 50 }, (_, i) => `compacted ${i}`);
      for (const partition of ["0", "1"]) {
        const produced = await runMetaq(
          ["produce", "snap", "--broker", brokers, "--partition", partition],
          { input: lines.join("\n") },
        );
        expect(produced.code).toBe(0);
      }
      await eventually(async () =>
        (await converged(nodes, "snap-0")) && (await converged(nodes, "snap-1")) &&
        (await converged(nodes, "__meta-0"))
      );
      const logEnd = (await status(nodes[0])).groups.find((g) => g.group === "snap-0")!.logEnd;
      const metaLeaderOf = async () =>
        (await status(nodes[0])).groups.find((g) => g.group === "__meta-0")!.leader;
      await eventually(async () => (await metaLeaderOf()) > 0);
      const metaLeader = await metaLeaderOf();
      /** Group commands answer 503 while a coordinator starts: retried, a bounded number of times. */
      const groupCommand = async (verb: string, args: (string | number)[]) => {
        for (let attempt = 1;; attempt++) {
          try {
            return await client.extension(verb, args);
          } catch (error) {
            if (attempt >= 100 || (error as { status?: number }).status !== 503) throw error;
            await new Promise((resolve) => setTimeout(resolve, 200));
          }
        }
      };
      // A node that misses the whole churn: it comes back behind its leader's compacted start.
      const lagging = nodes.findIndex((_, index) => index + 1 !== metaLeader);
      await nodes[lagging].kill("SIGKILL");

      // 20 groups x 2 partitions, moved 10 times each: about 400 records of ~110 bytes.
      const expected = new Map<string, number>();
      for (let round = 0; round < 10; round++) {
        for (let group = 0; group < 20; group++) {
          for (const partition of [0, 1]) {
            const latest = (round + group + partition) % 2 === 0;
            await groupCommand("adjust", [
              `g${group}`,
              "snap",
              partition,
              latest ? "latest" : "earliest",
              "force",
            ]);
            expected.set(`g${group} ${partition}`, latest ? logEnd : 0);
          }
        }
      }
      const running = nodes.filter((_, index) => index !== lagging);
      const leaderView = (await status(nodes[metaLeader - 1])).groups.find((g) =>
        g.group === "__meta-0"
      )!;
      expect(leaderView.logEnd).toBeGreaterThan(40_000);
      expect(leaderView.logStart).toBeGreaterThan(leaderView.logEnd - 16_384);
      const segments = (node: number) =>
        fs.readdirSync(`${temp.path}/n${node}/__meta-0`).filter((name) => name.endsWith(".meta"));
      expect(segments(metaLeader).length).toBeLessThanOrEqual(5);

      await nodes[lagging].restart();
      await eventually(() => converged(nodes, "__meta-0"), 30_000);
      await eventually(async () => {
        const digests = await Promise.all(nodes.map(async (node) => (await status(node)).offsets));
        return digests.every((offsets) =>
          offsets?.entries === 40 && offsets.digest === digests[0]!.digest
        );
      }, 30_000);
      expect((await status(nodes[lagging])).groups.find((g) => g.group === "__meta-0")!.logStart)
        .toBeGreaterThan(0);
      const digest = (await status(running[0])).offsets!.digest;

      await stopAll(nodes);
      client.close();
      for (const node of nodes) await node.restart();
      client = newClient();
      for (const [key, offset] of expected) {
        const [group, partition] = key.split(" ");
        const committed = Number(await groupCommand("committed", [group, "snap", partition]));
        expect({ key, offset: committed }).toEqual({ key, offset });
      }
      await eventually(async () => {
        const views = await Promise.all(nodes.map(async (node) => (await status(node)).offsets));
        return views.every((offsets) => offsets?.digest === digest);
      }, 30_000);
    } finally {
      client.close();
      await stopAll(nodes);
    }
  },
  180_000,
);

test(
  "cluster status and stats cluster explain roles, commits and replicas; any node begins a transaction",
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
      await client.transaction({ txKey: "TX:s:1", sessionId: "s", type: "BEGIN" });
      await client.transaction({ txKey: "TX:s:1", sessionId: "s", type: "ROLLBACK" });
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
      // HTTP produce on a node that does not lead the partition is forwarded to its leader,
      // for the JSON API and for MetaQ's /put alike.
      const follower = nodes.find((_, index) => index + 1 !== leader.leader)!;
      const viaJson = await fetch(`${follower.httpBase}/v1/topics/st/messages`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ messages: [{ payload: "forwarded json", partition: 1 }] }),
      });
      expect({ status: viaJson.status, body: await viaJson.clone().text() }).toMatchObject({
        status: 200,
      });
      const [jsonResult] = (await viaJson.json()).results;
      expect(jsonResult).toMatchObject({ partition: 1 });
      const viaPut = await fetch(
        `${follower.httpBase}/put?topic=st&partition=1&flag=0&length=13`,
        { method: "POST", body: "forwarded put" },
      );
      expect({ status: viaPut.status, text: await viaPut.text() }).toMatchObject({ status: 200 });
      await eventually(() => converged(nodes, "st-1"));
      const stored = decodeRecords(readPartitionBytes(`${temp.path}/n${leader.leader}`, "st", 1))
        .map((record) => new TextDecoder().decode(record.data));
      expect(stored.slice(-2)).toEqual(["forwarded json", "forwarded put"]);
      // Each node's copy of the group offsets (none committed yet), once `__meta-0` has a leader.
      await eventually(async () => (await status(nodes[0])).offsets !== undefined);
      const statsText = (await runMetaq(["stats", "cluster", "--broker", nodes[0].address])).stdout;
      expect(statsText).toMatch(
        /^offsets entries 0 applied \d+ snapshot_base 0 digest [0-9a-f]{8}$/m,
      );
      const human = await runMetaq(["cluster", "status", "--broker", nodes[0].address]);
      expect(human.stdout).toMatch(
        /^group offsets: 0 entries, applied to \d+, snapshot at 0, digest /m,
      );
    } finally {
      await stopAll(nodes);
    }
  },
  120_000,
);

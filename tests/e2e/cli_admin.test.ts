/**
 * Topic and group admin through `dist/metaq`: `topics describe` on a broker alone and on a
 * three-node cluster (leader and replicas per partition), and group lag in messages as well as
 * bytes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { startClusterProcesses } from "../support/cluster_process.ts";
import { BrokerProcess, METAQ_BINARY, runMetaq, startWithConfig } from "../support/harness.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const CONFIG = `[system]
numPartitions=3
[topic=orders]
`;

let temp: TempDir;
let broker: BrokerProcess;
let address: string[];

beforeAll(async () => {
  temp = tempDir();
  broker = await startWithConfig(temp.path, CONFIG, { http: true });
  address = ["--broker", broker.address];
  const lines = Array.from({ length: 10 }, (_, i) => `order-${i}`).join("\n");
  for (const partition of ["0", "1"]) {
    const produced = await runMetaq(["produce", "orders", "--partition", partition, ...address], {
      input: partition === "0" ? lines : "one\ntwo\n",
    });
    expect(produced.code).toBe(0);
  }
});

afterAll(async () => {
  await broker.kill("SIGKILL");
  temp[Symbol.dispose]();
});

describe("topics describe", () => {
  test("per partition: start, end, messages, size and segments; JSON the same", async () => {
    const json = await runMetaq(["topics", "describe", "orders", "--format", "json", ...address]);
    expect(json.code).toBe(0);
    const record0 = 20 + "order-0".length;
    expect(JSON.parse(json.stdout)).toEqual({
      topic: "orders",
      numPartitions: 3,
      partitions: [
        {
          partition: 0,
          startOffset: 0,
          endOffset: 10 * record0,
          messages: 10,
          bytes: 10 * record0,
          segments: 1,
          leader: null,
          replicas: null,
        },
        {
          partition: 1,
          startOffset: 0,
          endOffset: 23 + 23,
          messages: 2,
          bytes: 46,
          segments: 1,
          leader: null,
          replicas: null,
        },
        {
          partition: 2,
          startOffset: 0,
          endOffset: 0,
          messages: 0,
          bytes: 0,
          segments: 0,
          leader: null,
          replicas: null,
        },
      ],
    });
    const text = await runMetaq(["topics", "describe", "orders", ...address]);
    expect(text.stdout).toMatch(/^orders: 3 partitions$/m);
    expect(text.stdout).toMatch(/^0\s+0\s+270\s+10\s+270 B\s+1$/m);
    const missing = await runMetaq(["topics", "describe", "ordres", ...address]);
    expect([missing.code, missing.stderr.trim()]).toEqual([
      1,
      "metaq topics: Cannot describe ordres: The server do not accept topic ordres: no [topic=...] section of the broker's configuration matches it (sections: orders)",
    ]);
    const typo = await runMetaq(["topics", "descrbe", "orders", ...address]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain("did you mean 'describe'?");
  });

  test("on a cluster: each partition's leader and the nodes holding its copies", async () => {
    await using clusterTemp = tempDir();
    const nodes = await startClusterProcesses({ dataDir: clusterTemp.path, nodes: 3 });
    try {
      const brokers = nodes.map((node) => node.address).join(",");
      const produced = await runMetaq(["produce", "orders", "--broker", brokers], {
        input: "a\nb\nc\nd\n",
        timeoutMs: 60_000,
      });
      expect(produced.code).toBe(0);
      let description: {
        partitions: { partition: number; leader: number; replicas: number[]; messages: number }[];
      } = { partitions: [] };
      await waitFor("every partition's leader and replicas", async () => {
        const result = await runMetaq([
          "topics",
          "describe",
          "orders",
          "--format",
          "json",
          "--broker",
          nodes[2].address,
        ]);
        if (result.code !== 0) return false;
        description = JSON.parse(result.stdout);
        // Right after start a partition may not know its copies yet (replicas null).
        return description.partitions.every((p) => p.replicas?.length === 3);
      }, { timeoutMs: 60_000, everyMs: 200 });
      expect(description.partitions.map((p) => p.partition)).toEqual([0, 1]);
      for (const p of description.partitions) {
        expect([1, 2, 3]).toContain(p.leader);
        expect(p.replicas[0]).toBe(p.leader);
        expect([...p.replicas].sort()).toEqual([1, 2, 3]);
      }
      expect(description.partitions.reduce((sum, p) => sum + p.messages, 0)).toBe(4);
      const text = await runMetaq(["topics", "describe", "orders", "--broker", brokers]);
      expect(text.stdout).toMatch(/LEADER\s+REPLICAS/);
      // A group deleted through one node is gone on every node (its offsets live in __meta-0).
      const reset = ["groups", "reset", "gone", "orders", "--to", "earliest", "--create"];
      expect((await runMetaq([...reset, "--broker", nodes[0].address])).code).toBe(0);
      const deleted = await runMetaq(["groups", "delete", "gone", "--broker", nodes[1].address]);
      expect([deleted.code, deleted.stdout]).toEqual([
        0,
        "Deleted group gone (2 committed offsets removed)\n",
      ]);
      for (const node of nodes) {
        await waitFor("the deletion on every node", async () => {
          const listed = await runMetaq(["groups", "--format", "json", "--broker", node.address]);
          return listed.code === 0 &&
            !JSON.parse(listed.stdout).some((g: { group: string }) => g.group === "gone");
        }, { timeoutMs: 30_000, everyMs: 200 });
      }
    } finally {
      await Promise.all(nodes.map((node) => node.kill("SIGKILL")));
    }
  }, 120_000);
});

describe("group lag", () => {
  test("lag in messages as well as bytes", async () => {
    const reset = await runMetaq([
      "groups",
      "reset",
      "billing",
      "orders",
      "--to",
      "-3",
      "--create",
      ...address,
    ]);
    expect(reset.code).toBe(0);
    const report = JSON.parse(
      (await runMetaq(["groups", "billing", "--format", "json", ...address])).stdout,
    )[0];
    const byPartition = new Map(
      report.partitions.map((
        p: { partition: number; lag: number; lagMessages: number; lagMessagesExact: boolean },
      ) => [p.partition, [p.lag, p.lagMessages, p.lagMessagesExact]]),
    );
    expect(byPartition.get(0)).toEqual([3 * 27, 3, true]);
    expect(byPartition.get(1)).toEqual([46, 2, true]);
    expect(byPartition.get(2)).toEqual([0, 0, true]);
    const text = await runMetaq(["groups", "billing", ...address]);
    expect(text.stdout).toMatch(/LAG MESSAGES/);
    expect(text.stdout).toMatch(/^billing\s+orders\s+0\s+189\s+270\s+81 B\s+3\s+-$/m);
  });
});

describe("groups delete", () => {
  test("deletes a group without members, durably; refuses one with members or none", async () => {
    const kept = ["groups", "reset", "kept", "orders", "--to", "earliest", "--create"];
    expect((await runMetaq([...kept, ...address])).code).toBe(0);
    const created = await runMetaq([
      "groups",
      "reset",
      "old",
      "orders",
      "--to",
      "latest",
      "--create",
      ...address,
    ]);
    expect(created.code).toBe(0);
    const missing = await runMetaq(["groups", "delete", "nope", ...address]);
    expect([missing.code, missing.stderr.trim()]).toEqual([
      1,
      "metaq groups: Cannot delete group nope: no such consumer group",
    ]);

    // A member: refused while it runs.
    const member = spawn(METAQ_BINARY, ["consume", "orders", "--group", "old", ...address], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    const exited = new Promise((resolve) => member.on("exit", resolve));
    try {
      await waitFor("the member to join", async () => {
        const report = await runMetaq(["groups", "old", "--format", "json", ...address]);
        return report.code === 0 && JSON.parse(report.stdout)[0].members.length === 1;
      }, { timeoutMs: 30_000, everyMs: 100 });
      const refused = await runMetaq(["groups", "delete", "old", ...address]);
      expect(refused.code).toBe(1);
      expect(refused.stderr.trim()).toBe(
        "metaq groups: Cannot delete group old: it has 1 member(s); stop them first",
      );
    } finally {
      member.kill("SIGINT"); // commits and leaves
      await exited;
    }
    const deleted = await runMetaq(["groups", "delete", "old", "--format", "json", ...address]);
    expect(deleted.code).toBe(0);
    expect(JSON.parse(deleted.stdout)).toMatchObject({ group: "old", deleted: true });
    expect(JSON.parse(deleted.stdout).offsets).toHaveLength(3);
    const gone = await runMetaq(["groups", "old", ...address]);
    expect(gone.code).toBe(1);

    // HTTP deletes the same way: 200, then 404 for a group that is no more.
    const viaHttp = ["groups", "reset", "web", "orders", "--to", "earliest", "--create"];
    expect((await runMetaq([...viaHttp, ...address])).code).toBe(0);
    const first = await fetch(`${broker.httpBase}/v1/groups/web`, { method: "DELETE" });
    expect([first.status, await first.json()]).toEqual([200, { group: "web", deleted: true }]);
    const again = await fetch(`${broker.httpBase}/v1/groups/web`, { method: "DELETE" });
    expect(again.status).toBe(404);
    expect((await runMetaq(["groups", "web", ...address])).code).toBe(1);

    // Still gone after a crash and restart: the deletion is in the offsets log.
    await broker.kill("SIGKILL");
    await broker.restart();
    address = ["--broker", broker.address];
    const after = await runMetaq(["groups", "--format", "json", ...address]);
    expect(after.code).toBe(0);
    const names = JSON.parse(after.stdout).map((g: { group: string }) => g.group);
    expect(names).not.toContain("old");
    expect(names).toContain("kept"); // another group's offsets are intact
  });
});

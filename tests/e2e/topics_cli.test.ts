/**
 * `metaq topics create|delete` through `dist/metaq` against a `metaq serve` child: counts that
 * server.ini does not give survive a SIGKILL and restart, shrinking and unknown topics are
 * one-line errors with exit 1, flag mistakes exit 2, and a delete removes the files. On a
 * three-node cluster: a count set through one node reaches every node and survives a node's
 * SIGKILL and restart (its copy of the cluster's metadata), and a delete empties every node.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { startClusterProcesses } from "../support/cluster_process.ts";
import { BrokerProcess, runMetaq, startWithConfig } from "../support/harness.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const CONFIG = `[system]
numPartitions=2
[topic=orders]
`;

let temp: TempDir;
let broker: BrokerProcess;

beforeAll(async () => {
  temp = tempDir();
  broker = await startWithConfig(temp.path, CONFIG);
});

afterAll(async () => {
  await broker.kill("SIGKILL");
  temp[Symbol.dispose]();
});

const topics = (...args: string[]) => runMetaq(["topics", ...args, "--broker", broker.address]);
const dirs = (topic: string) =>
  fs.readdirSync(broker.options.dataDir).filter((name) => name.startsWith(`${topic}-`)).sort();

describe("metaq topics create and delete", () => {
  test("create makes a topic server.ini does not name; grow a configured one", async () => {
    const created = await topics("create", "clicks", "--partitions", "3");
    expect([created.code, created.stdout, created.stderr]).toEqual([
      0,
      "Created topic clicks with 3 partitions\n",
      "",
    ]);
    expect(dirs("clicks")).toEqual(["clicks-0", "clicks-1", "clicks-2"]);
    const grown = await topics("create", "orders", "--partitions", "4", "--format", "json");
    expect(grown.code).toBe(0);
    expect(JSON.parse(grown.stdout)).toEqual({
      topic: "orders",
      partitions: 4,
      previous: 2,
      changed: true,
    });
    const same = await topics("create", "orders", "--partitions", "4");
    expect([same.code, same.stdout]).toEqual([
      0,
      "Topic orders has 4 partitions already: nothing changed\n",
    ]);
    const produced = await runMetaq(
      ["produce", "clicks", "--partition", "2", "--broker", broker.address],
      { input: "a\nb\n" },
    );
    expect(produced.code).toBe(0);
  });

  test("the counts survive a SIGKILL and a restart on the same data", async () => {
    await broker.kill("SIGKILL");
    await broker.restart();
    const listed = await topics("--format", "json");
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout).topics).toEqual(expect.arrayContaining([
      expect.objectContaining({ name: "clicks", numPartitions: 3, messages: 2 }),
      expect.objectContaining({ name: "orders", numPartitions: 4 }),
    ]));
  });

  test("refusals are one line with a non-zero exit", async () => {
    const shrink = await topics("create", "orders", "--partitions", "2");
    expect(shrink.code).toBe(1);
    expect(shrink.stderr).toStartWith(
      "metaq topics: Cannot shrink topic orders from 4 to 2 partitions: partitions are addressed",
    );
    expect(shrink.stderr.trimEnd().split("\n").length).toBe(1);
    const unknown = await topics("delete", "nope");
    expect([unknown.code, unknown.stderr]).toEqual([
      1,
      "metaq topics: Cannot delete topic nope: no such topic (metaq topics lists them)\n",
    ]);
    const internal = await topics("delete", "__meta");
    expect(internal.code).toBe(1);
    expect(internal.stderr).toContain("topics starting with '__' hold the broker's own state");
    const zero = await topics("create", "x", "--partitions", "0");
    expect([zero.code, zero.stderr]).toEqual([
      2,
      "metaq topics: Cannot use --partitions 0: must be between 1 and 1024\n",
    ]);
    const typo = await topics("creat", "x");
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain("(did you mean 'create'?)");
    const misplaced = await topics("describe", "orders", "--partitions", "3");
    expect([misplaced.code, misplaced.stderr]).toEqual([
      2,
      "metaq topics: Cannot use --partitions: only 'topics create' takes it\n",
    ]);
  });

  test("delete removes the files; the topic is refused after a restart too", async () => {
    const deleted = await topics("delete", "clicks");
    expect([deleted.code, deleted.stdout]).toEqual([
      0,
      "Deleted topic clicks (3 partition(s) and their files removed, 0 group offset(s))\n",
    ]);
    expect(dirs("clicks")).toEqual([]);
    await broker.kill("SIGKILL");
    await broker.restart();
    const again = await topics("delete", "clicks");
    expect([again.code, again.stderr]).toEqual([
      1,
      "metaq topics: Cannot delete topic clicks: it is deleted already\n",
    ]);
    const consumed = await runMetaq(["consume", "clicks", "--broker", broker.address]);
    expect(consumed.code).not.toBe(0);
    expect(consumed.stderr).toContain("it was deleted (metaq topics create clicks");
    const listed = await topics("--format", "json");
    expect(JSON.parse(listed.stdout).topics.map((t: { name: string }) => t.name)).not.toContain(
      "clicks",
    );
    expect(fs.existsSync(path.join(broker.options.dataDir, "topic-catalogue"))).toBe(true);
  });
});

describe("metaq topics create and delete on a cluster", () => {
  test("a count set through one node is every node's, after a node's SIGKILL too", async () => {
    await using clusterTemp = tempDir();
    const nodes = await startClusterProcesses({ dataDir: clusterTemp.path, nodes: 3 });
    try {
      const on = (node: BrokerProcess, ...args: string[]) =>
        runMetaq(["topics", ...args, "--broker", node.address], { timeoutMs: 30_000 });
      const partitionsOn = async (node: BrokerProcess, topic: string) => {
        const result = await on(node, "describe", topic, "--format", "json");
        return result.code === 0 ? JSON.parse(result.stdout).numPartitions : undefined;
      };
      await waitFor("the cluster to take a topic", async () => {
        const created = await on(nodes[1], "create", "clicks", "--partitions", "5");
        // A first try may meet the cluster before its first metadata record: tried again.
        return created.code === 0;
      }, { timeoutMs: 30_000 });
      await waitFor("every node to give clicks 5 partitions", async () => {
        const counts = await Promise.all(nodes.map((node) => partitionsOn(node, "clicks")));
        return counts.every((count) => count === 5);
      }, { timeoutMs: 30_000 });
      const produced = await runMetaq(
        ["produce", "clicks", "--partition", "4", "--broker", nodes[0].address],
        { input: "x\n", timeoutMs: 30_000 },
      );
      expect(produced.code).toBe(0);
      await nodes[2].kill("SIGKILL");
      await nodes[2].restart();
      await waitFor(
        "the restarted node to give clicks 5 partitions",
        async () => await partitionsOn(nodes[2], "clicks") === 5,
        { timeoutMs: 30_000 },
      );
      const deleted = await on(nodes[2], "delete", "clicks");
      expect([deleted.code, deleted.stdout]).toEqual([
        0,
        "Deleted topic clicks (every node removes its copies and their files, 0 group offset(s))\n",
      ]);
      await waitFor(
        "every node to remove clicks's files",
        () =>
          nodes.every((node) =>
            fs.readdirSync(node.options.dataDir).every((name) => !name.startsWith("clicks-"))
          ),
        { timeoutMs: 30_000 },
      );
      const again = await on(nodes[0], "create", "clicks", "--partitions", "1");
      expect(again.code).toBe(1);
      expect(again.stderr).toContain("a topic of that name was deleted on this cluster");
    } finally {
      await Promise.all(nodes.map((node) => node.kill("SIGKILL")));
    }
  }, 180_000);
});

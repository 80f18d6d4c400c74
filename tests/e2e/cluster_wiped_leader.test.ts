/**
 * The node that leads the cluster's metadata group (`__cluster-0`) is wiped and back within an
 * election timeout: with quiescence its followers sleep and never see their leader's node go
 * silent, and the new node on the empty disk leads nothing (its copy repairs and may not vote).
 * Found by T14 (seed 4197202407: `__cluster-0` had no leader and the replaced node stayed in
 * repair mode for the rest of the run). The followers must wake when their leader's node comes
 * back as a new incarnation, elect a leader, and let the replaced copy catch up and leave repair.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import { clusterStatusOf, eventually, startClusterProcesses } from "../support/cluster_process.ts";
import { runMetaq } from "../support/harness.ts";
import { tempDir } from "../support/temp_dir.ts";

test("a wiped metadata leader back at once is replaced and its copy leaves repair", async () => {
  await using temp = tempDir();
  const nodes = await startClusterProcesses({ dataDir: temp.path, nodes: 3 });
  try {
    const brokers = nodes.map((node) => node.address).join(",");
    expect(
      (await runMetaq(["produce", "wiped", "--broker", brokers, "--partition", "0"], {
        input: "a\nb\nc\n",
      })).code,
    ).toBe(0);
    let leader = 0;
    await eventually("a leader of __cluster-0", async () => {
      const group = (await clusterStatusOf(nodes[0]))?.groups.find((g) =>
        g.group === "__cluster-0"
      );
      leader = group?.leader ?? 0;
      return leader !== 0;
    }, 10_000);
    // The case this test is for: the metadata group idle and asleep on its leader when wiped.
    await eventually("__cluster-0 asleep on its leader", async () => {
      const report = await clusterStatusOf(nodes[leader - 1]);
      return report?.groups.find((g) => g.group === "__cluster-0")?.asleep === true;
    }, 10_000);
    const wiped = nodes[leader - 1];
    await wiped.kill("SIGKILL");
    fs.rmSync(`${temp.path}/n${leader}`, { recursive: true, force: true });
    await wiped.restart();
    const other = nodes.find((node) => node !== wiped)!;
    expect(
      (await runMetaq([
        "cluster",
        "replace",
        "--node-id",
        String(leader),
        "--broker",
        other.address,
      ]))
        .code,
    ).toBe(0);
    await eventually("the wiped node admitted, its copy out of repair under a leader", async () => {
      const report = await clusterStatusOf(wiped);
      const copy = report?.groups.find((g) => g.group === "__cluster-0");
      return report?.admitted === true && copy !== undefined && !copy.repair && copy.leader !== 0;
    }, 30_000);
  } finally {
    await Promise.all(nodes.map((node) => node.kill("SIGKILL")));
  }
}, 120_000);

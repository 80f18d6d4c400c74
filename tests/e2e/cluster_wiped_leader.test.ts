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
import type { ClusterStatusReport } from "../../lib/cluster/status.ts";
import { startClusterProcesses } from "../support/cluster_process.ts";
import { runMetaq } from "../support/harness.ts";
import { tempDir } from "../support/temp_dir.ts";

async function status(address: string): Promise<ClusterStatusReport | undefined> {
  const result = await runMetaq(["cluster", "status", "--broker", address, "--format", "json"]);
  return result.code === 0 ? JSON.parse(result.stdout) : undefined;
}

async function eventually(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return false;
}

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
    expect(
      await eventually(async () => {
        const group = (await status(nodes[0].address))?.groups.find((g) =>
          g.group === "__cluster-0"
        );
        leader = group?.leader ?? 0;
        return leader !== 0;
      }, 10_000),
    ).toBe(true);
    // Long enough for an idle group to go to sleep (a quiet heartbeat).
    await new Promise((resolve) => setTimeout(resolve, 1500));
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
    const settled = await eventually(async () => {
      const report = await status(wiped.address);
      const copy = report?.groups.find((g) => g.group === "__cluster-0");
      return report?.admitted === true && copy !== undefined && !copy.repair && copy.leader !== 0;
    }, 30_000);
    expect(settled).toBe(true);
  } finally {
    await Promise.all(nodes.map((node) => node.kill("SIGKILL")));
  }
}, 120_000);

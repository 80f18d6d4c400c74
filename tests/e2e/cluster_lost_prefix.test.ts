/**
 * A follower's first segment is deleted while it is stopped (a disk losing a file, an operator's
 * mistake). Nothing in the segments themselves shows it: the log just starts later, as after
 * retention. The leader-epochs file does show it (retention moves its base before deleting), and
 * the copy must be repaired: refilled from its leader from the base, not left to take part with a
 * shorter log that, once it leads, serves and announces a later start (T12 subcase l, seed
 * 1167685619: 190 acknowledged records of chaos-4 unreadable through the damaged node as leader).
 * Likewise a leader-epochs file that fails its checksum: the copy used to refuse to open for good
 * (T12 subcase j, seed 3171566714), leaving its group on two copies.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { clusterStatusOf, eventually, startClusterProcesses } from "../support/cluster_process.ts";
import { readPartitionBytes, runMetaq } from "../support/harness.ts";
import { tempDir } from "../support/temp_dir.ts";

async function damageFollower(damage: (dir: string) => void): Promise<void> {
  await using temp = tempDir();
  const config = path.join(temp.path, "server.ini");
  fs.writeFileSync(config, "[system]\nmaxSegmentSize=4096\n");
  const nodes = await startClusterProcesses({
    dataDir: temp.path,
    nodes: 3,
    args: ["--config", config],
  });
  try {
    const brokers = nodes.map((node) => node.address).join(",");
    const lines = Array.from({ length: 300 }, (_, i) => `kept ${i} ${"x".repeat(40)}`);
    expect(
      (await runMetaq(["produce", "prefix", "--broker", brokers, "--partition", "0"], {
        input: lines.join("\n"),
      })).code,
    ).toBe(0);
    let leader = 0;
    const converged = async () => {
      const views = await Promise.all(
        nodes.map(async (node) =>
          (await clusterStatusOf(node))?.groups.find((g) => g.group === "prefix-0")
        ),
      );
      leader = views[0]?.leader ?? 0;
      return views.every((view) =>
        view !== undefined && !view.repair && view.commit === views[0]!.logEnd &&
        view.logEnd === views[0]!.logEnd
      );
    };
    await eventually("every copy of prefix-0 at the same end", converged, 20_000);
    const victim = nodes.findIndex((_, index) => index + 1 !== leader);
    const intact = path.join(temp.path, `n${leader}`);
    const dir = path.join(temp.path, `n${victim + 1}`, "prefix-0");
    await nodes[victim].kill("SIGKILL");
    damage(dir);
    await nodes[victim].restart();
    await eventually("the damaged copy repaired to the same end", converged, 30_000);
    expect(
      Buffer.from(readPartitionBytes(path.dirname(dir), "prefix", 0))
        .equals(Buffer.from(readPartitionBytes(intact, "prefix", 0))),
    ).toBe(true);
  } finally {
    await Promise.all(nodes.map((node) => node.kill("SIGKILL")));
  }
}

test("a copy that lost its first segment is refilled from its leader", async () => {
  await damageFollower((dir) => {
    const first = fs.readdirSync(dir).filter((name) => name.endsWith(".meta")).sort()[0];
    expect(first).toBe(`${"0".repeat(20)}.meta`);
    fs.rmSync(path.join(dir, first));
  });
}, 120_000);

test(
  "a copy whose leader-epochs file fails its checksum opens, repairs and catches up",
  async () => {
    await damageFollower((dir) => {
      const file = path.join(dir, "leader-epochs");
      const bytes = fs.readFileSync(file);
      bytes[bytes.length - 6] ^= 0x04;
      fs.writeFileSync(file, bytes);
    });
  },
  120_000,
);

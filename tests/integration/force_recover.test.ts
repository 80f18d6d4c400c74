/**
 * `cluster force-recover` over the wire, on an in-process 3-node cluster: bad requests and
 * healthy groups are refused without changing anything; a group whose copies are all in repair
 * mode is brought back from the copy the operator names, even the least complete one, and every
 * copy ends equal to it.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import { MetaqClient } from "../../lib/client/client.ts";
import type { ForceRecoverReport } from "../../lib/cluster/force_recover.ts";
import { readHardState, writeHardState } from "../../lib/cluster/state_files.ts";
import { FileStorage } from "../../lib/store/storage_file.ts";
import { decodeRecords } from "../../lib/protocol/record.ts";
import { startCluster } from "../support/cluster_in_process.ts";
import { messagesThrough } from "../support/partition_reads.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const CONFIG = "[system]\nnumPartitions=2\n";
const GROUP = "kept-0";

type Report = ForceRecoverReport & { fsync: string };

async function forceRecover(client: MetaqClient, query: string): Promise<Report> {
  return JSON.parse(await client.extension("cluster", ["force-recover", query]));
}

async function messagesOn(port: number): Promise<string[]> {
  using socket = await RawSocket.connect(port);
  return await messagesThrough(socket, "kept", 0);
}

test(
  "force-recover refuses bad input and healthy groups, and recovers from the operator's copy",
  async () => {
    await using temp = tempDir();
    const dataPath = `${temp.path}/cluster`;
    let cluster = await startCluster({ dataPath, configText: CONFIG });
    let client: MetaqClient | undefined;
    try {
      client = new MetaqClient({ brokers: [`127.0.0.1:${cluster.nodes[0].port}`] });
      for (let i = 0; i < 30; i++) {
        await client.put("kept", 0, { payload: new TextEncoder().encode(`m${i}`) });
      }
      await waitFor("every copy of kept-0 committed", () =>
        cluster.nodes.every((node) => {
          const replica = node.cluster!.replicaNamed(GROUP);
          return replica?.commitOffset === cluster.nodes[0].cluster!.replicaNamed(GROUP)?.log
            .writtenEnd;
        }));

      // Bad requests: a clear error, nothing changed.
      await expect(forceRecover(client, "from=2")).rejects.toThrow(
        "force-recover needs either partition=T-P or all=1",
      );
      await expect(forceRecover(client, "partition=kept-0&from=x")).rejects.toThrow(
        "force-recover: bad node id 'x'",
      );
      const unknown = await forceRecover(client, "partition=kept-5");
      expect(unknown.plan.refused[0].reason).toBe(
        "unknown partition kept-5: topic 'kept' has 2 partitions (0-1)",
      );
      const empty = await forceRecover(client, "partition=kept-1");
      expect(empty.plan.refused[0].reason).toBe(
        "no node has a copy of kept-1: nothing was written to it",
      );
      const malformed = await forceRecover(client, "partition=kept");
      expect(malformed.plan.refused[0].reason).toContain("is not a partition");
      // A healthy group is refused even when forced; with --all there is nothing to do.
      const led = await forceRecover(client, "partition=kept-0&force=1");
      expect(led.plan.groups).toEqual([]);
      expect(led.plan.refused[0].kind).toBe("led");
      // The broker's own logs elect on their own timers: once they have, nothing is stuck.
      await waitFor(
        "a leader for every group of the broker's own",
        () =>
          cluster.nodes.every((node) =>
            node.cluster!.replicas().every((replica) => replica.leaderId !== 0)
          ),
      );
      const all = await forceRecover(client, "all=1");
      expect(all.plan).toEqual({ groups: [], refused: [], fingerprint: all.plan.fingerprint });
      const applied = await forceRecover(client, `partition=kept-0&apply=${led.plan.fingerprint}`);
      expect(applied.applied).toBe(false);
      client.close();
      client = undefined;
      await cluster.close();

      // Every copy in repair mode (as after a power loss); node 3's copy lost its last 20 records.
      const storage = new FileStorage();
      const bytes = fs.readFileSync(`${dataPath}/n3/${GROUP}/${"0".repeat(20)}.meta`);
      const records = decodeRecords(new Uint8Array(bytes), 0);
      const shortEnd = records[10].offset;
      fs.truncateSync(`${dataPath}/n3/${GROUP}/${"0".repeat(20)}.meta`, shortEnd);
      for (const id of [1, 2, 3]) {
        const dir = `${dataPath}/n${id}/${GROUP}`;
        const state = readHardState(storage, dir);
        if (!state || state === "unreadable") throw new Error(`no hard state in ${dir}`);
        await writeHardState(storage, dir, { ...state, repair: {} });
      }
      cluster = await startCluster({ dataPath, configText: CONFIG });
      await waitFor(
        "every node calling kept-0 stuck",
        () => cluster.nodes.every((node) => node.cluster!.stuckReason(GROUP) !== undefined),
        {
          timeoutMs: 10_000,
        },
      );
      client = new MetaqClient({ brokers: [`127.0.0.1:${cluster.nodes[1].port}`] });

      // Not a holder, or the plan changed: refused.
      const stranger = await forceRecover(client, "partition=kept-0&from=4");
      expect(stranger.plan.refused[0].reason).toBe(
        "node 4 does not hold kept-0 (its copies are on nodes 1, 2, 3)",
      );
      const stale = await forceRecover(client, "partition=kept-0&from=3&apply=00000000");
      expect(stale.applied).toBe(false);
      expect(stale.error).toContain("the copies changed since the plan was shown");

      // The default would be node 1 or 2 (complete); the operator picks node 3 (short).
      const byDefault = await forceRecover(client, "partition=kept-0");
      expect([1, 2]).toContain(byDefault.plan.groups[0].from);
      expect(byDefault.plan.groups[0].kept.end).toBeGreaterThan(shortEnd);
      const plan = await forceRecover(client, "partition=kept-0&from=3");
      const [group] = plan.plan.groups;
      expect(group.from).toBe(3);
      expect(group.kept.end).toBe(shortEnd);
      expect(group.copies.map((copy) => [copy.node, copy.cut])).toEqual([
        [1, { from: shortEnd, to: records.at(-1)!.offset + 20 + records.at(-1)!.length }],
        [2, { from: shortEnd, to: records.at(-1)!.offset + 20 + records.at(-1)!.length }],
      ]);
      const done = await forceRecover(
        client,
        `partition=kept-0&from=3&apply=${plan.plan.fingerprint}`,
      );
      expect(done.applied).toBe(true);
      expect(done.outcomes?.[0].led).toBe(true);

      // Every copy is node 3's now, and new puts follow it.
      const put = await client.put("kept", 0, { payload: new TextEncoder().encode("after") });
      expect(put.offset).toBe(shortEnd);
      const expected = [
        ...Array.from({ length: 10 }, (_, i) => `m${i}`),
        "after",
      ];
      await waitFor("every copy equal to node 3's", async () => {
        for (const node of cluster.nodes) {
          if (
            JSON.stringify(await messagesOn(node.port)) !== JSON.stringify(expected)
          ) return false;
        }
        return cluster.nodes.every((node) =>
          node.cluster!.replicaNamed(GROUP)?.status().repair === undefined
        );
      }, { timeoutMs: 15_000, everyMs: 100 });
    } finally {
      client?.close();
      await cluster.close();
    }
  },
  90_000,
);

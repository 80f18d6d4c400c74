/**
 * A 3-node metaq cluster registered in a real ZooKeeper as one MetaQ broker id: the leader of
 * `__meta-0` holds `master`, the followers `slave<nodeId>`; after the leader is SIGKILLed, a new
 * leader holds `master` (and the topics' `-m` nodes) within 5 s, long before the dead leader's
 * 30 s session could expire.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ZkClient } from "../../lib/zk/client.ts";
import { readText } from "../../lib/zk/nodes.ts";
import { leaderSeenBy, startClusterProcesses } from "../support/cluster_process.ts";
import type { BrokerProcess } from "../support/harness.ts";
import { runMetaq } from "../support/harness.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";
import { readTree } from "../support/zk_tree.ts";
import { startZooKeeper, type ZooKeeperServer } from "../support/zookeeper.ts";

let zk: ZooKeeperServer;
let temp: TempDir;
let reader: ZkClient;
beforeAll(async () => {
  zk = await startZooKeeper();
  temp = tempDir();
  reader = await ZkClient.open({
    connect: zk.connect,
    sessionTimeoutMs: 10_000,
    connectionTimeoutMs: 10_000,
  });
}, 600_000); // the first run on a fresh machine installs ZooKeeper (apt-get)
afterAll(async () => {
  await reader?.close();
  await zk?.[Symbol.asyncDispose]();
  temp?.[Symbol.dispose]();
});

const uriOf = (node: BrokerProcess) => `meta://127.0.0.1:${node.port}`;

test(
  "a cluster registers as one broker id and moves master within 5 s of a leader SIGKILL",
  async () => {
    const nodes = await startClusterProcesses({
      dataDir: temp.path,
      args: ["--zk-connect", zk.connect, "--zk-broker-id", "4", "--zk-session-timeout-ms", "30000"],
    });
    try {
      expect(
        (await runMetaq(["produce", "orders", "--broker", nodes[0].address, "--message", "a"]))
          .code,
      ).toBe(0);
      const ids = "/meta/brokers/ids/4";
      let leader: BrokerProcess | undefined;
      await waitFor("one master and two slaves", async () => {
        const leaderId = await leaderSeenBy(nodes[0], "__meta-0");
        leader = nodes[leaderId - 1];
        if (!leader) return false;
        const tree = await readTree(reader, ids);
        const slaves = nodes.filter((node) => node !== leader).map((node) =>
          tree[`${ids}/slave${nodes.indexOf(node) + 1}`]?.data === uriOf(node)
        );
        return tree[`${ids}/master`]?.data === uriOf(leader) && slaves.every(Boolean) &&
          (await reader.exists("/meta/brokers/topics-sub/orders/4-m")) !== undefined;
      }, { timeoutMs: 30_000 });
      const leaderIndex = nodes.indexOf(leader!);
      const oldOwner = (await reader.exists(`${ids}/master`))!.ephemeralOwner;
      expect(await readText(reader, ids)).toBe(uriOf(leader!)); // the old clients' copy
      expect(await readText(reader, "/meta/brokers/topics-pub/orders/4-m"))
        .toBe('{"numParts":2,"broker":"4-m"}');
      const followerSub = `/meta/brokers/topics-sub/orders/4-s${leaderIndex === 0 ? 2 : 1}`;
      expect(await readText(reader, followerSub)).toBe(
        `{"numParts":2,"broker":"4-s${leaderIndex === 0 ? 2 : 1}"}`,
      );

      await leader!.kill("SIGKILL");
      const killedAt = Date.now();
      const survivors = nodes.filter((node) => node !== leader);
      let newMaster: BrokerProcess | undefined;
      await waitFor("a new master", async () => {
        const data = await readText(reader, `${ids}/master`);
        newMaster = survivors.find((node) => uriOf(node) === data);
        return newMaster !== undefined;
      }, { timeoutMs: 10_000, everyMs: 50 });
      const movedMs = Date.now() - killedAt;
      expect(movedMs).toBeLessThan(5000);
      const master = (await reader.exists(`${ids}/master`))!;
      expect(master.ephemeralOwner).not.toBe(oldOwner);
      // The topics' master nodes moved with it (same session), and the new master is no slave.
      await waitFor(
        "the topic nodes to follow",
        async () =>
          (await reader.exists("/meta/brokers/topics-sub/orders/4-m"))?.ephemeralOwner ===
            master.ephemeralOwner &&
          (await reader.exists(`${ids}/slave${nodes.indexOf(newMaster!) + 1}`)) === undefined,
      );
      expect(await readText(reader, ids)).toBe(uriOf(newMaster!));
      console.log(`master moved ${movedMs} ms after the leader's SIGKILL`);
    } finally {
      for (const node of nodes) {
        await node.kill("SIGKILL");
      }
    }
  },
  120_000,
);

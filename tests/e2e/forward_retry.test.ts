/**
 * A put a follower forwarded to a leader that is then cut off (behind the link proxies) is
 * sent again to the new leader as soon as one is known: the client hears 200 well before the
 * old 10 s forwarding timeout, and the message is in the partition exactly once.
 */
import { expect, test } from "bun:test";
import { MetaqClient } from "../../lib/client/client.ts";
import { Cluster, ELECTION_TIMEOUT_MAX_MS } from "../cluster/launcher.ts";
import { clusterStatus } from "../cluster/leaders.ts";
import { blackhole } from "../cluster/link_proxy.ts";
import { Random } from "../cluster/random.ts";
import { tempDir } from "../support/temp_dir.ts";
import { eventually } from "../support/cluster_process.ts";
import { messagesThrough } from "../support/partition_reads.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { FORWARD_TIMEOUT_MS } from "../../lib/limits.ts";

const TOPIC = "forwarded";
const GROUP = `${TOPIC}-0`;

/** The leader of GROUP that every running node in `nodes` agrees on. */
async function agreedLeader(cluster: Cluster, nodes: readonly number[]): Promise<number> {
  let leader = 0;
  await eventually(`one leader of ${GROUP} on nodes ${nodes.join(",")}`, async () => {
    const seen = new Set<number | undefined>();
    for (const id of nodes) {
      const status = await clusterStatus(cluster, id);
      seen.add(status?.find((group) => group.group === GROUP)?.leader);
    }
    const [only] = seen;
    if (seen.size !== 1 || only === undefined || !nodes.includes(only)) return false;
    leader = only;
    return true;
  }, 20_000);
  return leader;
}

/** How many messages of GROUP, read through node `id`, are `payload`. */
async function copiesOf(cluster: Cluster, id: number, payload: string): Promise<number> {
  const [host, port] = cluster.address(id).split(":");
  using socket = await RawSocket.connect(Number(port), host);
  const messages = await messagesThrough(socket, TOPIC, 0);
  return messages.filter((message) => message === payload).length;
}

test(
  "a put forwarded to a leader that is cut off is answered by the new leader, once",
  async () => {
    await using temp = tempDir("metaq-forward-retry-");
    await using cluster = await Cluster.start({
      dir: temp.path,
      nodeCount: 3,
      replicated: true,
      partitions: 1,
      random: new Random(14),
      log: () => {},
    });
    // A first put opens the group; then everyone agrees who leads it.
    const warm = new MetaqClient({ brokers: [cluster.address(1)], routeToLeaders: false });
    await warm.put(TOPIC, 0, { payload: new TextEncoder().encode("warm") });
    warm.close();
    const oldLeader = await agreedLeader(cluster, [1, 2, 3]);
    const follower = [1, 2, 3].find((id) => id !== oldLeader)!;

    cluster.network.isolate(oldLeader, blackhole());
    const client = new MetaqClient({
      brokers: [cluster.address(follower)],
      routeToLeaders: false,
      requestTimeoutMs: FORWARD_TIMEOUT_MS + 5_000,
      reconnectAttemptsMax: 3,
    });
    const started = performance.now();
    const put = await client.put(TOPIC, 0, { payload: new TextEncoder().encode("cut-off") });
    const tookMs = performance.now() - started;
    client.close();
    console.log(`forwarded put answered after ${tookMs.toFixed(0)} ms (old leader ${oldLeader})`);

    expect(put.partition).toBe(0);
    // Answered by a new leader: an election (at most one timeout after contact is lost, plus a
    // vote round) and one more round trip, far below the forwarding timeout it used to wait.
    expect(tookMs).toBeLessThan(ELECTION_TIMEOUT_MAX_MS * 3);
    expect(tookMs).toBeLessThan(FORWARD_TIMEOUT_MS / 2);
    const others = [1, 2, 3].filter((id) => id !== oldLeader);
    const newLeader = await agreedLeader(cluster, others);
    expect(newLeader).not.toBe(oldLeader);

    // The old leader comes back and follows: the message is in every copy exactly once.
    cluster.network.healAll();
    await agreedLeader(cluster, [1, 2, 3]);
    for (const id of [1, 2, 3]) {
      await eventually(
        `the put on node ${id}`,
        async () => (await copiesOf(cluster, id, "cut-off")) === 1,
        15_000,
      );
      expect(await copiesOf(cluster, id, "warm")).toBe(1);
    }
  },
  90_000,
);

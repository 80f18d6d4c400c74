/**
 * Peer links through the compiled binary: three nodes with users, linked by mutual TLS and a
 * cluster secret, replicate as usual (the client authenticates on every node it talks to), while a stranger that holds the certificate but not the secret (a leaked
 * certificate) and claims a member's node id is refused, and the cluster keeps serving.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { MetaqClient } from "../../lib/client/client.ts";
import type { ClusterStatusReport } from "../../lib/cluster/status.ts";
import { TEST_TIMING_ARGS } from "../cluster/launcher.ts";
import { freePorts } from "../support/free_port.ts";
import { BrokerProcess, runMetaq } from "../support/harness.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const SECRET = "cluster-secret-7d1e9a0b5c";
const APP = { user: "app", token: "app-token-5b6c7d8e9f0a" };
const OPS = { user: "ops", token: "ops-token-1a2b3c4d5e6f" };

test("a stranger without the cluster secret cannot join the cluster or disturb it", async () => {
  await using temp = tempDir("metaq-peer-auth-");
  const tlsDir = path.join(temp.path, "tls");
  expect((await runMetaq(["cert", "--out", tlsDir])).code).toBe(0);
  const peerPorts = await freePorts(4);
  const peers = [1, 2, 3].map((id) => `${id}=127.0.0.1:${peerPorts[id - 1]}`).join(",");
  const configFor = (name: string, secret: string) => {
    const file = path.join(temp.path, `${name}.ini`);
    fs.writeFileSync(
      file,
      `[system]\nnumPartitions=3\ntlsCertFile=${tlsDir}/cert.pem\ntlsKeyFile=${tlsDir}/key.pem\n` +
        `tlsPorts=peer\nclusterSecret=${secret}\n[topic=*]\n` +
        `[user=app]\ntoken=${APP.token}\nproduce=t\nconsume=t\n` +
        `[user=ops]\ntoken=${OPS.token}\nadmin=true\n`,
    );
    return file;
  };
  const node = (id: number, name: string, secret: string, peerPort: number) =>
    BrokerProcess.start({
      dataDir: path.join(temp.path, name),
      args: [
        "--config",
        configFor(name, secret),
        "--node-id",
        String(id),
        "--peer-port",
        String(peerPort),
        "--peers",
        peers,
        ...TEST_TIMING_ARGS,
      ],
    });
  await using one = await node(1, "n1", SECRET, peerPorts[0]);
  await using two = await node(2, "n2", SECRET, peerPorts[1]);
  await using three = await node(3, "n3", SECRET, peerPorts[2]);
  // Warm up through node 1 until every partition has a leader.
  const warm = new MetaqClient({
    brokers: [one.address],
    reconnectAttemptsMax: 3,
    auth: APP,
    routeToLeaders: false,
  });
  await waitFor("every partition to take puts and have a leader", async () => {
    try {
      for (let partition = 0; partition < 3; partition++) {
        await warm.put("t", partition, { payload: new TextEncoder().encode("warm") });
      }
      const leaders = (await warm.topicMetadata("t")).leaders as Record<string, string>;
      return Object.keys(leaders ?? {}).length === 3;
    } catch {
      return false;
    }
  }, { timeoutMs: 60_000, everyMs: 200 });
  warm.close();
  // Puts go straight to each partition's leader: those connections authenticate too.
  const client = new MetaqClient({ brokers: [one.address], reconnectAttemptsMax: 3, auth: APP });
  const acked: number[] = []; // partitions of acknowledged puts
  const putOne = async (index: number) => {
    const result = await client.put("t", index % 3, {
      payload: new TextEncoder().encode(`m-${index}`),
    });
    acked.push(result.partition);
  };
  try {
    await putOne(0);
    const status = async (broker: BrokerProcess): Promise<ClusterStatusReport> => {
      const asker = new MetaqClient({
        brokers: [broker.address],
        reconnectAttemptsMax: 3,
        auth: OPS,
      });
      try {
        return JSON.parse(await asker.extension("cluster", ["status", "-"]));
      } finally {
        asker.close();
      }
    };
    // A stranger with the certificate and a wrong secret, claiming to be node 2.
    await using stranger = await node(2, "stranger", "not-the-secret-0000", peerPorts[3]);
    for (let index = 1; index <= 15; index++) {
      await putOne(index); // every put is acknowledged while the stranger tries
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await waitFor(
      "the stranger to log its refusal",
      () => (stranger.stdout + stranger.stderr).includes("did not prove the cluster secret"),
    );
    const seen = await status(stranger);
    expect(seen.nodes.filter((n) => !n.self).map((n) => n.connected)).toEqual([false, false]);
    const real = await status(one);
    expect(real.nodes.map((n) => n.connected)).toEqual([true, true, true]);
    expect(acked.length).toBe(16);
    // Plain TCP on the peer port gets no TLS, hence nothing.
    using raw = await RawSocket.connect(peerPorts[0]);
    raw.write("metaq-peer/2 2 1 00000000000000000000000000000000\r\n");
    expect(await raw.waitClosed(10_000)).toBe(true);
    const logs = one.stderr + two.stderr + three.stderr + stranger.stderr;
    for (const secret of [SECRET, APP.token, OPS.token]) expect(logs).not.toContain(secret);
    expect(one.stderr + two.stderr + three.stderr).not.toContain("not authenticated");
  } finally {
    client.close();
  }
});

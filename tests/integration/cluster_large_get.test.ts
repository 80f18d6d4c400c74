/**
 * A message larger than one pooled buffer on a three-node cluster with one copy per partition,
 * assembled in this process on 127.0.0.1 with real TCP: put through a node that does not hold
 * the partition (forwarded to its leader), then read through every node. The holder writes the
 * `value` frame piece by piece (lib/broker/frame_pool.ts); the others receive it over the peer
 * link and pass it on whole (`wholeFrame`). Every node must answer the same bytes.
 */
import { expect, test } from "bun:test";
import { metaqChecksum } from "../../lib/crc32.ts";
import { decodeRecords, RECORD_HEADER_BYTES } from "../../lib/protocol/record.ts";
import { startCluster } from "../support/cluster_in_process.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const MESSAGE_MAX = 4 * 1024 * 1024;
/** Held by node 1 with one copy per partition (placement.ts; see http_cluster.test.ts). */
const TOPIC = "clicks";

test("a 3 MiB message put through one node is read whole through every node", async () => {
  using temp = tempDir();
  await using cluster = await startCluster({
    dataPath: temp.path,
    configText: `[system]\nmaxMessageSize=${MESSAGE_MAX}\nmaxTransferSize=${
      MESSAGE_MAX + 1024
    }\n[topic=${TOPIC}]\n`,
    overrides: { replicas: "1" },
  });
  const holder = await cluster.leaderOf(TOPIC, 0);
  const others = cluster.nodes.filter((node) => node !== holder);
  await waitFor(
    "every node to know the partition's leader",
    () => cluster.nodes.every((node) => node.cluster!.leaderOf(`${TOPIC}-0`) !== undefined),
  );

  const body = new Uint8Array(3 * 1024 * 1024 + 11);
  for (let index = 0; index < body.length; index++) {
    body[index] = (index * 31 + (index >> 16)) & 0xff;
  }
  let offset = -1;
  {
    using socket = await RawSocket.connect(others[0].port);
    socket.write(`put ${TOPIC} 0 ${body.length} 0 ${metaqChecksum(body)} 1\r\n`);
    socket.write(body);
    const reply = await socket.readFrame(30_000);
    expect(`${reply.header} ${reply.body}`).toStartWith("result 200 ");
    offset = Number(reply.body.toString().split(" ")[2]);
  }
  for (const node of [holder, ...others]) {
    using socket = await RawSocket.connect(node.port);
    socket.write(`get ${TOPIC} g 0 ${offset} ${RECORD_HEADER_BYTES + body.length} 2\r\n`);
    const reply = await socket.readFrame(30_000);
    expect(reply.header, `node ${node.cluster!.nodeId}`).toBe(
      `value ${RECORD_HEADER_BYTES + body.length} 2`,
    );
    const [record] = decodeRecords(new Uint8Array(reply.body), offset, MESSAGE_MAX);
    expect(Buffer.from(record.data).equals(Buffer.from(body))).toBe(true);
  }
}, 60_000);

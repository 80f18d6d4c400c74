/**
 * Plain puts that arrive in one turn become one Raft entry on the leader, each record written
 * straight into the turn's entry (Replica.proposeWritten): the entry grows while they arrive, and
 * what every node serves afterwards must be those records, whole and in order. Three in-process
 * nodes over real TCP on 127.0.0.1.
 */
import { expect, test } from "bun:test";
import { startCluster } from "../support/cluster_in_process.ts";
import { messagesThrough } from "../support/partition_reads.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";

/** A body of `length` ASCII bytes that differs from put to put and position to position. */
function body(index: number, length: number): string {
  let text = `${index}:`;
  while (text.length < length) text += String.fromCharCode(97 + ((index + text.length) % 26));
  return text.slice(0, length);
}

test("puts of one turn, small and large, are served by every node whole and in order", async () => {
  using temp = tempDir();
  await using cluster = await startCluster({
    dataPath: temp.path,
    configText: `[system]\nnumPartitions=1\n`,
  });
  using writer = await RawSocket.connect(cluster.nodes[0].port);
  // A first put makes the topic and finds the leader (forwarded when node 1 does not lead).
  writer.write(`put turn 0 5 0 -1 1\r\nfirst`);
  expect((await writer.readFrame(10_000)).header).toStartWith("result 200 ");
  // Sizes that make the entry grow several times, one record past 64 KiB among them.
  const sizes = Array.from(
    { length: 300 },
    (_, index) => index === 150 ? 70_000 : 1 + (index * 37) % 3000,
  );
  const bodies = sizes.map((size, index) => body(index, size));
  const requests = bodies.map((text, index) =>
    `put turn 0 ${text.length} 0 -1 ${index + 2}\r\n${text}`
  );
  writer.write(requests.join("")); // one write: the leader reads them in one or a few turns
  for (let index = 0; index < bodies.length; index++) {
    const reply = await writer.readFrame(10_000);
    expect(reply.header).toStartWith("result 200 ");
  }
  for (const node of cluster.nodes) {
    using reader = await RawSocket.connect(node.port);
    const served = await messagesThrough(reader, "turn", 0);
    expect(served.length).toBe(bodies.length + 1);
    expect(served[0]).toBe("first");
    expect(served.slice(1)).toEqual(bodies);
  }
}, 60_000);

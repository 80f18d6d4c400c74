/**
 * A write acknowledged through one node of a cluster is read back at once through the others,
 * on a topic they have not seen before. A follower whose copy of the partition is brand new
 * does not know its leader yet; it used to answer "nothing here" at once, and about one read
 * in twenty right after a topic's first put found nothing (the same race failed any_node's XA
 * commit read once, under load). Three in-process nodes over real TCP on 127.0.0.1.
 */
import { expect, test } from "bun:test";
import { startCluster } from "../support/cluster_in_process.ts";
import { messagesThrough } from "../support/partition_reads.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";

const PARTITIONS = 8;
const TOPICS = 6;

test("a new topic's first put through one node is read at once through the other two", async () => {
  using temp = tempDir();
  await using cluster = await startCluster({
    dataPath: temp.path,
    configText: `[system]\nnumPartitions=${PARTITIONS}\n`,
  });
  const missed: string[] = [];
  let reads = 0;
  for (let round = 0; round < TOPICS; round++) {
    const writerIndex = round % 3;
    using writer = await RawSocket.connect(cluster.nodes[writerIndex].port);
    using second = await RawSocket.connect(cluster.nodes[(writerIndex + 1) % 3].port);
    using third = await RawSocket.connect(cluster.nodes[(writerIndex + 2) % 3].port);
    const topic = `first-put-${round}`;
    for (let partition = 0; partition < PARTITIONS; partition++) {
      const body = `${topic}/${partition}`;
      writer.write(`put ${topic} ${partition} ${body.length} 0 -1 1\r\n${body}`);
      expect((await writer.readFrame(10_000)).header).toStartWith("result 200 ");
      const seen = await Promise.all(
        [second, third].map((reader) => messagesThrough(reader, topic, partition)),
      );
      for (const [which, messages] of seen.entries()) {
        reads++;
        if (messages.length !== 1 || messages[0] !== body) {
          missed.push(`${body} through node ${((writerIndex + 1 + which) % 3) + 1}: ${messages}`);
        }
      }
    }
  }
  expect(reads).toBe(TOPICS * PARTITIONS * 2);
  expect(missed).toEqual([]);
}, 60_000);

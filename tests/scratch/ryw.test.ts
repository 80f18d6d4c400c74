import { expect, test } from "bun:test";
import { startCluster } from "../support/cluster_in_process.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";
import { consoleLogger } from "../../lib/log.ts";

test("ryw", async () => {
  await using temp = tempDir();
  await using cluster = await startCluster({ dataPath: temp.path, configText: "[system]\nnumPartitions=2\n", logger: consoleLogger("warn") });
  for (const node of cluster.nodes) {
    using socket = await RawSocket.connect(node.port);
    let fails = 0;
    for (let n = 0; n < 40; n++) {
      socket.write(`put rw-${node.cluster!.nodeId} ${n % 2} 5 0 -1 ${n}\r\nhello`);
      const put = await socket.readFrame();
      const [, p, offset] = put.body.toString().split(" ");
      const t0 = performance.now();
      socket.write(`get rw-${node.cluster!.nodeId} g ${p} ${offset} 1000 2\r\n`);
      const get = await socket.readFrame();
      const log = node.logs.get(`rw-${node.cluster!.nodeId}`, Number(p));
      if (!get.header.startsWith("value")) {
        fails++;
        const r = node.cluster!.replicaNamed(`rw-${node.cluster!.nodeId}-${p}`)!;
        console.log("raft commit", r.status().commit.offset, "acked", r.log.ackedEnd, "written", r.log.writtenEnd, "durable", r.log.durableEnd, "commitOffset", r.commitOffset);
        console.log(node.cluster!.nodeId, n, put.body.toString(), get.header, get.body.toString(), "ms", (performance.now()-t0).toFixed(1), "end", log?.endOffset, "leader", node.cluster!.leaderNodeOf(`rw-${node.cluster!.nodeId}`, Number(p)));
      }
    }
    console.log("node", node.cluster!.nodeId, "fails", fails);
  }
}, 60000);

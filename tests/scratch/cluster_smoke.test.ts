import { expect, test } from "bun:test";
import { startCluster } from "../support/cluster_in_process.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";
import { consoleLogger } from "../../lib/log.ts";

test("smoke", async () => {
  await using temp = tempDir();
  await using cluster = await startCluster({ dataPath: temp.path, configText: "[system]\nnumPartitions=2\n[topic=t]\n", logger: consoleLogger("warn") });
  await cluster.leaderOf("t", 0);
  for (const node of cluster.nodes) {
    using socket = await RawSocket.connect(node.port);
    socket.write("put t 0 5 0 -1 1\r\nhello");
    const put = await socket.readFrame();
    console.log(node.cluster!.nodeId, put.header, put.body.toString());
    const [, , offset] = put.body.toString().split(" ");
    socket.write(`get t g 0 ${offset} 1000 2\r\n`);
    const get = await socket.readFrame();
    console.log("get", get.header);
    expect(get.header).toStartWith("value");
    socket.write(`transaction TX:s:1 s BEGIN 3\r\n`);
    console.log("tx", (await socket.readFrame()).header);
    socket.write(`put t 1 2 0 -1 TX:s:1 4\r\nhi`);
    const tp = await socket.readFrame();
    console.log("txput", tp.header, tp.body.toString());
    socket.write(`transaction TX:s:1 s COMMIT_ONE_PHASE 5\r\n`);
    const c = await socket.readFrame();
    console.log("commit", c.header, c.body.toString());
  }
}, 60000);

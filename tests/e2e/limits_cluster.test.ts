/**
 * The bounds of lib/limits.ts hold together on a cluster of the compiled binary: a message of
 * the largest size any configuration allows is accepted through a follower (forwarded whole to
 * the leader), replicated to every copy, and served whole by every node.
 */
import { expect, test } from "bun:test";
import { metaqChecksum } from "../../lib/crc32.ts";
import {
  FETCH_BYTES_MAX,
  MESSAGE_BYTES_LIMIT_MAX,
  TRANSFER_BYTES_LIMIT_MAX,
} from "../../lib/limits.ts";
import { decodeRecords } from "../../lib/protocol/record.ts";
import { eventually, leaderSeenBy, startClusterProcesses } from "../support/cluster_process.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";
import * as fs from "node:fs";

test(
  "a message of the largest configurable size is forwarded, replicated and served by every node",
  async () => {
    await using temp = tempDir();
    fs.writeFileSync(
      `${temp.path}/server.ini`,
      `[system]\nmaxMessageSize=${MESSAGE_BYTES_LIMIT_MAX}\nmaxTransferSize=${TRANSFER_BYTES_LIMIT_MAX}\n`,
    );
    const nodes = await startClusterProcesses({
      dataDir: temp.path,
      // The default Raft timing (the fast test timing would call an election while three
      // processes on two cores copy 64 MiB around).
      args: [
        "--config",
        `${temp.path}/server.ini`,
        "--raft-heartbeat-ms",
        "150",
        "--raft-election-ms",
        "1000-2000",
        "--raft-check-quorum-ms",
        "900",
      ],
    });
    try {
      // The partition exists once written: a small put first, so its group has a leader.
      {
        using socket = await RawSocket.connect(nodes[0].port);
        socket.write("put huge 0 5 0 -1 1\r\nsmall");
        expect((await socket.readFrame(20_000)).header).toStartWith("result 200 ");
      }
      let leader = 0;
      await eventually("a leader of huge-0", async () => {
        leader = await leaderSeenBy(nodes[0], "huge-0");
        return leader > 0;
      });
      const follower = nodes.find((node) => !node.options.dataDir.endsWith(`/n${leader}`))!;
      const body = new Uint8Array(MESSAGE_BYTES_LIMIT_MAX);
      for (let index = 0; index < body.length; index += 4096) body[index] = index % 251;
      using socket = await RawSocket.connect(follower.port);
      socket.write(`put huge 0 ${body.length} 0 ${metaqChecksum(body)} 2\r\n`);
      socket.write(body);
      const put = await socket.readFrame(60_000);
      expect(`${put.header} ${put.body}`).toStartWith("result 200 ");
      const offset = Number(put.body.toString().split(" ")[2]);
      for (const node of nodes) {
        // The put was acknowledged by a quorum: a third node may still be receiving it, and
        // serves an offset only once it knows the entry committed.
        let got = { header: "", body: Buffer.alloc(0) };
        await eventually(`the message served by ${node.options.dataDir}`, async () => {
          using reader = await RawSocket.connect(node.port);
          reader.write(`get huge g 0 ${offset} ${FETCH_BYTES_MAX} 3\r\n`);
          got = await reader.readFrame(60_000);
          return got.header.startsWith("value ");
        }, 60_000);
        const [record] = decodeRecords(new Uint8Array(got.body), offset, MESSAGE_BYTES_LIMIT_MAX);
        expect(record.data.length).toBe(MESSAGE_BYTES_LIMIT_MAX);
        expect(metaqChecksum(record.data)).toBe(metaqChecksum(body));
      }
    } catch (error) {
      for (const node of nodes) console.error(node.options.dataDir, node.stderr.slice(-3000));
      throw error;
    } finally {
      await Promise.all(nodes.map((node) => node.kill("SIGKILL")));
    }
  },
  180_000,
);

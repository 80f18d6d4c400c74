/**
 * A cluster node never fsyncs on its event loop (lib/app/assemble.ts): that loop also carries
 * every Raft group's heartbeats, and a sync stalled by the disk would stall them all. Three nodes
 * assembled in this process on real files and real TCP, each behind a storage that counts its
 * syncs; a producer waiting for each acknowledgement (the case a single broker syncs inline when
 * the machine has room) must see only thread-pool syncs on every node.
 */
import { expect, test } from "bun:test";
import type { FileHandle, Storage } from "../../lib/store/storage.ts";
import { FileStorage } from "../../lib/store/storage_file.ts";
import { startCluster } from "../support/cluster_in_process.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";
import { wrapFile, wrapStorage } from "../support/wrap_storage.ts";

interface SyncCounts {
  pool: number;
  inline: number;
}

/** Real files whose syncs are counted by kind. */
function countingStorage(counts: SyncCounts): Storage {
  const inner = new FileStorage();
  return wrapStorage(inner, {
    open(path: string, options: { create: boolean }): FileHandle {
      const file = inner.open(path, options);
      return wrapFile(file, {
        async sync() {
          counts.pool += 1;
          await file.sync();
        },
        syncNow() {
          counts.inline += 1;
          file.syncNow!();
        },
      });
    },
  });
}

test("puts awaited one at a time on a cluster are synced on the thread pool only", async () => {
  using temp = tempDir();
  const counts: SyncCounts[] = [1, 2, 3].map(() => ({ pool: 0, inline: 0 }));
  await using cluster = await startCluster({
    dataPath: temp.path,
    configText: "[topic=single]\n",
    storage: (index) => countingStorage(counts[index]),
  });
  const leader = await cluster.leaderOf("single", 0);
  const before = counts.map((count) => ({ ...count }));
  using socket = await RawSocket.connect(leader.port);
  for (let index = 0; index < 200; index++) {
    socket.write(`put single 0 5 0 ${index}\r\nhello`);
    expect((await socket.readFrame(10_000)).header).toStartWith("result 200 ");
  }
  const synced = counts.map((count, index) => ({
    pool: count.pool - before[index].pool,
    inline: count.inline - before[index].inline,
  }));
  // Every put is synced before its ack on the leader and on a quorum of copies.
  expect(synced.reduce((sum, count) => sum + count.pool, 0)).toBeGreaterThanOrEqual(200);
  expect(synced.map((count) => count.inline)).toEqual([0, 0, 0]);
}, 60_000);

/**
 * A follower whose disk fails a write (a full disk, an fsync that returns EIO) stops its replica:
 * the log is in an unknown state past its durable end. It must not stay stopped until someone
 * restarts the node: the replica starts again from its files, as after a crash of the process,
 * and catches up once the disk takes writes again. T13 (disk full) found followers that never
 * caught up after space returned. In process, three nodes over real TCP, each with its own fsync
 * control file (METAQ_TEST_FSYNC_CONTROL's format: `eio` fails the next sync).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import type { App } from "../../lib/app/assemble.ts";
import { encodeRecord } from "../../lib/protocol/record.ts";
import type { AppendOutcome, Log } from "../../lib/store/log.ts";
import { FileStorage } from "../../lib/store/storage_file.ts";
import { instrumentStorage } from "../../lib/store/storage_journal.ts";
import { startCluster } from "../support/cluster_in_process.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const TOPIC = "diskerr";
let temp: TempDir;
let nodes: App[] = [];
const controlOf = (index: number) => path.join(temp.path, `n${index + 1}.fsync-control`);

beforeAll(async () => {
  temp = tempDir();
  const cluster = await startCluster({
    dataPath: temp.path,
    configText: "[system]\nnumPartitions=1\n",
    storage: (index) => instrumentStorage(new FileStorage(), { fsyncControl: controlOf(index) }),
  });
  nodes = cluster.nodes;
});

afterAll(async () => {
  await Promise.allSettled(nodes.map((node) => node.close()));
  temp[Symbol.dispose]();
});

function put(log: Log, id: bigint): Promise<AppendOutcome> {
  const record = encodeRecord({ id, flag: 0, data: new TextEncoder().encode(`v${id}`) });
  return new Promise((resolve) => log.appendBatch(record, 1, resolve));
}

test("a follower's replica stopped by a failed fsync starts again and catches up", async () => {
  let leader: App | undefined;
  await waitFor(`a leader for ${TOPIC}-0`, async () => {
    await Promise.all(nodes.map((node) => node.cluster?.prepare(TOPIC, 0)));
    leader = nodes.find((node) =>
      node.cluster?.leaderOf(`${TOPIC}-0`)?.nodeId === node.cluster?.nodeId
    );
    return leader !== undefined && leader.logs.get(TOPIC, 0)?.writer.ready === true;
  }, { timeoutMs: 10_000 });
  const log = leader!.logs.get(TOPIC, 0)!;
  const follower = nodes.find((node) => node !== leader)!;
  const replicaOf = () => follower.cluster!.replicas().find((r) => r.name === `${TOPIC}-0`);
  expect((await put(log, 1n)).ok).toBe(true);
  fs.writeFileSync(controlOf(nodes.indexOf(follower)), "eio");
  for (let id = 2n; id < 40n && !replicaOf()?.stopped; id++) {
    expect((await put(log, id)).ok).toBe(true); // the other two still make a quorum
  }
  // The puts need only the other two, so under load the follower may still be behind them: its
  // first sync of the appends it has fails. It stays stopped for 2 s, long enough to be seen.
  await waitFor("the follower's copy to stop", () => replicaOf()?.stopped === true, {
    timeoutMs: 10_000,
    everyMs: 5,
  });
  expect((await put(log, 100n)).ok).toBe(true);
  const target = log.endOffset;
  await waitFor("the follower's copy to start again and catch up", () => {
    const replica = replicaOf();
    return replica !== undefined && !replica.stopped && replica.log.writtenEnd >= target;
  }, { timeoutMs: 15_000 });
}, 40_000);

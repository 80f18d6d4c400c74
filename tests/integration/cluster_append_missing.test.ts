/**
 * `appendMissing` on a partition leader whose fsyncs are slow: a transaction commit's batch is
 * appended "only where missing", and its retry (the coordinator's timer completes every journalled
 * commit whose `applied` record it has not seen yet) must find the first attempt's records. With a
 * slow fsync the followers commit an entry while the leader's own segment log still queues its
 * bytes behind the sync in progress, so the records are committed but not yet readable from the
 * leader's files. T16 (slow fsync) found every such retry appending the batch a second time
 * (`duplicate` x0-51, x1-53 ... at a 50-600 ms fsync delay on the coordinator's node).
 * In process, three nodes over real TCP, each with its own fsync control file.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import type { App } from "../../lib/app/assemble.ts";
import { encodeRecord } from "../../lib/protocol/record.ts";
import type { AppendOutcome, Log } from "../../lib/store/log.ts";
import { idsOf } from "../../lib/store/missing_records.ts";
import { FileStorage } from "../../lib/store/storage_file.ts";
import { instrumentStorage } from "../../lib/store/storage_journal.ts";
import { startCluster } from "../support/cluster_in_process.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const TOPIC = "slowsync";
const FSYNC_DELAY_MS = 400;

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

function append(call: (done: (outcome: AppendOutcome) => void) => void) {
  return new Promise<AppendOutcome>((resolve) => call(resolve));
}

function batchOf(ids: bigint[]): Uint8Array {
  const records = ids.map((id) =>
    encodeRecord({ id, flag: 0, data: new TextEncoder().encode(`value-${id}`) })
  );
  const out = new Uint8Array(records.reduce((sum, record) => sum + record.length, 0));
  let at = 0;
  for (const record of records) {
    out.set(record, at);
    at += record.length;
  }
  return out;
}

/** How many records with one of `ids` the committed log holds from `from` (written). */
function countIds(log: Log, from: number, ids: bigint[]): number {
  let count = 0;
  const wanted = new Set(ids);
  for (let offset = from; offset < log.endOffset;) {
    const length = log.readableAt(offset, 1 << 20);
    if (length <= 0) break;
    const bytes = new Uint8Array(length);
    log.readInto(bytes, 0, offset, length);
    for (const id of idsOf(bytes)) if (wanted.has(id)) count++;
    offset += length;
  }
  return count;
}

test(
  "a retried appendMissing finds records its first attempt committed before the leader wrote them",
  async () => {
    let leader: App | undefined;
    await waitFor(`a leader for ${TOPIC}-0`, async () => {
      await Promise.all(nodes.map((node) => node.cluster?.prepare(TOPIC, 0)));
      leader = nodes.find((node) =>
        node.cluster?.leaderOf(`${TOPIC}-0`)?.nodeId === node.cluster?.nodeId
      );
      return leader !== undefined && leader.logs.get(TOPIC, 0)?.writer.ready === true;
    }, { timeoutMs: 10_000 });
    const log = leader!.logs.get(TOPIC, 0)!;
    const filler = await append((done) => log.appendBatch(batchOf([1n]), 1, done));
    expect(filler.ok).toBe(true);
    fs.writeFileSync(controlOf(nodes.indexOf(leader!)), `delay ${FSYNC_DELAY_MS}\n`);
    const since = log.endOffset;
    const ids = [1000n, 1001n, 1002n];
    const batch = batchOf(ids);
    // A put first, so the leader's segment log is inside a slow fsync when the batch arrives.
    void append((done) => log.appendBatch(batchOf([2n]), 1, done));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const first = await append((done) => log.appendMissing(batch, since, done));
    expect(first.ok).toBe(true);
    const second = await append((done) => log.appendMissing(batch, since, done));
    expect(second.ok).toBe(true);
    fs.writeFileSync(controlOf(nodes.indexOf(leader!)), "");
    await log.flush();
    expect(countIds(log, since, ids)).toBe(ids.length);
    if (first.ok && second.ok) expect(second.offset).toBe(first.offset);
  },
  30_000,
);

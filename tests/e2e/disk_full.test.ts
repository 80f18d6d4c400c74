/**
 * A full disk through the compiled binary: the data directory lives on a small tmpfs that the
 * test mounts (and unmounts), and a filler file takes the rest of its space. Puts, transactional
 * puts and group offset commits are refused with "storage is full" while gets keep working; once
 * the filler is gone every one of them works again by itself, and every acknowledged message is
 * intact, in the segment files and after a restart. Mounting needs root: without it the test is
 * reported as skipped, with the reason.
 */
import { expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { MetaqClient } from "../../lib/client/client.ts";
import { GroupClient } from "../../lib/client/group_client.ts";
import { type DecodedRecord, decodeRecords } from "../../lib/protocol/record.ts";
import { BrokerProcess, readPartitionBytes } from "../support/harness.ts";
import { tempDir } from "../support/temp_dir.ts";

const TMPFS_BYTES = 24 * 1024 * 1024;
const PAYLOAD_BYTES = 1024;

/** Why tmpfs cannot be mounted here, or undefined when it can (probed once, then unmounted). */
function mountProblem(): string | undefined {
  if (process.platform !== "linux") return "tmpfs mounts need Linux";
  if (process.getuid?.() !== 0) return "mounting a tmpfs needs root";
  const probe = fs.mkdtempSync("/tmp/metaq-tmpfs-probe-");
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", probe], { stdio: "pipe" });
    execFileSync("umount", [probe], { stdio: "pipe" });
    return undefined;
  } catch (error) {
    return `cannot mount a tmpfs: ${(error as Error).message.split("\n")[0]}`;
  } finally {
    fs.rmSync(probe, { recursive: true, force: true });
  }
}

const problem = mountProblem();
if (problem) console.warn(`disk_full.test.ts skipped: ${problem}`);

/** A tmpfs of `bytes` at a new directory, unmounted and removed on dispose. */
function tmpfs(bytes: number): AsyncDisposable & { path: string } {
  const dir = tempDir("metaq-tmpfs-");
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${bytes}`, "tmpfs", dir.path]);
  return {
    path: dir.path,
    [Symbol.asyncDispose]: async () => {
      for (let attempt = 0; attempt < 50; attempt++) {
        try {
          execFileSync("umount", [dir.path], { stdio: "pipe" });
          break;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 100)); // still busy: the broker is exiting
        }
      }
      dir[Symbol.dispose]();
    },
  };
}

/** Fills the file system holding `file` until a 1-byte write fails with ENOSPC. */
function fill(file: string): number {
  const fd = fs.openSync(file, "w");
  let written = 0;
  try {
    for (const size of [1 << 20, 64 << 10, 4096, 1]) {
      const chunk = new Uint8Array(size).fill(0x5a);
      for (let i = 0; i < 1_000_000; i++) {
        try {
          written += fs.writeSync(fd, chunk);
        } catch (error) {
          if ((error as { code?: string }).code !== "ENOSPC") throw error;
          break;
        }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return written;
}

function payload(index: number): Uint8Array {
  const text = `message-${index}-`;
  return new TextEncoder().encode(
    text.padEnd(PAYLOAD_BYTES, String.fromCharCode(97 + (index % 26))),
  );
}

/** Every record of t-0 read with `get`, from offset 0 to the end. */
async function readAll(client: MetaqClient): Promise<DecodedRecord[]> {
  const records: DecodedRecord[] = [];
  let offset = 0;
  for (let round = 0; round < 10_000; round++) {
    const reply = await client.get({
      topic: "t",
      group: "g",
      partition: 0,
      offset,
      maxSize: 65536,
    });
    if (reply.kind !== "records") break;
    const decoded = decodeRecords(reply.bytes, offset);
    if (decoded.length === 0) break;
    records.push(...decoded);
    const last = decoded[decoded.length - 1];
    offset = last.offset + 20 + last.data.length;
  }
  return records;
}

test.skipIf(problem !== undefined)(
  "on a full disk puts, transactions and offset commits are refused, reads go on, and writes resume when space returns",
  async () => {
    await using mount = tmpfs(TMPFS_BYTES);
    const dataDir = path.join(mount.path, "data");
    const configFile = path.join(mount.path, "..", `${path.basename(mount.path)}.ini`);
    fs.writeFileSync(configFile, "[system]\nnumPartitions=1\nmaxSegmentSize=2097152\n[topic=*]\n");
    await using broker = await BrokerProcess.start({ dataDir, args: ["--config", configFile] });
    const client = new MetaqClient({ brokers: [broker.address], reconnectAttemptsMax: 3 });
    const groups = new GroupClient(client);
    const acked = new Map<number, Uint8Array>();
    const put = async (index: number) => {
      const result = await client.put("t", 0, { payload: payload(index) });
      acked.set(result.offset, payload(index));
    };
    try {
      for (let index = 0; index < 3000; index++) await put(index); // 3 MB: two segments
      const join = await groups.join({
        group: "g",
        memberId: "m",
        topics: ["t"],
        strategy: "DEFAULT",
      });
      const member = {
        group: "g",
        memberId: "m",
        generation: join.generation,
        topic: "t",
        partition: 0,
      };
      expect(await groups.commit({ ...member, offset: 1024 })).toBe(1024);

      const filled = fill(path.join(mount.path, "filler"));
      expect(filled).toBeGreaterThan(0);
      // The last page of the active segment may have a little room left: a few puts can still
      // land there, then every put is refused with a clear error.
      let refusal: Error | undefined;
      for (let index = 3000; index < 3100 && !refusal; index++) {
        try {
          await put(index);
        } catch (error) {
          refusal = error as Error;
        }
      }
      expect(refusal?.message).toContain("Cannot write: storage is full");
      for (let index = 0; index < 5; index++) {
        await expect(client.put("t", 0, { payload: payload(9000 + index) })).rejects.toThrow(
          /storage is full/,
        );
      }
      // The offsets journal and the transaction journal too (once their last page is used up).
      let committed = 0;
      let commitRefusal: Error | undefined;
      for (let offset = 1025; offset < 1300 && !commitRefusal; offset++) {
        try {
          committed = await groups.commit({ ...member, offset });
        } catch (error) {
          commitRefusal = error as Error;
        }
      }
      expect(commitRefusal?.message).toContain("storage is full");
      expect(committed).toBeGreaterThanOrEqual(1024);
      // A transaction's puts are held in memory; its commit cannot be journalled, so it is
      // rolled back with MetaQ's answer for a commit the store could not write.
      await client.transaction({ txKey: "TX:s:1", sessionId: "s", type: "BEGIN" });
      await client.put("t", 0, { payload: payload(1) }, "TX:s:1");
      await expect(
        client.transaction({ txKey: "TX:s:1", sessionId: "s", type: "COMMIT_ONE_PHASE" }),
      ).rejects.toThrow(/STORE COMMIT FAILED: Transaction rolled back/);
      // Reads go on: every acknowledged message is served as it was written.
      const whileFull = await readAll(client);
      expect(whileFull.length).toBe(acked.size);
      for (const record of whileFull) expect(record.data).toEqual(acked.get(record.offset)!);
      expect(await client.version()).toContain("metaq");

      fs.rmSync(path.join(mount.path, "filler"));
      for (let index = 4000; index < 4050; index++) await put(index);
      expect(await groups.commit({ ...member, offset: 2048 })).toBe(2048);
      await client.transaction({ txKey: "TX:s:2", sessionId: "s", type: "BEGIN" });
      await client.put("t", 0, { payload: payload(5000) }, "TX:s:2");
      await client.transaction({ txKey: "TX:s:2", sessionId: "s", type: "COMMIT_ONE_PHASE" });
    } finally {
      client.close();
    }
    await broker.kill("SIGTERM");
    // The segment files hold exactly the acknowledged messages (and the committed transaction's),
    // back to back with valid checksums: nothing was lost, damaged or left half-written.
    const onDisk = decodeRecords(readPartitionBytes(dataDir, "t", 0), 0);
    const plain = onDisk.filter((record) => acked.has(record.offset));
    expect(plain.length).toBe(acked.size);
    for (const record of plain) expect(record.data).toEqual(acked.get(record.offset)!);
    expect(onDisk.length).toBe(acked.size + 1);
    expect(new TextDecoder().decode(onDisk[onDisk.length - 1].data)).toContain("message-5000-");
    // And the broker starts again on them, with the offset committed after the disk was freed.
    await broker.restart();
    const again = new MetaqClient({ brokers: [broker.address], reconnectAttemptsMax: 3 });
    try {
      expect((await readAll(again)).length).toBe(acked.size + 1);
      expect(await new GroupClient(again).committed("g", "t", 0)).toBe(2048);
    } finally {
      again.close();
    }
    await broker.kill("SIGTERM");
    fs.rmSync(configFile, { force: true });
  },
);

import { expect, test } from "bun:test";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { systemClock } from "../../lib/clock.ts";
import { silentLogger } from "../../lib/log.ts";
import { PartitionLog } from "../../lib/store/partition_log.ts";
import { decodeRecords } from "../../lib/protocol/record.ts";
import { FileStorage } from "../../lib/store/storage_file.ts";
import { payloadOf } from "../support/crash_payload.ts";
import { tempDir } from "../support/temp_dir.ts";

const ROUNDS = 12;
const WRITER = path.resolve(import.meta.dirname ?? ".", "../support/store_writer.ts");

/** Runs the writer until it has acknowledged something, then SIGKILLs it at a random moment. */
function writeAndKill(dir: string, resumeAt: number): Promise<{ ackedEnd: number; lastN: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, dir, "65536", String(resumeAt)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let ackedEnd = -1;
    let lastN = resumeAt;
    let output = "";
    let errors = "";
    const killAfterMs = 60 + Math.floor(Math.random() * 250);
    let killTimer: ReturnType<typeof setTimeout> | undefined;
    const guard = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.stdout.on("data", (chunk) => {
      output += chunk;
      const lines = output.split("\n");
      output = lines.pop()!;
      for (const line of lines) {
        const [kind, end, n] = line.split(" ");
        if (kind === "ack") [ackedEnd, lastN] = [Number(end), Number(n)];
        if (kind === "start" && !killTimer) {
          killTimer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
        }
      }
    });
    child.stderr.on("data", (chunk) => (errors += chunk));
    child.on("exit", (_code, signal) => {
      clearTimeout(guard);
      if (signal !== "SIGKILL") reject(new Error(`writer exited by itself: ${errors}`));
      else resolve({ ackedEnd, lastN });
    });
  });
}

test(
  "SIGKILL during group-commit writes never loses an acknowledged record nor leaves garbage",
  async () => {
    await using temp = tempDir();
    const dir = `${temp.path}/crash-0`;
    let expectedRecords = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const { ackedEnd } = await writeAndKill(dir, expectedRecords);
      const log = await PartitionLog.open({
        storage: new FileStorage(),
        dir,
        name: "crash-0",
        segmentBytesMax: 65536,
        recordDataBytesMax: 1 << 20,
        flush: { kind: "group" },
        clock: systemClock,
        logger: silentLogger,
      }, { verifyAll: true, repair: false });
      expect(log.ackedEnd).toBeGreaterThanOrEqual(ackedEnd);
      // Every record from the start is intact and in sequence: nothing lost, nothing invented.
      let offset = 0;
      let count = 0;
      while (offset < log.ackedEnd) {
        const records = decodeRecords(log.read(offset, 1 << 20), offset);
        for (const record of records) {
          expect(record.id).toBe(BigInt(count + 1));
          expect(Buffer.from(record.data).equals(Buffer.from(payloadOf(count)))).toBe(true);
          count += 1;
        }
        offset = records.at(-1)!.offset + 20 + records.at(-1)!.length;
      }
      expect(offset).toBe(log.ackedEnd);
      const onDisk = fs.readdirSync(dir).filter((name) => name.endsWith(".meta"))
        .reduce((sum, name) => sum + fs.statSync(`${dir}/${name}`).size, 0);
      expect(onDisk).toBe(log.ackedEnd); // no garbage after the last record
      await log.close();
      expectedRecords = count;
    }
    expect(expectedRecords).toBeGreaterThan(0);
  },
  180_000,
);

/**
 * RecordFile on real files: recovery of torn tails and damage, durability of appends, group
 * commit, compaction and the pid lock.
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import process from "node:process";
import { RecordFile, type RecordFileOptions } from "../../lib/client/record_file.ts";
import { BrokerError } from "../../lib/errors.ts";
import { memoryLogger, silentLogger } from "../../lib/log.ts";
import { RECORD_HEADER_BYTES } from "../../lib/protocol/record.ts";
import { tempDir } from "../support/temp_dir.ts";

/** Above Linux's largest pid_max (2^22), so no process can have it. */
const DEAD_PID = 4_194_304 + 7;

const temp = tempDir();
afterAll(() => temp[Symbol.dispose]());
let files = 0;

const bytes = (text: string) => new TextEncoder().encode(text);
const texts = (bodies: readonly Uint8Array[]) => bodies.map((b) => new TextDecoder().decode(b));

/** A path in a directory of its own that does not exist yet. */
function freshPath(): string {
  return path.join(temp.path, `file-${files++}`, "sub", "state.records");
}

function open(filePath: string, options: Partial<RecordFileOptions> = {}) {
  return RecordFile.open({ path: filePath, dataBytesMax: 1024, logger: silentLogger, ...options });
}

async function kindOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    if (error instanceof BrokerError) return error.kind;
    throw error;
  }
}

/** A file holding `bodies`, closed. */
async function fileWith(bodies: readonly string[]): Promise<string> {
  const filePath = freshPath();
  const { file } = await open(filePath);
  await file.append(bodies.map(bytes));
  await file.close();
  return filePath;
}

describe("RecordFile", () => {
  test("records appended come back in order after reopening, and appends go on after them", async () => {
    const filePath = freshPath();
    const { file, bodies } = await open(filePath);
    expect(bodies).toEqual([]);
    await file.append([bytes("one")]);
    await file.append([bytes("two"), bytes("three")]);
    expect(file.sizeBytes).toBe(fs.statSync(filePath).size);
    await file.close();
    const again = await open(filePath);
    expect(texts(again.bodies)).toEqual(["one", "two", "three"]);
    await again.file.append([bytes("four")]);
    await again.file.close();
    expect(texts((await open(filePath)).bodies)).toEqual(["one", "two", "three", "four"]);
  });

  test("an append is durable when it resolves: a copy of the disk taken then holds it", async () => {
    const filePath = freshPath();
    const { file } = await open(filePath);
    await file.append([bytes("committed")]);
    // No close: what a crash right now would leave is what the file holds.
    const copy = freshPath();
    fs.mkdirSync(path.dirname(copy), { recursive: true });
    fs.copyFileSync(filePath, copy);
    const reopened = await open(copy);
    expect(texts(reopened.bodies)).toEqual(["committed"]);
    await reopened.file.close();
    await file.close();
  });

  test("appends made while an fdatasync runs share the next one", async () => {
    const filePath = freshPath();
    const { file } = await open(filePath);
    const appends = Array.from({ length: 100 }, (_, i) => file.append([bytes(`m${i}`)]));
    await Promise.all(appends);
    // The first append starts a sync; the 99 made while it ran share the second.
    expect(file.syncCount).toBeLessThanOrEqual(2);
    await file.close();
    const { bodies } = await open(filePath);
    expect(texts(bodies)).toEqual(Array.from({ length: 100 }, (_, i) => `m${i}`));
  });

  test("a file truncated mid-record is a torn tail: it is cut, the loss logged, and appends go on", async () => {
    const filePath = await fileWith(["a", "b", "c"]);
    const size = fs.statSync(filePath).size;
    const lastRecordBytes = RECORD_HEADER_BYTES + 1;
    for (const cut of [1, RECORD_HEADER_BYTES - 3, RECORD_HEADER_BYTES]) {
      fs.truncateSync(filePath, size - lastRecordBytes + cut);
      const logger = memoryLogger();
      const { file, bodies } = await open(filePath, { logger });
      expect(texts(bodies), `cut=${cut}`).toEqual(["a", "b"]);
      expect(logger.lines.join("\n")).toContain(`verdict=torn`);
      expect(logger.lines.join("\n")).toContain(`bytesLost=${cut}`);
      expect(fs.statSync(filePath).size).toBe(size - lastRecordBytes);
      await file.append([bytes("c")]);
      await file.close();
      expect(fs.statSync(filePath).size).toBe(size);
    }
  });

  test("garbage appended after the last record is cut off at open", async () => {
    const filePath = await fileWith(["a", "b"]);
    const size = fs.statSync(filePath).size;
    fs.appendFileSync(filePath, new Uint8Array(777).fill(0x5a));
    const logger = memoryLogger();
    const { file, bodies } = await open(filePath, { logger });
    expect(texts(bodies)).toEqual(["a", "b"]);
    expect(logger.lines).toEqual([
      expect.stringMatching(/^warn Cutting record file .*bytesLost=777/),
    ]);
    expect(fs.statSync(filePath).size).toBe(size);
    await file.close();
  });

  test("damage in the middle refuses to open; with repair the file is cut there and the loss logged", async () => {
    const filePath = await fileWith(["first", "second", "third"]);
    const firstBytes = RECORD_HEADER_BYTES + "first".length;
    const damaged = fs.readFileSync(filePath);
    damaged[firstBytes + RECORD_HEADER_BYTES + 1] ^= 0xff; // inside "second"
    fs.writeFileSync(filePath, damaged);
    let refusal: unknown;
    await open(filePath).catch((error) => (refusal = error));
    expect(refusal).toBeInstanceOf(BrokerError);
    expect((refusal as BrokerError).kind).toBe("corruption");
    expect((refusal as Error).message).toMatch(
      new RegExp(`bad record checksum at byte ${firstBytes} .*open it with repair`),
    );
    expect(fs.statSync(filePath).size).toBe(damaged.length); // refused means untouched
    const logger = memoryLogger();
    const { file, bodies } = await open(filePath, { repair: true, logger });
    expect(texts(bodies)).toEqual(["first"]);
    expect(logger.lines).toEqual([
      expect.stringMatching(/^error Cutting record file .*verdict=damaged .*atByte=\d+/),
    ]);
    expect(fs.statSync(filePath).size).toBe(firstBytes);
    await file.close();
  });

  test("compaction replaces the file with the live state; appends made meanwhile land after it", async () => {
    const filePath = freshPath();
    const { file } = await open(filePath);
    for (let i = 0; i < 20; i++) await file.append([bytes(`history ${i}`)]);
    const compaction = file.compact([bytes("snapshot")]);
    const during = [file.append([bytes("after 1")]), file.append([bytes("after 2")])];
    await compaction;
    await Promise.all(during);
    expect(file.sizeBytes).toBe(fs.statSync(filePath).size);
    expect(fs.existsSync(`${filePath}.compact`)).toBe(false);
    await file.append([bytes("after 3")]);
    await file.close();
    const { file: again, bodies } = await open(filePath);
    expect(texts(bodies)).toEqual(["snapshot", "after 1", "after 2", "after 3"]);
    await again.close();
  });

  test("a compaction a crash cut short leaves the file as it was", async () => {
    const filePath = await fileWith(["kept"]);
    fs.writeFileSync(`${filePath}.compact`, new Uint8Array(50).fill(1));
    const { file, bodies } = await open(filePath);
    expect(texts(bodies)).toEqual(["kept"]);
    expect(fs.existsSync(`${filePath}.compact`)).toBe(false);
    await file.close();
  });
});

describe("RecordFile lock", () => {
  test("a locked file opens once per process; close gives the lock up", async () => {
    const filePath = freshPath();
    const { file } = await open(filePath, { lock: true });
    expect(fs.readFileSync(`${filePath}.lock`, "utf8")).toBe(`${process.pid}\n`);
    expect(await kindOf(open(filePath, { lock: true }))).toBe("conflict");
    await file.close();
    expect(fs.existsSync(`${filePath}.lock`)).toBe(false);
    const again = await open(filePath, { lock: true });
    await again.file.close();
  });

  test("a lock held by another live process refuses the open and names it", async () => {
    const filePath = freshPath();
    fs.mkdirSync(path.dirname(filePath), { recursive: true });
    fs.writeFileSync(`${filePath}.lock`, `${process.ppid}\n`);
    await expect(open(filePath, { lock: true })).rejects.toThrow(
      new RegExp(`in use by process ${process.ppid}`),
    );
    expect(fs.readFileSync(`${filePath}.lock`, "utf8")).toBe(`${process.ppid}\n`);
  });

  test("a lock left by a process that is gone, or by our own pid before a restart, is taken over", async () => {
    for (const stale of [DEAD_PID, process.pid]) {
      const filePath = freshPath();
      fs.mkdirSync(path.dirname(filePath), { recursive: true });
      fs.writeFileSync(`${filePath}.lock`, `${stale}\n`);
      const { file } = await open(filePath, { lock: true });
      expect(fs.readFileSync(`${filePath}.lock`, "utf8")).toBe(`${process.pid}\n`);
      await file.close();
    }
  });

  test("a lock that names no process is refused rather than guessed at", async () => {
    const filePath = freshPath();
    fs.mkdirSync(path.dirname(filePath), { recursive: true });
    fs.writeFileSync(`${filePath}.lock`, "");
    await expect(open(filePath, { lock: true })).rejects.toThrow(/names no process/);
  });

  test("a file refused for damage does not keep its lock", async () => {
    const filePath = await fileWith(["first", "second"]);
    const damaged = fs.readFileSync(filePath);
    damaged[RECORD_HEADER_BYTES + 1] ^= 0xff;
    fs.writeFileSync(filePath, damaged);
    expect(await kindOf(open(filePath, { lock: true }))).toBe("corruption");
    expect(fs.existsSync(`${filePath}.lock`)).toBe(false);
  });

  test("without the lock option no lock file is made", async () => {
    const filePath = freshPath();
    const { file } = await open(filePath);
    expect(fs.existsSync(`${filePath}.lock`)).toBe(false);
    await file.close();
  });
});

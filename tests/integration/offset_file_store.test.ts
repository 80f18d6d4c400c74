/**
 * The client's OffsetFileStore on real files: the OffsetStore contract, crash recovery,
 * compaction, batch limits and the lock.
 */
import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { ENTRIES_PER_RECORD_MAX, OffsetFileStore } from "../../lib/client/offset_file_store.ts";
import { BrokerError } from "../../lib/errors.ts";
import { memoryLogger, silentLogger } from "../../lib/log.ts";
import type { OffsetEntry } from "../../lib/protocol/group_wire.ts";
import { encodeRecord, RECORD_HEADER_BYTES } from "../../lib/protocol/record.ts";
import { describeOffsetStore } from "../support/offset_store_suite.ts";
import { tempDir } from "../support/temp_dir.ts";

const temp = tempDir();
afterAll(() => temp[Symbol.dispose]());
let stores = 0;

const freshPath = () => path.join(temp.path, `store-${stores++}`, "g@host", "offsets.records");
const open = (
  file: string,
  options: { repair?: boolean; logger?: ReturnType<typeof memoryLogger> } = {},
) =>
  OffsetFileStore.open({
    path: file,
    logger: options.logger ?? silentLogger,
    repair: options.repair,
  });
const at = (offset: number, partition = 0): OffsetEntry => ({
  group: "g",
  topic: "t",
  partition,
  offset,
});
const key = { group: "g", topic: "t", partition: 0 };

describeOffsetStore("client, file on real files", {
  async open() {
    const file = freshPath();
    return Object.assign(await open(file), { reopen: () => open(file) });
  },
});

test("a commit is durable when it resolves: a copy of the disk taken then has it", async () => {
  const file = freshPath();
  const store = await open(file);
  await store.commit([at(10)]);
  await store.commit([at(20)]);
  // No close: what a crash right now would leave is what the file holds.
  const copy = freshPath();
  fs.mkdirSync(path.dirname(copy), { recursive: true });
  fs.copyFileSync(file, copy);
  const recovered = await open(copy);
  expect(recovered.get(key)).toBe(20);
  await recovered.close();
  await store.close();
});

test("a commit torn by a crash is cut off, and the commits before it survive", async () => {
  const file = freshPath();
  const store = await open(file);
  await store.commit([at(10)]);
  await store.commit([at(20)]);
  await store.close();
  // A write the crash interrupted: part of a record reached the disk, its fsync never ran.
  const torn = encodeRecord({ id: 99n, flag: 0, data: new TextEncoder().encode('{"kind":"c') });
  fs.appendFileSync(file, torn.subarray(0, RECORD_HEADER_BYTES + 3));
  const logger = memoryLogger();
  const after = await open(file, { logger });
  expect(after.get(key)).toBe(20);
  expect(logger.lines.join("\n")).toContain("verdict=torn");
  await after.commit([at(25)]);
  await after.close();
  const again = await open(file);
  expect(again.get(key)).toBe(25);
  await again.close();
});

test("a damaged offsets file refuses to open; with repair it keeps what came before the damage", async () => {
  const file = freshPath();
  const store = await open(file);
  await store.commit([at(10)]);
  await store.commit([at(20)]);
  await store.commit([at(30)]);
  await store.close(); // compacted at open, so the file holds the three commits alone
  const bytes = fs.readFileSync(file);
  const secondStart = bytes.readInt32BE(0) + RECORD_HEADER_BYTES;
  bytes[secondStart + RECORD_HEADER_BYTES + 2] ^= 0xff;
  fs.writeFileSync(file, bytes);
  await expect(open(file)).rejects.toThrow(/data is corrupt: .*open it with repair/);
  const repaired = await open(file, { repair: true });
  expect(repaired.get(key)).toBe(10);
  await repaired.close();
});

test("the file is compacted as it grows, so its size follows the live state", async () => {
  const file = freshPath();
  const store = await open(file);
  const group = "g".repeat(150);
  const partitions = 4;
  const rounds = 8000;
  // Commits sent in flights share fsyncs; the file passes 1 MiB, the compaction floor.
  for (let round = 1; round <= rounds; round += 400) {
    const flight: Promise<void>[] = [];
    for (let r = round; r < round + 400; r++) {
      flight.push(store.commit([{ group, topic: "t", partition: r % partitions, offset: r }]));
    }
    await Promise.all(flight);
  }
  expect(store.sizeBytes).toBeLessThan(1024 * 1024);
  await store.close();
  const reopened = await open(file);
  expect(reopened.entries().map((e) => [e.partition, e.offset])).toEqual([
    [0, 8000],
    [1, 7997],
    [2, 7998],
    [3, 7999],
  ]);
  expect(reopened.sizeBytes).toBeLessThan(2048);
  await reopened.close();
});

test("one commit carries at most ENTRIES_PER_RECORD_MAX offsets, all or nothing", async () => {
  const store = await open(freshPath());
  const batch = (count: number) => Array.from({ length: count }, (_, p) => at(1, p));
  await expect(store.commit(batch(ENTRIES_PER_RECORD_MAX + 1))).rejects.toThrow(/more than 4096/);
  expect(store.entries()).toEqual([]);
  await store.commit(batch(ENTRIES_PER_RECORD_MAX));
  expect(store.entries().length).toBe(ENTRIES_PER_RECORD_MAX);
  await store.close();
});

test("two stores cannot share one offsets file", async () => {
  const file = freshPath();
  const store = await open(file);
  let refusal: unknown;
  await open(file).catch((error) => (refusal = error));
  expect((refusal as BrokerError).kind).toBe("conflict");
  await store.close();
  const next = await open(file);
  await next.close();
});

test("a file of records that are not offsets is refused, naming the file", async () => {
  const file = freshPath();
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, encodeRecord({ id: 1n, flag: 0, data: new TextEncoder().encode("hi") }));
  await expect(open(file)).rejects.toThrow(/is not an offsets file/);
  expect(fs.existsSync(`${file}.lock`)).toBe(false);
});

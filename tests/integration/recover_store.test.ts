/** The client's RecoverStore on real files: durability, compaction, the lock, earlier files. */
import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import process from "node:process";
import { RecoverStore } from "../../lib/client/recover_store.ts";
import { type Logger, memoryLogger, silentLogger } from "../../lib/log.ts";
import { tempDir } from "../support/temp_dir.ts";

const temp = tempDir();
afterAll(() => temp[Symbol.dispose]());
let dirs = 0;

const freshDir = () => path.join(temp.path, `recover-${dirs++}`);
const storeFile = (dir: string) => path.join(dir, "orders@billing", "recover.records");
const open = (dir: string, logger: Logger = silentLogger) =>
  RecoverStore.open({ dir, topic: "orders", group: "billing", logger });

const message = (offset: number, text: string) => ({
  partition: 2,
  offset,
  id: BigInt(1000 + offset),
  flag: 0,
  data: new TextEncoder().encode(text),
});

test("kept messages survive a crash once add resolved; removed ones stay removed", async () => {
  const dir = freshDir();
  const store = await open(dir);
  await store.add(message(0, "first"));
  await store.add(message(25, "second"));
  await store.remove("2-0");
  // No close: a copy of the disk now is what a crash would leave.
  const copy = freshDir();
  fs.mkdirSync(path.dirname(storeFile(copy)), { recursive: true });
  fs.copyFileSync(storeFile(dir), storeFile(copy));
  const reopened = await open(copy);
  const kept = reopened.list();
  expect(kept.map((m) => [m.key, m.id, new TextDecoder().decode(m.data)])).toEqual([
    ["2-25", 1025n, "second"],
  ]);
  expect(kept[0].topic).toBe("orders");
  await reopened.close();
  await store.close();
});

test("the store lives in <dir>/<topic>@<group>/ and is compacted when reopened", async () => {
  const dir = freshDir();
  const store = await open(dir);
  for (let i = 0; i < 50; i++) await store.add(message(i * 10, `m${i}`));
  for (let i = 0; i < 49; i++) await store.remove(`2-${i * 10}`);
  await store.close();
  const before = fs.statSync(storeFile(dir)).size;
  const reopened = await open(dir);
  const after = fs.statSync(storeFile(dir)).size;
  expect(reopened.size).toBe(1);
  expect(after).toBeLessThan(before / 10);
  await reopened.close();
});

test("a store compacts itself once removed messages dominate a file past 1 MiB", async () => {
  const dir = freshDir();
  const store = await open(dir);
  const payload = "x".repeat(100 * 1024);
  for (let i = 0; i < 40; i++) await store.add(message(i * 100_000, payload));
  for (let i = 0; i < 39; i++) await store.remove(`2-${i * 100_000}`);
  await store.close(); // waits for the compaction the removals started
  // Without compaction the file would hold 40 payloads (in base64, over 5 MiB).
  expect(fs.statSync(storeFile(dir)).size).toBeLessThan(10 * payload.length);
  const reopened = await open(dir);
  expect(reopened.list().map((m) => m.key)).toEqual([`2-${39 * 100_000}`]);
  await reopened.close();
});

test("a recovery store used by another live process is refused", async () => {
  const dir = freshDir();
  fs.mkdirSync(path.dirname(storeFile(dir)), { recursive: true });
  fs.writeFileSync(`${storeFile(dir)}.lock`, `${process.ppid}\n`);
  await expect(open(dir)).rejects.toThrow(/in use by process/);
});

test("a recover.log an earlier metaq wrote is logged and left as it was", async () => {
  const dir = freshDir();
  const earlier = path.join(dir, "orders@billing", "recover.log");
  fs.mkdirSync(path.dirname(earlier), { recursive: true });
  fs.writeFileSync(earlier, "journal bytes");
  const logger = memoryLogger();
  const store = await open(dir, logger);
  expect(logger.lines).toEqual([
    `warn Ignoring a file an earlier metaq wrote in another format path=${earlier}`,
  ]);
  expect(fs.readFileSync(earlier, "utf8")).toBe("journal bytes");
  await store.close();
});

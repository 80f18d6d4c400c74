import { expect, test } from "bun:test";
import * as fs from "node:fs";
import {
  partialEntryStart,
  rangesWithin,
  settleAtomicEntries,
} from "../../../lib/cluster/atomic_entries.ts";
import {
  appendAtomicEntries,
  ATOMIC_ENTRIES_FILE,
  readAtomicEntries,
  StateFileError,
  writeAtomicEntries,
} from "../../../lib/cluster/state_files.ts";
import { concatBytes } from "../../../lib/bytes.ts";
import { crc32 } from "../../../lib/crc32.ts";
import { memoryLogger } from "../../../lib/log.ts";
import { encodeRecord } from "../../../lib/protocol/record.ts";
import { segmentFileName } from "../../../lib/store/segment.ts";
import { FileStorage } from "../../../lib/store/storage_file.ts";
import { MemoryStorage } from "../../../lib/store/storage_memory.ts";
import { ascii } from "../../support/bytes.ts";
import { tempDir } from "../../support/temp_dir.ts";
import { openTestLog } from "../../support/test_log.ts";

const storage = new FileStorage();

function openLog(dir: string) {
  return openTestLog(storage, dir);
}

function record(index: number): Uint8Array {
  return encodeRecord({ id: BigInt(index), flag: 0, data: ascii(`message-${index}`) });
}

/**
 * A log of two plain records and a batch of three noted as atomic, written and synced; then
 * its segment file is cut to `keep` bytes, as a power cut that kept part of the batch leaves it.
 */
async function logWithBatch(dir: string) {
  const log = await openLog(dir);
  for (const index of [1, 2]) await log.appendEncoded(record(index), 1).done;
  const start = log.writtenEnd;
  const batch = [record(3), record(4), record(5)];
  const end = start + concatBytes(batch).length;
  await writeAtomicEntries(storage, dir, [{ start, end }]);
  await log.appendEncoded(concatBytes(batch), 3).done;
  await log.close();
  return { start, end, first: batch[0].length };
}

test("a log that a crash left inside a noted atomic entry is cut back to the entry's start", async () => {
  using temp = tempDir();
  const dir = `${temp.path}/orders-0`;
  const { start, first } = await logWithBatch(dir);
  // The first record of the batch whole, and 7 bytes of the second: recovery keeps the first.
  fs.truncateSync(`${dir}/${segmentFileName(0)}`, start + first + 7);
  const log = await openLog(dir);
  expect(log.writtenEnd).toBe(start + first);
  const logger = memoryLogger();
  const kept = await settleAtomicEntries(storage, log, logger);
  expect(log.writtenEnd).toBe(start);
  expect(kept).toEqual([]);
  expect(readAtomicEntries(storage, dir)).toEqual([]);
  expect(logger.lines.filter((line) => line.includes("Cut the part of an atomic entry")))
    .toHaveLength(1);
  await log.close();
  // The cut is durable: the log opens at the entry's start.
  const reopened = await openLog(dir);
  expect(reopened.writtenEnd).toBe(start);
  await reopened.close();
});

test("a whole atomic entry is kept with its note; a log cut before it loses only the note", async () => {
  using temp = tempDir();
  const dir = `${temp.path}/orders-0`;
  const { start, end } = await logWithBatch(dir);
  const log = await openLog(dir);
  const logger = memoryLogger();
  expect(await settleAtomicEntries(storage, log, logger)).toEqual([{ start, end }]);
  expect(log.writtenEnd).toBe(end);
  expect(logger.lines).toEqual([]);
  // Cut exactly at the entry's start (the batch never reached this disk): nothing to cut, and
  // the note of bytes the log does not hold goes before new bytes land there.
  await log.truncate(start);
  expect(await settleAtomicEntries(storage, log, logger)).toEqual([]);
  expect(log.writtenEnd).toBe(start);
  expect(readAtomicEntries(storage, dir)).toEqual([]);
  expect(logger.lines).toEqual([]);
  await log.close();
});

test("an unreadable note file is reported and replaced, and the log is left as it is", async () => {
  using temp = tempDir();
  const dir = `${temp.path}/orders-0`;
  const { start, end } = await logWithBatch(dir);
  // Damage: a bad line before a good one.
  const good = `${start} ${end}`;
  fs.writeFileSync(
    `${dir}/${ATOMIC_ENTRIES_FILE}`,
    `metaq-atomic-entries 2\n0 9 123\n${good} ${crc32(ascii(good))}\n`,
  );
  expect(() => readAtomicEntries(storage, dir)).toThrow(StateFileError);
  const log = await openLog(dir);
  const logger = memoryLogger();
  expect(await settleAtomicEntries(storage, log, logger)).toEqual([]);
  expect(log.writtenEnd).toBe(end);
  expect(logger.lines[0]).toContain("Cannot read the atomic entries of a replica");
  expect(readAtomicEntries(storage, dir)).toEqual([]);
  await log.close();
});

test("a torn last note is gone before the next note is appended", async () => {
  using temp = tempDir();
  const dir = `${temp.path}/orders-0`;
  const { start, end } = await logWithBatch(dir);
  fs.appendFileSync(`${dir}/${ATOMIC_ENTRIES_FILE}`, `${end} ${end + 50} 12`); // cut short
  const log = await openLog(dir);
  expect(await settleAtomicEntries(storage, log, memoryLogger())).toEqual([{ start, end }]);
  await appendAtomicEntries(storage, dir, [{ start: end, end: end + 80 }]);
  expect(readAtomicEntries(storage, dir)).toEqual([{ start, end }, { start: end, end: end + 80 }]);
  await log.close();
});

test("notes round-trip and survive a power cut once their fsync returned", async () => {
  const memory = new MemoryStorage();
  memory.makeDir("/d");
  await memory.syncDir("/");
  expect(readAtomicEntries(memory, "/d")).toEqual([]);
  await appendAtomicEntries(memory, "/d", [{ start: 0, end: 90 }]);
  await appendAtomicEntries(memory, "/d", [{ start: 2 ** 40, end: 2 ** 41 }]);
  memory.crash();
  expect(readAtomicEntries(memory, "/d")).toEqual([
    { start: 0, end: 90 },
    { start: 2 ** 40, end: 2 ** 41 },
  ]);
  await writeAtomicEntries(memory, "/d", [{ start: 7, end: 9 }]);
  memory.crash();
  expect(readAtomicEntries(memory, "/d")).toEqual([{ start: 7, end: 9 }]);
});

test("a note whose fsync never finished is left out, whatever the power cut left of it", async () => {
  const tails = [
    (unsynced: Uint8Array) => unsynced.subarray(0, unsynced.length - 1), // cut before its newline
    (unsynced: Uint8Array) => unsynced.subarray(0, 5),
    (unsynced: Uint8Array) => new Uint8Array(unsynced.length), // zeros
    () => ascii("12 40 77\n3 x\n\n junk"), // lines that fail their CRC
  ];
  for (const tail of tails) {
    const memory = new MemoryStorage();
    memory.makeDir("/d");
    await memory.syncDir("/");
    await appendAtomicEntries(memory, "/d", [{ start: 0, end: 90 }]);
    const file = memory.open("/d/atomic-entries", { create: false });
    file.write([ascii(`100 200 ${crc32(ascii("100 200"))}\n`)], file.size());
    file.close();
    memory.crash((_path, _bytes, unsynced) => tail(unsynced));
    expect(readAtomicEntries(memory, "/d")).toEqual([{ start: 0, end: 90 }]);
  }
});

test("a bad line before good ones, or another format, is damage", () => {
  const memory = new MemoryStorage();
  memory.makeDir("/d");
  const put = (text: string) => {
    const file = memory.open("/d/atomic-entries", { create: true });
    file.truncate(0);
    file.write([ascii(text)], 0);
    file.close();
  };
  const line = (text: string) => `${text} ${crc32(ascii(text))}\n`;
  for (const bad of ["5 5", "9 3", "-1 4", "x 4"]) {
    put(`metaq-atomic-entries 2\n${line(bad)}${line("10 20")}`);
    expect(() => readAtomicEntries(memory, "/d"), bad).toThrow(StateFileError);
    // Last, the same line is a torn tail and is left out.
    put(`metaq-atomic-entries 2\n${line("10 20")}${line(bad)}`);
    expect(readAtomicEntries(memory, "/d"), bad).toEqual([{ start: 10, end: 20 }]);
  }
  put(`metaq-atomic-entries 1\n${line("10 20")}`);
  expect(() => readAtomicEntries(memory, "/d")).toThrow(StateFileError);
  // A first write a power cut left cut short or as junk: no note of it was ever durable.
  for (const first of ["metaq-atom", `\u0000\u0000\u0000`, `x7#\n${line("10 20").slice(0, 6)}`]) {
    put(first);
    expect(readAtomicEntries(memory, "/d"), first).toEqual([]);
  }
});

test("the cut and the notes kept follow the log's start and end", () => {
  const ranges = [{ start: 100, end: 200 }, { start: 300, end: 450 }];
  expect(partialEntryStart(ranges, 0, 150)).toBe(100);
  expect(partialEntryStart(ranges, 0, 449)).toBe(300);
  // At a boundary, between entries, or before the log's start: nothing is cut.
  for (const end of [100, 200, 250, 300, 450, 500]) {
    expect(partialEntryStart(ranges, 0, end)).toBeUndefined();
  }
  expect(partialEntryStart(ranges, 120, 150)).toBeUndefined();
  expect(rangesWithin(ranges, 0, 450)).toEqual(ranges);
  expect(rangesWithin(ranges, 0, 449)).toEqual([{ start: 100, end: 200 }]);
  expect(rangesWithin(ranges, 150, 450)).toEqual([{ start: 300, end: 450 }]);
});

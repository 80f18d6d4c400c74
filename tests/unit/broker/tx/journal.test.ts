import { describe, expect, test } from "bun:test";
import { ManualClock } from "../../../../lib/clock.ts";
import { memoryLogger } from "../../../../lib/log.ts";
import { MemoryStorage } from "../../../../lib/store/storage_memory.ts";
import { JournalCorruptError, JournalWriteError, openJournal } from "../../../../lib/broker/tx/journal.ts";
import type { TxRecord } from "../../../../lib/broker/tx/journal_record.ts";
import { wrapStorage } from "../../../support/wrap_storage.ts";

const DIR = "/log/transactions";
const options = (storage: MemoryStorage | ReturnType<typeof wrapStorage>) => ({
  storage,
  dir: DIR,
  clock: new ManualClock(),
  logger: memoryLogger(),
});
const forget = (n: number): TxRecord => ({ type: "forget", key: `XID:1:0${n}:01:q` });
const keys = (records: readonly TxRecord[]) =>
  records.filter((record) => record.type === "forget").map((record) =>
    (record as { key: string }).key
  );

describe("transaction journal files", () => {
  test("a new journal is one file with a checkpoint, and appends come back after a restart", async () => {
    const storage = new MemoryStorage();
    const { journal, records } = await openJournal(options(storage));
    expect(records).toEqual([]);
    expect(storage.list(DIR)).toEqual(["00000000000000000000.txlog"]);
    journal.append([forget(1), forget(2)]);
    await journal.sync();
    storage.crash();
    const reopened = await openJournal(options(storage));
    expect(keys(reopened.records)).toEqual(["XID:1:01:01:q", "XID:1:02:01:q"]);
  });

  test("records never synced are lost by a power cut, synced ones are not", async () => {
    const storage = new MemoryStorage();
    const { journal } = await openJournal(options(storage));
    journal.append([forget(1)]);
    await journal.sync();
    journal.append([forget(2)]);
    storage.crash((_path, unsynced) => new Uint8Array(unsynced - 3).fill(0x5a));
    const reopened = await openJournal(options(storage));
    expect(keys(reopened.records)).toEqual(["XID:1:01:01:q"]);
  });

  test("a checkpoint starts a new file from the snapshot and deletes the old one once durable", async () => {
    const storage = new MemoryStorage();
    const { journal } = await openJournal(options(storage));
    journal.append([forget(1), forget(2)]);
    expect(journal.bytesSinceCheckpoint).toBeGreaterThan(0);
    await journal.checkpoint([forget(2)], 10);
    journal.append([forget(3)]);
    await journal.sync();
    expect(storage.list(DIR)).toEqual(["00000000000000000001.txlog"]);
    storage.crash();
    const reopened = await openJournal(options(storage));
    expect(keys(reopened.records)).toEqual(["XID:1:02:01:q", "XID:1:03:01:q"]);
    expect(reopened.records.find((record) => record.type === "checkpoint")).toEqual({
      type: "checkpoint",
      sequence: 1,
      nextTxNumber: 10,
    });
  });

  test("a power cut during a checkpoint falls back to the old file, which still has everything", async () => {
    const storage = new MemoryStorage();
    let stallDirSyncs = false;
    const faulty = wrapStorage(storage, {
      syncDir: (dir) => (stallDirSyncs ? new Promise<void>(() => {}) : storage.syncDir(dir)),
    });
    const { journal } = await openJournal(options(faulty));
    journal.append([forget(1), forget(2)]);
    await journal.sync();
    stallDirSyncs = true; // the new file's directory entry never becomes durable
    void journal.checkpoint([forget(2)], 5);
    let synced = false;
    journal.append([forget(3)]);
    void journal.sync().then(() => (synced = true));
    for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
    expect(synced).toBe(false); // nothing after a checkpoint is acknowledged before it is durable
    storage.crash();
    const reopened = await openJournal(options(storage));
    expect(keys(reopened.records)).toEqual(["XID:1:01:01:q", "XID:1:02:01:q"]);
    expect(storage.list(DIR)).toEqual(["00000000000000000000.txlog"]);
  });

  test("damage before the end of the file refuses the start with a way out", async () => {
    const storage = new MemoryStorage();
    const { journal } = await openJournal(options(storage));
    journal.append([forget(1), forget(2), forget(3)]);
    await journal.close();
    const path = `${DIR}/00000000000000000000.txlog`;
    const bytes = storage.readFile(path)!;
    const file = storage.open(path, { create: false });
    file.write([new Uint8Array([bytes[bytes.length - 40] ^ 0xff])], bytes.length - 40);
    await file.sync();
    const error = await openJournal(options(storage)).catch((caught) => caught);
    expect(error).toBeInstanceOf(JournalCorruptError);
    expect(String(error.message)).toContain("move the transactions directory aside");
  });

  test("a failed write leaves nothing behind and later appends still read back", async () => {
    const storage = new MemoryStorage();
    let failNext = false;
    const faulty = wrapStorage(storage, {
      open(path, flags) {
        const file = storage.open(path, flags);
        const write = file.write.bind(file);
        file.write = (chunks, position) => {
          if (!failNext) return write(chunks, position);
          failNext = false;
          write([chunks[0].subarray(0, 7)], position); // part of it lands, then the disk is full
          throw Object.assign(new Error("ENOSPC"), { code: "ENOSPC" });
        };
        return file;
      },
    });
    const { journal } = await openJournal(options(faulty));
    journal.append([forget(1)]);
    failNext = true;
    expect(() => journal.append([forget(2)])).toThrow(JournalWriteError);
    journal.append([forget(3)]);
    await journal.close();
    const reopened = await openJournal(options(storage));
    expect(keys(reopened.records)).toEqual(["XID:1:01:01:q", "XID:1:03:01:q"]);
  });
});

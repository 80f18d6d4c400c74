import { describe, expect, test } from "bun:test";
import { BrokerError } from "../../../../lib/errors.ts";
import {
  encodeEntries,
  Journal,
  JournalCorruptError,
  scanJournal,
} from "../../../../lib/broker/groups/journal.ts";
import { memoryLogger, silentLogger } from "../../../../lib/log.ts";
import type { FileHandle } from "../../../../lib/store/storage.ts";
import { MemoryStorage } from "../../../../lib/store/storage_memory.ts";
import { wrapStorage } from "../../../support/wrap_storage.ts";

const MAX = 1024;
const bodies = ["first", "second entry", "third"].map((text) => new TextEncoder().encode(text));
const texts = (list: Uint8Array[]) => list.map((body) => new TextDecoder().decode(body));

describe("scanJournal", () => {
  test("reads back every entry that was encoded", () => {
    const scan = scanJournal(encodeEntries(bodies, MAX), MAX);
    expect(texts(scan.bodies)).toEqual(["first", "second entry", "third"]);
    expect(scan.verdict).toBe("clean");
  });

  test("a last entry cut at any byte is a torn tail: the entries before it are kept", () => {
    const whole = encodeEntries(bodies, MAX);
    const lastStart = encodeEntries(bodies.slice(0, 2), MAX).length;
    for (let cut = lastStart; cut < whole.length; cut++) {
      const scan = scanJournal(whole.subarray(0, cut), MAX);
      expect([scan.verdict, scan.validBytes], `cut=${cut}`).toEqual(
        cut === lastStart ? ["clean", lastStart] : ["torn", lastStart],
      );
      expect(scan.bodies.length).toBe(2);
    }
  });

  test("junk after the last entry is a torn tail", () => {
    const whole = encodeEntries(bodies, MAX);
    const junk = new Uint8Array(40).map((_, i) => (i * 37 + 11) & 0xff);
    const scan = scanJournal(new Uint8Array([...whole, ...junk]), MAX);
    expect([scan.verdict, scan.validBytes, scan.bodies.length]).toEqual(["torn", whole.length, 3]);
  });

  test("a damaged entry with valid entries after it is corruption", () => {
    const whole = encodeEntries(bodies, MAX);
    const secondStart = encodeEntries(bodies.slice(0, 1), MAX).length;
    for (const at of [secondStart + 2, secondStart + 9, secondStart + 14]) {
      const damaged = whole.slice();
      damaged[at] ^= 0x40;
      const scan = scanJournal(damaged, MAX);
      expect([scan.verdict, scan.validBytes], `byte ${at}`).toEqual(["corrupt", secondStart]);
    }
  });
});

describe("Journal", () => {
  const path = "/j/offsets.log";

  test("appends survive reopening, in order", async () => {
    const storage = new MemoryStorage();
    const { journal } = await Journal.open({
      storage,
      path,
      bodyBytesMax: MAX,
      logger: silentLogger,
    });
    await journal.append(bodies.slice(0, 2));
    await journal.append(bodies.slice(2));
    await journal.close();
    const reopened = await Journal.open({ storage, path, bodyBytesMax: MAX, logger: silentLogger });
    expect(texts(reopened.bodies)).toEqual(["first", "second entry", "third"]);
    await reopened.journal.close();
  });

  test("a corrupt journal is refused, and --repair cuts it at the damage and says so", async () => {
    const storage = new MemoryStorage();
    storage.makeDir("/j");
    const damaged = encodeEntries(bodies, MAX);
    damaged[14] ^= 1; // inside the first body
    await storage.writeFileAtomic(path, damaged);
    const open = (repair: boolean, logger = silentLogger) =>
      Journal.open({ storage, path, bodyBytesMax: MAX, repair, logger });
    await expect(open(false)).rejects.toBeInstanceOf(JournalCorruptError);
    const logger = memoryLogger();
    const repaired = await open(true, logger);
    expect(repaired.bodies).toEqual([]);
    expect(logger.lines.join("\n")).toContain("verdict=corrupt");
    expect(repaired.journal.sizeBytes).toBe(0);
    await repaired.journal.close();
  });

  test("appends made while an fsync runs share the next one (group commit)", async () => {
    let syncs = 0;
    const storage = countingSyncs(new MemoryStorage(), () => syncs++);
    const { journal } = await Journal.open({
      storage,
      path,
      bodyBytesMax: MAX,
      logger: silentLogger,
    });
    const before = syncs;
    await Promise.all(Array.from({ length: 100 }, () => journal.append(bodies.slice(0, 1))));
    expect(syncs - before).toBeGreaterThanOrEqual(1);
    expect(syncs - before).toBeLessThanOrEqual(2);
    await journal.close();
  });

  test("after a failed fsync every append is refused", async () => {
    let fail = false;
    const storage = countingSyncs(new MemoryStorage(), () => {
      if (fail) throw Object.assign(new Error("EIO: i/o error"), { code: "EIO" });
    });
    const { journal } = await Journal.open({
      storage,
      path,
      bodyBytesMax: MAX,
      logger: silentLogger,
    });
    await journal.append(bodies.slice(0, 1));
    fail = true;
    const error = await journal.append(bodies.slice(1, 2)).catch((e) => e);
    expect(error).toBeInstanceOf(BrokerError);
    expect((error as BrokerError).kind).toBe("storageFailed");
    fail = false;
    await expect(journal.append(bodies.slice(2))).rejects.toBeInstanceOf(BrokerError);
  });

  test("a full disk refuses an append, cuts what landed, and appends again once there is room", async () => {
    let full = false;
    const inner = new MemoryStorage();
    const storage = wrapStorage(inner, {
      open(filePath, options): FileHandle {
        const file = inner.open(filePath, options);
        return {
          ...file,
          path: file.path,
          write: (chunks, position) => {
            if (!full) return file.write(chunks, position);
            file.write([chunks[0].subarray(0, 5)], position); // part of it lands, then ENOSPC
            throw Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" });
          },
          read: (target, offset, length, position) => file.read(target, offset, length, position),
          sync: () => file.sync(),
          truncate: (size) => file.truncate(size),
          size: () => file.size(),
          close: () => file.close(),
        };
      },
      writeFileAtomic: (filePath, bytes) => {
        if (full) {
          return Promise.reject(Object.assign(new Error("ENOSPC"), { code: "ENOSPC" }));
        }
        return inner.writeFileAtomic(filePath, bytes);
      },
    });
    const { journal } = await Journal.open({
      storage,
      path,
      bodyBytesMax: MAX,
      logger: silentLogger,
    });
    await journal.append(bodies.slice(0, 1));
    full = true;
    const error = await journal.append(bodies.slice(1, 2)).catch((e) => e);
    expect((error as BrokerError).kind).toBe("storageFull");
    expect((await journal.compact(bodies.slice(0, 1)).catch((e) => e)).kind).toBe("storageFull");
    full = false;
    await journal.append(bodies.slice(2));
    await journal.close();
    const reopened = await Journal.open({ storage, path, bodyBytesMax: MAX, logger: silentLogger });
    expect(texts(reopened.bodies)).toEqual(["first", "third"]);
    await reopened.journal.close();
  });

  test("appends made during a compaction land in the new file", async () => {
    const storage = new MemoryStorage();
    const { journal } = await Journal.open({
      storage,
      path,
      bodyBytesMax: MAX,
      logger: silentLogger,
    });
    await journal.append(bodies);
    const compaction = journal.compact(bodies.slice(2));
    const appended = journal.append(bodies.slice(0, 1));
    await Promise.all([compaction, appended]);
    await journal.close();
    storage.crash();
    const reopened = await Journal.open({ storage, path, bodyBytesMax: MAX, logger: silentLogger });
    expect(texts(reopened.bodies)).toEqual(["third", "first"]);
    await reopened.journal.close();
  });
});

/** Wraps every file's sync with `onSync` (which may throw to fail it). */
function countingSyncs(inner: MemoryStorage, onSync: () => void) {
  return wrapStorage(inner, {
    open(filePath, options): FileHandle {
      const file = inner.open(filePath, options);
      return {
        path: file.path,
        write: (chunks, position) => file.write(chunks, position),
        read: (target, offset, length, position) => file.read(target, offset, length, position),
        sync: async () => {
          await Promise.resolve();
          onSync();
          await file.sync();
        },
        truncate: (size) => file.truncate(size),
        size: () => file.size(),
        close: () => file.close(),
      };
    },
  });
}

import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { ManualClock, systemClock } from "../../../lib/clock.ts";
import { parseDeletePolicy } from "../../../lib/config/retention_policy.ts";
import { memoryLogger, silentLogger } from "../../../lib/log.ts";
import {
  CorruptLogError,
  type FlushPolicy,
  PartitionLog,
} from "../../../lib/store/partition_log.ts";
import { decodeRecords, encodeRecord } from "../../../lib/protocol/record.ts";
import { findIds } from "../../../lib/store/missing_records.ts";
import { applyRetention } from "../../../lib/store/retention.ts";
import type { FileHandle, Storage } from "../../../lib/store/storage.ts";
import { FileStorage } from "../../../lib/store/storage_file.ts";
import { segmentFileName } from "../../../lib/store/segment.ts";
import { MemoryStorage } from "../../../lib/store/storage_memory.ts";
import { ascii, text } from "../../support/bytes.ts";
import { tempDir } from "../../support/temp_dir.ts";
import { wrapStorage } from "../../support/wrap_storage.ts";

interface Fixture {
  storage: Storage;
  dir: string;
  crash?: (torn?: Uint8Array) => void;
  cleanup(): void;
}

const kinds: Record<string, () => Fixture> = {
  memory: () => {
    const storage = new MemoryStorage();
    return {
      storage,
      dir: "/data/orders-0",
      crash: (torn) => storage.crash(torn ? () => torn : undefined),
      cleanup() {},
    };
  },
  file: () => {
    const temp = tempDir();
    return {
      storage: new FileStorage(),
      dir: `${temp.path}/orders-0`,
      cleanup: () => temp[Symbol.dispose](),
    };
  },
};

function openLog(
  fixture: Fixture,
  options: {
    segmentBytesMax?: number;
    flush?: FlushPolicy;
    repair?: boolean;
    verifyAll?: boolean;
  } = {},
) {
  const logger = memoryLogger();
  return PartitionLog.open({
    storage: fixture.storage,
    dir: fixture.dir,
    name: "orders-0",
    segmentBytesMax: options.segmentBytesMax ?? 1024 * 1024,
    recordDataBytesMax: 1024 * 1024,
    flush: options.flush ?? { kind: "group" },
    clock: systemClock,
    logger,
  }, { verifyAll: options.verifyAll ?? true, repair: options.repair ?? false }).then((log) => ({
    log,
    logger,
  }));
}

const message = (i: number) => ({
  id: BigInt(i + 1),
  flag: 0,
  data: ascii(`message-${String(i).padStart(4, "0")}`),
});
const RECORD_BYTES = 20 + "message-0000".length;

async function appendMany(log: PartitionLog, count: number, from = 0) {
  const tickets = Array.from({ length: count }, (_, i) => log.appendRecord(message(from + i)));
  await Promise.all(tickets.map((ticket) => ticket.done));
  return tickets;
}

function readAll(log: PartitionLog): string[] {
  const bodies: string[] = [];
  let offset = log.startOffset;
  while (offset < log.ackedEnd) {
    const bytes = log.read(offset, 64 * 1024);
    const records = decodeRecords(bytes, offset);
    expect(records.length).toBeGreaterThan(0);
    for (const record of records) bodies.push(text(record.data));
    offset = records[records.length - 1].offset + 20 + records[records.length - 1].length;
  }
  return bodies;
}

/** Memory storage whose files pass through `patch` when opened (fault injection). */
function memoryWithFiles(patch: (file: FileHandle) => void): Storage {
  const memory = new MemoryStorage();
  return wrapStorage(memory, {
    open: (path: string, options: { create: boolean }) => {
      const file = memory.open(path, options);
      patch(file);
      return file;
    },
  });
}

/** Memory storage whose writes fail with ENOSPC while `full()` says so. */
function writesFailWhen(full: () => boolean): Storage {
  return memoryWithFiles((file) => {
    const write = file.write.bind(file);
    file.write = (chunks, position) => {
      if (full()) {
        throw Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" });
      }
      write(chunks, position);
    };
  });
}

for (const [kind, make] of Object.entries(kinds)) {
  describe(`partition log on ${kind} storage`, () => {
    test("appends get byte offsets and read back byte-identical", async () => {
      const fixture = make();
      try {
        const { log } = await openLog(fixture);
        const tickets = await appendMany(log, 3);
        expect(tickets.map((t) => t.offset)).toEqual([0, RECORD_BYTES, 2 * RECORD_BYTES]);
        expect(log.ackedEnd).toBe(3 * RECORD_BYTES);
        const bytes = log.read(RECORD_BYTES, 1024);
        expect(bytes).toEqual(
          encodeRecord(message(1)).length === RECORD_BYTES
            ? new Uint8Array([...encodeRecord(message(1)), ...encodeRecord(message(2))])
            : bytes,
        );
        await log.close();
      } finally {
        fixture.cleanup();
      }
    });

    test("a held writer gives appends their offsets but writes nothing until every hold is released", async () => {
      const fixture = make();
      try {
        const { log } = await openLog(fixture);
        await appendMany(log, 1);
        const releaseFirst = log.hold();
        const releaseSecond = log.hold();
        const held = log.appendRecord(message(1));
        expect(held.offset).toBe(RECORD_BYTES);
        let acknowledged = false;
        void held.done.then(() => (acknowledged = true));
        for (let turn = 0; turn < 10; turn++) await new Promise((resolve) => setImmediate(resolve));
        expect([acknowledged, log.writtenEnd]).toEqual([false, RECORD_BYTES]);
        releaseFirst();
        releaseFirst(); // releasing twice is harmless
        for (let turn = 0; turn < 10; turn++) await new Promise((resolve) => setImmediate(resolve));
        expect([acknowledged, log.writtenEnd]).toEqual([false, RECORD_BYTES]);
        releaseSecond();
        await held.done;
        expect(log.ackedEnd).toBe(2 * RECORD_BYTES);
        await log.close();
      } finally {
        fixture.cleanup();
      }
    });

    for (
      const flush of [
        { kind: "group" },
        { kind: "threshold", messages: 1000, intervalMs: 60_000 },
      ] as FlushPolicy[]
    ) {
      test(`a batch's appenders hear before the readers waiting for data (${flush.kind} flush)`, async () => {
        // A producer waits on its ack; a long-polling reader's answer can follow it. Readers told
        // first sent their (larger) answers ahead of every ack of the batch.
        const fixture = make();
        try {
          const { log } = await openLog(fixture, { flush });
          const heard: string[] = [];
          const stop = log.onAppend((end) => heard.push(`reader sees ${end}`));
          const done = Promise.all(
            [0, 1].map((i) =>
              new Promise<void>((resolve, reject) =>
                log.append(message(i), (error) => {
                  heard.push(`appender ${i}`);
                  if (error) reject(error);
                  else resolve();
                })
              )
            ),
          );
          await done;
          await log.flush();
          stop();
          expect(heard).toEqual(["appender 0", "appender 1", `reader sees ${2 * RECORD_BYTES}`]);
          await log.close();
        } finally {
          fixture.cleanup();
        }
      });
    }

    test("group commit acknowledges a burst of appends with few syncs", async () => {
      const fixture = make();
      try {
        const { log } = await openLog(fixture);
        await appendMany(log, 1000);
        expect(log.syncCount).toBeLessThanOrEqual(2);
        expect(log.messageCount).toBe(1000);
        await log.close();
      } finally {
        fixture.cleanup();
      }
    });

    test("a record is not readable before its append is acknowledged", async () => {
      const fixture = make();
      try {
        const { log } = await openLog(fixture);
        const ticket = log.appendRecord(message(0));
        expect(log.ackedEnd).toBe(0);
        await ticket.done;
        expect(log.ackedEnd).toBe(RECORD_BYTES);
        await log.close();
      } finally {
        fixture.cleanup();
      }
    });

    test("a batch crossing the segment size is cut where its records one by one would roll", async () => {
      const fixture = make();
      try {
        const { log } = await openLog(fixture, { segmentBytesMax: 4096 });
        await appendMany(log, 7); // a batch that starts part-way into a segment
        const batch = (from: number, count: number) =>
          new Uint8Array(
            Array.from({ length: count }, (_, i) => [...encodeRecord(message(from + i))]).flat(),
          );
        // One batch of 493 records (more than three segments' worth) and one of 300 more.
        await Promise.all([
          log.appendEncoded(batch(7, 493), 493).done,
          log.appendEncoded(batch(500, 300), 300).done,
        ]);
        const perSegment = Math.ceil(4096 / RECORD_BYTES);
        const starts = log.segmentStarts;
        expect(starts).toEqual(
          Array.from(
            { length: Math.ceil(800 / perSegment) },
            (_, i) => i * perSegment * RECORD_BYTES,
          ),
        );
        expect(readAll(log)).toEqual(Array.from({ length: 800 }, (_, i) => text(message(i).data)));
        await log.close();
        const { log: reopened } = await openLog(fixture, { segmentBytesMax: 4096 });
        expect(reopened.segmentStarts).toEqual(starts);
        expect(reopened.ackedEnd).toBe(800 * RECORD_BYTES);
        await reopened.close();
      } finally {
        fixture.cleanup();
      }
    });

    test("segments roll at the size limit and reads never cross a segment", async () => {
      const fixture = make();
      try {
        const { log } = await openLog(fixture, { segmentBytesMax: 4096 });
        await appendMany(log, 500);
        const perSegment = Math.ceil(4096 / RECORD_BYTES);
        expect(log.segmentStarts.slice(0, 3)).toEqual([
          0,
          perSegment * RECORD_BYTES,
          2 * perSegment * RECORD_BYTES,
        ]);
        const boundary = perSegment * RECORD_BYTES;
        expect(log.read(boundary - RECORD_BYTES, 1_000_000).length).toBe(RECORD_BYTES);
        expect(log.segmentStartFor(boundary + 5)).toBe(boundary);
        expect(log.segmentStartFor(-1)).toBe(0);
        expect(log.segmentStartFor(10 ** 12)).toBe(log.ackedEnd);
        expect(readAll(log)).toEqual(Array.from({ length: 500 }, (_, i) => text(message(i).data)));
        await log.close();
        const names = fixture.storage.list(fixture.dir).filter((name) => name.endsWith(".meta"));
        expect(names[1]).toBe(`${String(boundary).padStart(20, "0")}.meta`);
      } finally {
        fixture.cleanup();
      }
    });

    test("reopening a cleanly closed log keeps every record", async () => {
      const fixture = make();
      try {
        const first = await openLog(fixture, { segmentBytesMax: 4096 });
        await appendMany(first.log, 300);
        await first.log.close();
        const second = await openLog(fixture, { segmentBytesMax: 4096 });
        expect(second.log.ackedEnd).toBe(300 * RECORD_BYTES);
        expect(second.log.recovery.bytesCut).toBe(0);
        expect(second.log.recovery.lastId).toBe(300n);
        const more = second.log.appendRecord(message(300));
        expect(more.offset).toBe(300 * RECORD_BYTES);
        await more.done;
        expect(readAll(second.log).length).toBe(301);
        await second.log.close();
      } finally {
        fixture.cleanup();
      }
    });

    test("a torn tail is cut at the last valid record and the cut is logged", async () => {
      const fixture = make();
      try {
        const first = await openLog(fixture);
        await appendMany(first.log, 10);
        await first.log.close();
        const active = `${fixture.dir}/${"0".repeat(20)}.meta`;
        const file = fixture.storage.open(active, { create: false });
        file.write([encodeRecord(message(10)).subarray(0, 17)], 10 * RECORD_BYTES);
        file.close();
        const second = await openLog(fixture);
        expect(second.log.ackedEnd).toBe(10 * RECORD_BYTES);
        expect(second.log.recovery.bytesCut).toBe(17);
        expect(
          second.logger.lines.some((line) =>
            line.includes("Cut torn tail") && line.includes("bytesCut=17")
          ),
        ).toBe(true);
        expect(fixture.storage.stat(active)?.size).toBe(10 * RECORD_BYTES);
        await second.log.close();
      } finally {
        fixture.cleanup();
      }
    });

    test("a zero-filled tail is cut, not read as records", async () => {
      const fixture = make();
      try {
        const first = await openLog(fixture);
        await appendMany(first.log, 5);
        await first.log.close();
        const file = fixture.storage.open(`${fixture.dir}/${"0".repeat(20)}.meta`, {
          create: false,
        });
        file.write([new Uint8Array(8192)], 5 * RECORD_BYTES);
        file.close();
        const second = await openLog(fixture);
        expect(second.log.ackedEnd).toBe(5 * RECORD_BYTES);
        expect(second.log.messageCount).toBe(5);
        await second.log.close();
      } finally {
        fixture.cleanup();
      }
    });

    test("corruption in a sealed segment refuses to open, and repair cuts there keeping a copy", async () => {
      const fixture = make();
      try {
        const first = await openLog(fixture, { segmentBytesMax: 4096 });
        await appendMany(first.log, 400);
        const [, second, third] = first.log.segmentStarts;
        await first.log.close();
        const sealedPath = `${fixture.dir}/${String(second).padStart(20, "0")}.meta`;
        const file = fixture.storage.open(sealedPath, { create: false });
        const byte = new Uint8Array(1);
        file.read(byte, 0, 1, RECORD_BYTES * 3 + 25);
        byte[0] ^= 0x10;
        file.write([byte], RECORD_BYTES * 3 + 25);
        file.close();
        const refused = openLog(fixture, { segmentBytesMax: 4096 });
        expect(refused).rejects.toBeInstanceOf(CorruptLogError);
        await refused.catch((error) => {
          expect(error.message).toContain(`at offset ${second + 3 * RECORD_BYTES}`);
          expect(error.message).toContain("metaq verify --repair");
        });
        const repaired = await openLog(fixture, { segmentBytesMax: 4096, repair: true });
        expect(repaired.log.ackedEnd).toBe(second + 3 * RECORD_BYTES);
        expect(repaired.log.recovery.repairedAt).toBe(second + 3 * RECORD_BYTES);
        const names = fixture.storage.list(fixture.dir);
        expect(names).toContain(`${String(second).padStart(20, "0")}.meta.damaged`);
        expect(names).toContain(`${String(third).padStart(20, "0")}.meta.damaged`);
        expect(readAll(repaired.log).length).toBe((second + 3 * RECORD_BYTES) / RECORD_BYTES);
        await repaired.log.close();
      } finally {
        fixture.cleanup();
      }
    });

    test("truncate cuts back to a record boundary across segments and appends continue there", async () => {
      const fixture = make();
      try {
        const { log } = await openLog(fixture, { segmentBytesMax: 4096 });
        await appendMany(log, 300);
        await log.truncate(50 * RECORD_BYTES);
        expect(log.ackedEnd).toBe(50 * RECORD_BYTES);
        expect(log.segmentStarts.length).toBe(1);
        const next = log.appendRecord(message(999));
        expect(next.offset).toBe(50 * RECORD_BYTES);
        await next.done;
        await log.close();
        const reopened = await openLog(fixture, { segmentBytesMax: 4096 });
        expect(readAll(reopened.log).at(-1)).toBe("message-0999");
        await reopened.log.close();
      } finally {
        fixture.cleanup();
      }
    });

    test("while a truncation waits for its fsync, the log already ends at the cut (a scan for ids stays inside it)", async () => {
      const fixture = make();
      let syncGate: PromiseWithResolvers<void> | undefined;
      let syncEntered = Promise.withResolvers<void>();
      const storage = wrapStorage(fixture.storage, {
        open(path, options) {
          const file = fixture.storage.open(path, options);
          return new Proxy(file, {
            get(target, property) {
              if (property === "sync" && syncGate) {
                const gate = syncGate.promise;
                return async () => {
                  syncEntered.resolve();
                  await gate;
                  await target.sync();
                };
              }
              const value = target[property as keyof FileHandle];
              return typeof value === "function" ? value.bind(target) : value;
            },
          });
        },
      });
      try {
        const { log } = await openLog({ ...fixture, storage });
        await appendMany(log, 300);
        syncGate = Promise.withResolvers<void>();
        syncEntered = Promise.withResolvers<void>();
        const cut = log.truncate(50 * RECORD_BYTES);
        await syncEntered.promise; // the segment is cut; its fsync is held
        expect(log.writtenEnd).toBe(50 * RECORD_BYTES);
        // The scan appendMissing runs (T08 found a node exit: it read past the cut segment).
        const wanted = new Set([BigInt(46), BigInt(200)]);
        expect([...findIds(log, 40 * RECORD_BYTES, wanted).keys()]).toEqual([BigInt(46)]);
        const gate = syncGate;
        syncGate = undefined;
        gate.resolve();
        await cut;
        expect(log.durableEnd).toBe(50 * RECORD_BYTES);
        await log.close();
      } finally {
        fixture.cleanup();
      }
    });

    test("resetTo at the log's own start empties it and keeps one handle on its file", async () => {
      const fixture = make();
      try {
        const { log } = await openLog(fixture);
        await appendMany(log, 10);
        await log.resetTo(0);
        expect([log.startOffset, log.ackedEnd]).toEqual([0, 0]);
        await appendMany(log, 3, 20);
        expect(readAll(log)).toEqual(["message-0020", "message-0021", "message-0022"]);
        if (kind === "file") {
          // The handle opened before the reset closed: one descriptor names the file.
          const path = `${fixture.dir}/${segmentFileName(0)}`;
          const open = fs.readdirSync("/proc/self/fd").filter((fd) => {
            try {
              return fs.readlinkSync(`/proc/self/fd/${fd}`) === path;
            } catch {
              return false;
            }
          });
          expect(open).toHaveLength(1);
        }
        await log.close();
      } finally {
        fixture.cleanup();
      }
    });

    test("resetTo starts an empty log at a later offset", async () => {
      const fixture = make();
      try {
        const { log } = await openLog(fixture);
        await appendMany(log, 10);
        await log.resetTo(1_000_000);
        expect([log.startOffset, log.ackedEnd]).toEqual([1_000_000, 1_000_000]);
        const ticket = log.appendRecord(message(1));
        expect(ticket.offset).toBe(1_000_000);
        await ticket.done;
        await log.close();
        const reopened = await openLog(fixture);
        expect(reopened.log.startOffset).toBe(1_000_000);
        expect(reopened.log.ackedEnd).toBe(1_000_000 + RECORD_BYTES);
        await reopened.log.close();
      } finally {
        fixture.cleanup();
      }
    });

    test("retention deletes old sealed segments from the front and never the active one", async () => {
      const fixture = make();
      try {
        const { log } = await openLog(fixture, { segmentBytesMax: 4096 });
        await appendMany(log, 400);
        const starts = log.segmentStarts;
        const now = Date.now();
        for (const start of starts) {
          fixture.storage.setModifiedTime(
            `${fixture.dir}/${String(start).padStart(20, "0")}.meta`,
            now - 10 * 3_600_000,
          );
        }
        // The second segment is recent: retention stops there even though later ones are old.
        fixture.storage.setModifiedTime(
          `${fixture.dir}/${String(starts[1]).padStart(20, "0")}.meta`,
          now,
        );
        const policy = parseDeletePolicy("delete,1h");
        const first = await applyRetention(log, {
          policy,
          nowMs: now,
          storage: fixture.storage,
          logger: silentLogger,
        });
        expect(first).toEqual({
          removedSegments: 1,
          removedBytes: starts[1],
          newStartOffset: starts[1],
        });
        fixture.storage.setModifiedTime(
          `${fixture.dir}/${String(starts[1]).padStart(20, "0")}.meta`,
          now - 36_000_000,
        );
        const second = await applyRetention(log, {
          policy,
          nowMs: now,
          storage: fixture.storage,
          logger: silentLogger,
        });
        expect(second.newStartOffset).toBe(starts[starts.length - 1]);
        expect(log.segmentStarts).toEqual([starts[starts.length - 1]]);
        expect(fixture.storage.list(fixture.dir).filter((n) => n.endsWith(".meta")).length).toBe(1);
        await log.close();
      } finally {
        fixture.cleanup();
      }
    });

    test("a held range stays readable after retention deletes its segment, until released", async () => {
      const fixture = make();
      try {
        const { log } = await openLog(fixture, { segmentBytesMax: 4096 });
        await appendMany(log, 400);
        const starts = log.segmentStarts;
        const length = log.readableAt(0, 64 * 1024);
        const expected = log.read(0, length);
        const held = log.holdRange(0, length);
        const other = log.holdRange(starts[1], RECORD_BYTES);
        const result = await applyRetention(log, {
          policy: parseDeletePolicy("delete,0s"),
          nowMs: Date.now() + 1000,
          storage: fixture.storage,
          logger: silentLogger,
        });
        expect(result.removedSegments).toBe(starts.length - 1);
        expect(fixture.storage.stat(`${fixture.dir}/${segmentFileName(0)}`)).toBeUndefined();
        // The log no longer reads there; the held range still does, from its deleted file.
        expect(() => log.readInto(new Uint8Array(length), 0, 0, length)).toThrow();
        const bytes = new Uint8Array(length);
        held.readInto(bytes, 0, 0, length);
        expect(bytes).toEqual(expected);
        const tail = new Uint8Array(RECORD_BYTES);
        held.readInto(tail, 0, length - RECORD_BYTES, RECORD_BYTES);
        expect(tail).toEqual(expected.subarray(length - RECORD_BYTES));
        held.release();
        held.release(); // idempotent: the other segment's hold is not touched
        expect(() => held.readInto(bytes, 0, 0, length)).toThrow(/released/);
        const first = new Uint8Array(RECORD_BYTES);
        other.readInto(first, 0, 0, RECORD_BYTES);
        expect(decodeRecords(first, starts[1])).toHaveLength(1);
        other.release();
        await log.close();
      } finally {
        fixture.cleanup();
      }
    });

    test("archive retention keeps segments as .arc files that reopening ignores", async () => {
      const fixture = make();
      try {
        const { log } = await openLog(fixture, { segmentBytesMax: 4096 });
        await appendMany(log, 200);
        const starts = log.segmentStarts;
        const result = await applyRetention(log, {
          policy: parseDeletePolicy("archive,0s"),
          nowMs: Date.now() + 1000,
          storage: fixture.storage,
          logger: silentLogger,
        });
        expect(result.removedSegments).toBe(starts.length - 1);
        await log.close();
        const names = fixture.storage.list(fixture.dir);
        expect(names.filter((n) => n.endsWith(".arc")).length).toBe(starts.length - 1);
        const reopened = await openLog(fixture, { segmentBytesMax: 4096 });
        expect(reopened.log.startOffset).toBe(starts[starts.length - 1]);
        await reopened.log.close();
      } finally {
        fixture.cleanup();
      }
    });

    test("threshold flushing acknowledges before syncing and syncs by count", async () => {
      const fixture = make();
      try {
        const { log } = await openLog(fixture, {
          flush: { kind: "threshold", messages: 1000, intervalMs: 60_000 },
        });
        await appendMany(log, 10);
        expect(log.ackedEnd).toBe(10 * RECORD_BYTES);
        expect(log.durableEnd).toBe(0);
        await appendMany(log, 1000, 10);
        expect(log.durableEnd).toBe(1010 * RECORD_BYTES);
        await log.close();
      } finally {
        fixture.cleanup();
      }
    });
  });
}

describe("partition log crash recovery (memory storage power-cut model)", () => {
  test("every acknowledged record survives a power cut, across segment rolls", async () => {
    const fixture = kinds.memory();
    const { log } = await openLog(fixture, { segmentBytesMax: 2048 });
    await appendMany(log, 200);
    const unacked = log.appendRecord(message(200)); // written maybe, never synced
    void unacked.done;
    fixture.crash!(new Uint8Array(13).fill(0xab));
    const { log: reopened } = await openLog(fixture, { segmentBytesMax: 2048 });
    const bodies = readAll(reopened);
    expect(bodies.slice(0, 200)).toEqual(
      Array.from({ length: 200 }, (_, i) => text(message(i).data)),
    );
    expect(bodies.length).toBeLessThanOrEqual(201);
  });

  test("a segment whose directory entry was never synced vanishes without losing acknowledged data", async () => {
    const memory = new MemoryStorage();
    let holdDirSync = false;
    // Directory syncs hang once armed: the rolled segment's entry never becomes durable.
    const storage = wrapStorage(memory, {
      syncDir: (dir: string) => (holdDirSync ? new Promise<void>(() => {}) : memory.syncDir(dir)),
    });
    const fixture: Fixture = { storage, dir: "/data/orders-0", cleanup() {} };
    const { log } = await openLog(fixture, { segmentBytesMax: 2048 });
    const perSegment = Math.ceil(2048 / RECORD_BYTES);
    await appendMany(log, perSegment);
    holdDirSync = true;
    const stuck = log.appendRecord(message(perSegment)); // needs a roll: never acknowledged
    let acknowledged = false;
    void stuck.done.then(() => (acknowledged = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(acknowledged).toBe(false);
    expect(memory.list("/data/orders-0").length).toBe(2);
    memory.crash();
    expect(memory.list("/data/orders-0").length).toBe(1);
    holdDirSync = false;
    const { log: reopened } = await openLog({ ...fixture, storage: memory });
    expect(reopened.ackedEnd).toBe(perSegment * RECORD_BYTES);
    expect(readAll(reopened).length).toBe(perSegment);
  });

  test("a segment a killed roll left unsynced is made durable at reopen, before appends into it count", async () => {
    const memory = new MemoryStorage();
    const fixture: Fixture = { storage: memory, dir: "/data/orders-0", cleanup() {} };
    const { log } = await openLog(fixture, { segmentBytesMax: 2048 });
    await appendMany(log, 10);
    const end = 10 * RECORD_BYTES;
    // The process is killed in the middle of a roll: the next segment's file exists (the page
    // cache keeps it), its directory entry was never synced.
    memory.open(`/data/orders-0/${segmentFileName(end)}`, { create: true });
    const { log: reopened } = await openLog(fixture, { segmentBytesMax: 2048 });
    await appendMany(reopened, 5, 10);
    expect(reopened.ackedEnd).toBe(15 * RECORD_BYTES);
    // Then the power goes: the five acknowledged records must still be there.
    memory.crash();
    const { log: afterPowerCut } = await openLog(fixture, { segmentBytesMax: 2048 });
    expect(readAll(afterPowerCut)).toEqual(
      Array.from({ length: 15 }, (_, i) => text(message(i).data)),
    );
  });

  test("a failed write is refused, cut back, and later appends succeed when space returns", async () => {
    let full = false;
    const storage = writesFailWhen(() => full);
    const { log } = await openLog({ storage, dir: "/data/orders-0", cleanup() {} });
    await appendMany(log, 5);
    full = true;
    const refused = log.appendRecord(message(5));
    await expect(refused.done).rejects.toMatchObject({ kind: "storageFull" });
    expect(log.ackedEnd).toBe(5 * RECORD_BYTES);
    full = false;
    const next = log.appendRecord(message(6));
    expect(next.offset).toBe(5 * RECORD_BYTES);
    await next.done;
    expect(readAll(log)).toEqual([0, 1, 2, 3, 4, 6].map((i) => text(message(i).data)));
  });
});

test("bytes a process crash left unsynced are synced at reopen, before they count as durable", async () => {
  const memory = new MemoryStorage();
  const fixture: Fixture = { storage: memory, dir: "/data/orders-0", cleanup() {} };
  const threshold: FlushPolicy = { kind: "threshold", messages: 1000, intervalMs: 60_000 };
  const { log } = await openLog(fixture, { flush: threshold });
  await appendMany(log, 5); // written and acknowledged, not synced
  expect(log.durableEnd).toBe(0);
  // The process dies (the page cache keeps its bytes) and the log is opened again.
  const { log: reopened } = await openLog(fixture, { flush: threshold });
  expect(reopened.durableEnd).toBe(5 * RECORD_BYTES);
  // Then the power goes: what the reopened log called durable must still be there.
  memory.crash();
  const { log: afterPowerCut } = await openLog(fixture, { flush: threshold });
  expect(readAll(afterPowerCut).length).toBe(5);
});

test("with threshold flushing a failed write never takes back acknowledged records", async () => {
  let full = false;
  const storage = writesFailWhen(() => full);
  const { log } = await openLog({ storage, dir: "/data/orders-0", cleanup() {} }, {
    flush: { kind: "threshold", messages: 1000, intervalMs: 60_000 },
  });
  await appendMany(log, 5); // acknowledged, not yet synced
  expect(log.durableEnd).toBe(0);
  full = true;
  await expect(log.appendRecord(message(5)).done).rejects.toMatchObject({ kind: "storageFull" });
  // Readers may have seen records 0-4: their offsets must never be reused for other data.
  expect(log.ackedEnd).toBe(5 * RECORD_BYTES);
  full = false;
  const next = log.appendRecord(message(6));
  expect(next.offset).toBe(5 * RECORD_BYTES);
  await next.done;
  expect(readAll(log)).toEqual([0, 1, 2, 3, 4, 6].map((i) => text(message(i).data)));
});

test("with threshold flushing a slow timed sync holds no put; a failed one fails the next batch", async () => {
  let mode: "hang" | "fail" | "pass" = "hang";
  let release: (() => void) | undefined;
  let syncs = 0;
  const storage = memoryWithFiles((file) => {
    const sync = file.sync.bind(file);
    file.sync = async () => {
      syncs += 1;
      if (mode === "fail") throw Object.assign(new Error("EIO: i/o error"), { code: "EIO" });
      if (mode === "hang") await new Promise<void>((resolve) => (release = resolve));
      await sync();
    };
  });
  const { log, logger } = await openLog({ storage, dir: "/data/orders-0", cleanup() {} }, {
    flush: { kind: "threshold", messages: 1_000_000, intervalMs: 0 },
  });
  await appendMany(log, 5); // the interval is over at once: a timed sync starts, and hangs
  expect([log.ackedEnd, log.durableEnd, syncs]).toEqual([5 * RECORD_BYTES, 0, 1]);
  await appendMany(log, 5, 5); // answered while that sync still runs; no second one starts
  expect([log.ackedEnd, log.durableEnd, syncs]).toEqual([10 * RECORD_BYTES, 0, 1]);
  mode = "pass";
  release!();
  for (let i = 0; i < 10 && log.durableEnd === 0; i++) await new Promise((r) => setTimeout(r, 0));
  expect(log.durableEnd).toBe(5 * RECORD_BYTES); // what was written when it started

  mode = "fail";
  await appendMany(log, 1, 10); // its timed sync fails beside it: logged
  for (let i = 0; i < 10 && !logger.lines.some((line) => line.includes("Cannot sync")); i++) {
    await new Promise((r) => setTimeout(r, 0));
  }
  expect(logger.lines.some((line) => line.startsWith("error Cannot sync partition"))).toBe(true);
  // The next batch syncs before answering, so its puts see the storage failing.
  await expect(log.appendRecord(message(11)).done).rejects.toMatchObject({ kind: "storageFailed" });
  expect(log.ackedEnd).toBe(11 * RECORD_BYTES);
  mode = "pass";
  await appendMany(log, 1, 12);
  expect(log.durableEnd).toBe(12 * RECORD_BYTES);
  expect(readAll(log)).toEqual([...Array(11).keys(), 12].map((i) => text(message(i).data)));
});

test("file storage fsyncs the directory when a partition is created", async () => {
  await using temp = tempDir();
  const { log } = await openLog({
    storage: new FileStorage(),
    dir: `${temp.path}/t-0`,
    cleanup() {},
  });
  expect(fs.existsSync(`${temp.path}/t-0/${"0".repeat(20)}.meta`)).toBe(true);
  await log.close();
  void ManualClock;
});

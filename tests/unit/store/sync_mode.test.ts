import { describe, expect, test } from "bun:test";
import type { PartitionLog } from "../../../lib/store/partition_log.ts";
import type { FileHandle, Storage } from "../../../lib/store/storage.ts";
import { FileStorage } from "../../../lib/store/storage_file.ts";
import {
  cpuBusyProbe,
  EXPLORE_EVERY,
  INLINE_SYNC_BYTES_MAX,
  INLINE_SYNC_LATENCY_MAX_MS,
  INLINE_SYNC_RECORDS_MAX,
  mayInline,
  type SyncCandidate,
  SyncModeChooser,
} from "../../../lib/store/sync_mode.ts";
import { ascii } from "../../support/bytes.ts";
import { tempDir } from "../../support/temp_dir.ts";
import { openTestLog } from "../../support/test_log.ts";
import { wrapFile, wrapStorage } from "../../support/wrap_storage.ts";

const small: SyncCandidate = {
  inlineAvailable: true,
  records: 1,
  bytes: 120,
  lastSyncLatencyMs: 0.2,
  otherWritersWaiting: 0,
};

describe("sync mode chooser", () => {
  test("only a small batch after a fast sync, with no other writer waiting, may sync inline", () => {
    expect(mayInline(small)).toBe(true);
    expect(mayInline({ ...small, records: INLINE_SYNC_RECORDS_MAX })).toBe(true);
    expect(mayInline({ ...small, records: INLINE_SYNC_RECORDS_MAX + 1 })).toBe(false);
    expect(mayInline({ ...small, bytes: INLINE_SYNC_BYTES_MAX + 1 })).toBe(false);
    expect(mayInline({ ...small, lastSyncLatencyMs: INLINE_SYNC_LATENCY_MAX_MS })).toBe(false);
    expect(mayInline({ ...small, otherWritersWaiting: 1 })).toBe(false);
    expect(mayInline({ ...small, inlineAvailable: false })).toBe(false);
  });

  test("a large batch always goes to the pool and teaches the chooser nothing", () => {
    const chooser = new SyncModeChooser({ busy: () => false });
    expect(chooser.choose({ ...small, records: 1000, bytes: 120_000 })).toEqual({
      mode: "pool",
      measured: false,
    });
    expect(chooser.averagesMs).toEqual({ inline: undefined, pool: undefined });
  });

  test("tries both modes, keeps the cheaper, and tries the other one batch in EXPLORE_EVERY", () => {
    const chooser = new SyncModeChooser({ busy: () => false });
    const cost = { inline: 0.5, pool: 0.3 };
    const modes: string[] = [];
    for (let i = 0; i < 4 * EXPLORE_EVERY; i++) {
      const { mode, measured } = chooser.choose(small);
      expect(measured).toBe(true);
      chooser.record(mode, cost[mode]);
      modes.push(mode);
    }
    expect(modes.slice(0, 2)).toEqual(["inline", "pool"]);
    const inline = modes.filter((mode) => mode === "inline").length;
    expect(inline).toBe(1 + Math.floor(4 * EXPLORE_EVERY / EXPLORE_EVERY)); // first + explorations

    // The machine changes: inline becomes the cheaper mode, and the chooser follows.
    cost.inline = 0.1;
    const later: string[] = [];
    for (let i = 0; i < 40 * EXPLORE_EVERY; i++) {
      const { mode } = chooser.choose(small);
      chooser.record(mode, cost[mode]);
      later.push(mode);
    }
    const tail = later.slice(-4 * EXPLORE_EVERY);
    expect(tail.filter((mode) => mode === "pool").length).toBe(4); // explorations only
  });

  test("while the machine is busy every sync goes to the pool, unmeasured", () => {
    let busy = true;
    const chooser = new SyncModeChooser({ busy: () => busy });
    for (let i = 0; i < 2 * EXPLORE_EVERY; i++) {
      expect(chooser.choose(small)).toEqual({ mode: "pool", measured: false });
    }
    busy = false;
    expect(chooser.choose(small)).toEqual({ mode: "inline", measured: true });
  });

  test("the CPU probe calls the machine busy from 90 % busy between readings, read once a second", () => {
    let nowMs = 0;
    let idle = 0;
    let total = 0;
    let reads = 0;
    const busy = cpuBusyProbe({
      nowMs: () => nowMs,
      cpuTimes: () => (reads += 1, { idle, total }),
    });
    expect(busy()).toBe(false); // one reading: nothing to compare yet
    idle += 100; // 0 % busy
    total += 100;
    nowMs = 1000;
    expect(busy()).toBe(false);
    idle += 5; // 95 % busy
    total += 100;
    nowMs = 1999;
    expect(busy()).toBe(false); // not read again yet
    nowMs = 2000;
    expect(busy()).toBe(true);
    nowMs = 2500;
    expect(busy()).toBe(true); // holds until the next reading
    idle += 20; // 80 % busy
    total += 100;
    nowMs = 3000;
    expect(busy()).toBe(false);
    nowMs = 4000; // no CPU time passed (or none reported): the last verdict stands
    expect(busy()).toBe(false);
    expect(reads).toBe(5);
  });

  test("one stall counts as 10 ms, not as its full length", () => {
    const chooser = new SyncModeChooser({ busy: () => false });
    chooser.record("inline", 0.2);
    chooser.record("inline", 5_000);
    expect(chooser.averagesMs.inline).toBeLessThan(0.2 + 10 / 32 + 1e-9);
  });
});

type Event = string;

/** Real files whose write, sync and syncNow calls are recorded in order (and syncNow may fail). */
function recordingStorage(events: Event[], failNextSyncNow: { value: boolean }): Storage {
  const inner = new FileStorage();
  return wrapStorage(inner, {
    open(path: string, options: { create: boolean }): FileHandle {
      const file = inner.open(path, options);
      return wrapFile(file, {
        write(chunks, position) {
          const bytes = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
          events.push(`write ${bytes}`);
          file.write(chunks, position);
        },
        async sync() {
          events.push("pool sync");
          await file.sync();
          events.push("pool synced");
        },
        syncNow() {
          if (failNextSyncNow.value) {
            failNextSyncNow.value = false;
            events.push("inline sync failed");
            throw Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" });
          }
          file.syncNow!();
          events.push("inline synced");
        },
      });
    },
  });
}

async function openRecordedLog(dir: string, events: Event[], failNextSyncNow = { value: false }) {
  const log = await openTestLog(recordingStorage(events, failNextSyncNow), dir, {
    syncModes: new SyncModeChooser({ busy: () => false }),
  });
  events.length = 0; // what open did is not under test
  return log;
}

const record = (i: number) => ({
  id: BigInt(i + 1),
  flag: 0,
  data: ascii(`message-${String(i).padStart(4, "0")}`),
});
const RECORD_BYTES = 20 + "message-0000".length;

/** Appends `count` records in one turn; resolves when every one is acknowledged (or failed). */
function appendBurst(log: PartitionLog, events: Event[], from: number, count: number) {
  return Promise.all(
    Array.from({ length: count }, (_, i) =>
      new Promise<Error | undefined>((resolve) => {
        log.append(record(from + i), (error) => {
          events.push(error ? `fail ${from + i}` : `ack ${from + i}`);
          resolve(error);
        });
      })),
  );
}

describe("group commit with inline and pool syncs (real files)", () => {
  test("a put waited for alone is written, synced, then acknowledged, inline or on the pool", async () => {
    using temp = tempDir();
    const events: Event[] = [];
    const log = await openRecordedLog(`${temp.path}/orders-0`, events);
    await appendBurst(log, events, 0, 1); // the chooser's first small batch: inline
    await appendBurst(log, events, 1, 1); // its second: the pool, to measure it
    expect(events).toEqual([
      `write ${RECORD_BYTES}`,
      "inline synced",
      "ack 0",
      `write ${RECORD_BYTES}`,
      "pool sync",
      "pool synced",
      "ack 1",
    ]);
    expect(log.durableEnd).toBe(2 * RECORD_BYTES);
    await log.close();
  });

  test("a burst of puts in one turn is one write and one pool sync (group commit kept)", async () => {
    using temp = tempDir();
    const events: Event[] = [];
    const log = await openRecordedLog(`${temp.path}/orders-0`, events);
    const count = INLINE_SYNC_RECORDS_MAX * 8;
    const errors = await appendBurst(log, events, 0, count);
    expect(errors.every((error) => error === undefined)).toBe(true);
    expect(events.slice(0, 3)).toEqual([
      `write ${count * RECORD_BYTES}`,
      "pool sync",
      "pool synced",
    ]);
    expect(events.slice(3)).toEqual(Array.from({ length: count }, (_, i) => `ack ${i}`));
    await log.close();
  });

  test("a failed inline sync answers no put, cuts the log back, and later puts succeed", async () => {
    using temp = tempDir();
    const events: Event[] = [];
    const failNextSyncNow = { value: true };
    const log = await openRecordedLog(`${temp.path}/orders-0`, events, failNextSyncNow);
    const [error] = await appendBurst(log, events, 0, 1);
    expect(error).toMatchObject({ kind: "storageFailed" });
    expect(events).toEqual([`write ${RECORD_BYTES}`, "inline sync failed", "fail 0"]);
    expect([log.ackedEnd, log.writtenEnd, log.nextOffset]).toEqual([0, 0, 0]);

    events.length = 0;
    expect(await appendBurst(log, events, 1, 1)).toEqual([undefined]);
    expect(events.at(-1)).toBe("ack 1");
    expect(events.indexOf("ack 1")).toBeGreaterThan(
      Math.max(events.indexOf("inline synced"), events.indexOf("pool synced")),
    );
    expect(log.durableEnd).toBe(RECORD_BYTES);
    await log.close();
  });

  test("two partitions with a put each in one turn never sync inline one after the other", async () => {
    using temp = tempDir();
    const eventsA: Event[] = [];
    const eventsB: Event[] = [];
    const a = await openRecordedLog(`${temp.path}/orders-0`, eventsA);
    const b = await openRecordedLog(`${temp.path}/orders-1`, eventsB);
    await Promise.all([appendBurst(a, eventsA, 0, 1), appendBurst(b, eventsB, 0, 1)]);
    // The first writer to run sees the other waiting and leaves its fsync to the pool.
    const inline = [eventsA, eventsB].filter((events) => events.includes("inline synced"));
    expect(inline.length).toBeLessThanOrEqual(1);
    expect(eventsA.at(-1)).toBe("ack 0");
    expect(eventsB.at(-1)).toBe("ack 0");
    await Promise.all([a.close(), b.close()]);
  });
});

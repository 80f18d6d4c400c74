import { expect, test } from "bun:test";
import { silentLogger } from "../../../../lib/log.ts";
import { encodeEntries } from "../../../../lib/broker/groups/journal.ts";
import {
  ENTRIES_PER_BODY_MAX,
  FileOffsetStore,
} from "../../../../lib/broker/groups/offset_store_file.ts";
import { MemoryStorage } from "../../../../lib/store/storage_memory.ts";
import { describeOffsetStore } from "../../../support/offset_store_suite.ts";

describeOffsetStore("file, on in-memory storage", {
  async open() {
    const storage = new MemoryStorage();
    const open = () =>
      FileOffsetStore.open({ storage, path: "/data/_groups/offsets.log", logger: silentLogger });
    return Object.assign(await open(), { reopen: open });
  },
});

test("offsets committed before a power cut survive it; a torn tail is cut off", async () => {
  const storage = new MemoryStorage();
  const path = "/data/_groups/offsets.log";
  const store = await FileOffsetStore.open({ storage, path, logger: silentLogger });
  await store.commit([{ group: "g", topic: "t", partition: 0, offset: 10 }]);
  await store.commit([{ group: "g", topic: "t", partition: 0, offset: 20 }]);
  // A write the power cut interrupts: part of an entry reaches the disk, its fsync never runs.
  const file = storage.open(path, { create: false });
  file.write([encodeEntries([new TextEncoder().encode('{"kind":"commit"}')], 1024)], file.size());
  file.close();
  storage.crash((_path, unsynced) => new Uint8Array(Math.min(unsynced, 9)).fill(0xab));
  const after = await FileOffsetStore.open({ storage, path, logger: silentLogger });
  expect(after.get({ group: "g", topic: "t", partition: 0 })).toBe(20);
  await after.commit([{ group: "g", topic: "t", partition: 0, offset: 25 }]);
  await after.close();
  storage.crash();
  const again = await FileOffsetStore.open({ storage, path, logger: silentLogger });
  expect(again.get({ group: "g", topic: "t", partition: 0 })).toBe(25);
  await again.close();
});

test("the journal is compacted when it grows, so its size follows the live state", async () => {
  const storage = new MemoryStorage();
  const path = "/data/_groups/offsets.log";
  const store = await FileOffsetStore.open({ storage, path, logger: silentLogger });
  for (let round = 1; round <= 4000; round++) {
    await store.commit([
      { group: "group-with-a-long-name", topic: "topic", partition: round % 4, offset: round },
    ]);
  }
  expect(store.sizeBytes).toBeLessThan(4 * 1024 * 1024);
  await store.close();
  const reopened = await FileOffsetStore.open({ storage, path, logger: silentLogger });
  expect(reopened.entries().map((e) => e.offset)).toEqual([4000, 3997, 3998, 3999]);
  expect(reopened.sizeBytes).toBeLessThan(1024);
  await reopened.close();
});

test("one commit carries at most ENTRIES_PER_BODY_MAX offsets, all or nothing", async () => {
  const store = await FileOffsetStore.open({
    storage: new MemoryStorage(),
    path: "/data/_groups/offsets.log",
    logger: silentLogger,
  });
  const batch = (count: number) =>
    Array.from(
      { length: count },
      (_, partition) => ({ group: "g", topic: "t", partition, offset: 1 }),
    );
  await expect(store.commit(batch(ENTRIES_PER_BODY_MAX + 1))).rejects.toThrow(/more than 4096/);
  expect(store.entries()).toEqual([]);
  await store.commit(batch(ENTRIES_PER_BODY_MAX));
  expect(store.entries().length).toBe(ENTRIES_PER_BODY_MAX);
  await store.close();
});

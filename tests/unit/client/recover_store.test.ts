import { expect, test } from "bun:test";
import { RecoverStore } from "../../../lib/client/recover_store.ts";
import { silentLogger } from "../../../lib/log.ts";
import { MemoryStorage } from "../../../lib/store/storage_memory.ts";

const open = (storage: MemoryStorage) =>
  RecoverStore.open({
    storage,
    dir: "/recover",
    topic: "orders",
    group: "billing",
    logger: silentLogger,
  });

const message = (offset: number, text: string) => ({
  partition: 2,
  offset,
  id: BigInt(1000 + offset),
  flag: 0,
  data: new TextEncoder().encode(text),
});

test("kept messages survive a power cut once add resolved; removed ones stay removed", async () => {
  const storage = new MemoryStorage();
  const store = await open(storage);
  await store.add(message(0, "first"));
  await store.add(message(25, "second"));
  await store.remove("2-0");
  storage.crash();
  const reopened = await open(storage);
  const kept = reopened.list();
  expect(kept.map((m) => [m.key, m.id, new TextDecoder().decode(m.data)])).toEqual([
    ["2-25", 1025n, "second"],
  ]);
  expect(kept[0].topic).toBe("orders");
  await reopened.close();
});

test("the store lives in <dir>/<topic>@<group>/ and is compacted when reopened", async () => {
  const storage = new MemoryStorage();
  const store = await open(storage);
  for (let i = 0; i < 50; i++) await store.add(message(i * 10, `m${i}`));
  for (let i = 0; i < 49; i++) await store.remove(`2-${i * 10}`);
  await store.close();
  const before = storage.stat("/recover/orders@billing/recover.log")!.size;
  const reopened = await open(storage);
  const after = storage.stat("/recover/orders@billing/recover.log")!.size;
  expect(reopened.size).toBe(1);
  expect(after).toBeLessThan(before / 10);
  await reopened.close();
});

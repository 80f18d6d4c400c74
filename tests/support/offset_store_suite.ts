/**
 * @module The OffsetStore contract as one suite, run against every implementation: the client's
 * memory store (unit) and file store (integration), and the broker's file store on in-memory
 * storage (unit) and on real files (integration).
 */
import { describe, expect, test } from "bun:test";
import { BrokerError } from "../../lib/errors.ts";
import type { OffsetEntry, OffsetStore } from "../../lib/protocol/group_wire.ts";

export interface StoreFactory {
  /** A fresh, empty store. */
  open(): Promise<OffsetStore & { reopen?: () => Promise<OffsetStore> }>;
}

const entry = (partition: number, offset: number, group = "g", topic = "t"): OffsetEntry => ({
  group,
  topic,
  partition,
  offset,
});

async function kindOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    if (error instanceof BrokerError) return error.kind;
    throw error;
  }
}

export function describeOffsetStore(name: string, factory: StoreFactory): void {
  describe(`OffsetStore (${name})`, () => {
    test("an empty store knows no offsets", async () => {
      const store = await factory.open();
      expect(store.get({ group: "g", topic: "t", partition: 0 })).toBeUndefined();
      expect(store.entries()).toEqual([]);
      await store.close();
    });

    test("commit records offsets, and entries come back sorted", async () => {
      const store = await factory.open();
      await store.commit([entry(2, 30), entry(0, 10, "b"), entry(1, 20)]);
      await store.commit([entry(0, 5, "a", "z")]);
      expect(store.get({ group: "g", topic: "t", partition: 2 })).toBe(30);
      expect(store.entries()).toEqual([
        entry(0, 5, "a", "z"),
        entry(0, 10, "b"),
        entry(1, 20),
        entry(2, 30),
      ]);
      await store.close();
    });

    test("a commit that would move one offset backwards is refused whole", async () => {
      const store = await factory.open();
      await store.commit([entry(0, 100), entry(1, 100)]);
      expect(await kindOf(store.commit([entry(0, 200), entry(1, 99)]))).toBe("offsetBackwards");
      expect(store.entries()).toEqual([entry(0, 100), entry(1, 100)]);
      await store.commit([entry(0, 100)]); // the same offset again is fine
      await store.close();
    });

    test("reset moves an offset backwards on purpose", async () => {
      const store = await factory.open();
      await store.commit([entry(0, 100)]);
      await store.reset([entry(0, 0)]);
      expect(store.get({ group: "g", topic: "t", partition: 0 })).toBe(0);
      await store.commit([entry(0, 10)]);
      expect(store.get({ group: "g", topic: "t", partition: 0 })).toBe(10);
      await store.close();
    });

    test("offsets that are not byte positions are refused", async () => {
      const store = await factory.open();
      expect(await kindOf(store.commit([entry(0, -1)]))).toBe("invalidOffset");
      expect(await kindOf(store.commit([entry(0, 1.5)]))).toBe("invalidOffset");
      expect(await kindOf(store.reset([entry(-1, 0)]))).toBe("invalidOffset");
      expect(store.entries()).toEqual([]);
      await store.close();
    });

    test("a reopened store has what was committed and reset (durable stores only)", async () => {
      const store = await factory.open();
      if (!store.reopen) return void (await store.close());
      await store.commit([entry(0, 100), entry(1, 7)]);
      await store.reset([entry(1, 3)]);
      await store.close();
      const reopened = await store.reopen();
      expect(reopened.entries()).toEqual([entry(0, 100), entry(1, 3)]);
      expect(await kindOf(reopened.commit([entry(0, 50)]))).toBe("offsetBackwards");
      await reopened.close();
    });
  });
}

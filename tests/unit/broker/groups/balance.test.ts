import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { balance, partitionName } from "../../../../lib/broker/groups/balance.ts";

const names = (count: number, brokerId = 0) =>
  Array.from({ length: count }, (_, partition) => partitionName(brokerId, partition));

describe("DEFAULT strategy", () => {
  test("six partitions over three consumers give contiguous slices of two", () => {
    const plan = balance("DEFAULT", ["c-b", "c-a", "c-c"], names(6));
    expect(Object.fromEntries(plan)).toEqual({
      "c-a": ["0-0", "0-1"],
      "c-b": ["0-2", "0-3"],
      "c-c": ["0-4", "0-5"],
    });
  });

  test("partitions sort as strings, so 0-10 comes before 0-2, and the first P % C get one more", () => {
    const plan = balance("DEFAULT", ["a", "b", "c", "d", "e"], names(12));
    expect(Object.fromEntries(plan)).toEqual({
      a: ["0-0", "0-1", "0-10"],
      b: ["0-11", "0-2", "0-3"],
      c: ["0-4", "0-5"],
      d: ["0-6", "0-7"],
      e: ["0-8", "0-9"],
    });
  });

  test("consumers beyond the partition count get nothing", () => {
    const plan = balance("DEFAULT", ["a", "b", "c"], names(2));
    expect(Object.fromEntries(plan)).toEqual({ a: ["0-0"], b: ["0-1"], c: [] });
  });

  test("no consumers means an empty plan", () => {
    expect(balance("DEFAULT", [], names(3)).size).toBe(0);
  });
});

describe("CONSIST strategy", () => {
  /** Brute force from MetaQ's description: the first ring point at or after the hash, else the lowest. */
  function reference(consumers: string[], partitions: string[]): Map<string, string[]> {
    const points: { point: number; consumer: string }[] = [];
    const le = (bytes: Buffer, at: number) => bytes.readUInt32LE(at);
    const byPoint = new Map<number, string>();
    for (const consumer of [...consumers].sort()) {
      for (let k = 0; k < 40; k++) {
        const digest = createHash("md5").update(`${consumer}-${k}`).digest();
        for (let h = 0; h < 4; h++) byPoint.set(le(digest, h * 4), consumer);
      }
    }
    for (const [point, consumer] of byPoint) points.push({ point, consumer });
    const plan = new Map(consumers.map((consumer) => [consumer, [] as string[]]));
    for (const partition of [...partitions].sort()) {
      const hash = le(createHash("md5").update(partition).digest(), 0);
      const candidates = points.filter((entry) => entry.point >= hash);
      const pool = candidates.length > 0 ? candidates : points;
      const owner = pool.reduce((best, entry) => (entry.point < best.point ? entry : best));
      plan.get(owner.consumer)!.push(partition);
    }
    return plan;
  }

  test("matches a brute-force walk of the ring for many consumer and partition counts", () => {
    for (const consumerCount of [1, 2, 3, 7]) {
      for (const partitionCount of [1, 6, 50]) {
        const consumers = Array.from({ length: consumerCount }, (_, i) => `10.0.0.${i}-4242-c${i}`);
        const partitions = names(partitionCount, 3);
        expect(
          Object.fromEntries(balance("CONSIST", consumers, partitions)),
          `${consumerCount} consumers, ${partitionCount} partitions`,
        ).toEqual(Object.fromEntries(reference(consumers, partitions)));
      }
    }
  });

  test("every partition has exactly one consumer", () => {
    const plan = balance("CONSIST", ["a", "b", "c"], names(100));
    const all = [...plan.values()].flat().sort();
    expect(all).toEqual(names(100).sort());
  });

  test("a new consumer takes partitions only for itself: no other partition moves", () => {
    const before = balance("CONSIST", ["a", "b", "c"], names(64));
    const after = balance("CONSIST", ["a", "b", "c", "d"], names(64));
    const ownerOf = (plan: Map<string, string[]>) => {
      const owners = new Map<string, string>();
      for (const [consumer, partitions] of plan) {
        for (const partition of partitions) owners.set(partition, consumer);
      }
      return owners;
    };
    const previous = ownerOf(before);
    let moved = 0;
    for (const [partition, owner] of ownerOf(after)) {
      if (owner !== previous.get(partition)) {
        expect(owner).toBe("d");
        moved += 1;
      }
    }
    expect(moved).toBeGreaterThan(0);
  });
});

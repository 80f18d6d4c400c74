import { expect, test } from "bun:test";
import { LruMessageIdCache } from "../../../lib/client/message_id_cache.ts";

test("the cache remembers ids per group", () => {
  const cache = new LruMessageIdCache(8);
  cache.add("g1", 23n);
  expect(cache.has("g1", 23n)).toBe(true);
  expect(cache.has("g2", 23n)).toBe(false);
  // MetaQ glued group and id into one string, so g1+23 and g12+3 collided; here they do not.
  expect(cache.has("g12", 3n)).toBe(false);
});

test("at its bound the least recently used id is forgotten first", () => {
  const cache = new LruMessageIdCache(3);
  cache.add("g", 1n);
  cache.add("g", 2n);
  cache.add("g", 3n);
  expect(cache.has("g", 1n)).toBe(true); // 1 is now the most recent
  cache.add("g", 4n); // evicts 2
  expect([1n, 2n, 3n, 4n].map((id) => cache.has("g", id))).toEqual([true, false, true, true]);
  expect(cache.size).toBe(3);
});

test("each group keeps at most the bound, whatever is added", () => {
  const cache = new LruMessageIdCache(100);
  for (let id = 0n; id < 1000n; id++) cache.add(`g${id % 7n}`, id);
  expect(cache.size).toBe(7 * 100);
  expect(cache.has("g5", 999n)).toBe(true); // 999 % 7 = 5: the newest is kept
  expect(cache.has("g0", 0n)).toBe(false); // the oldest is gone
});

import { expect, test } from "bun:test";
import { memoryLogger } from "../../../lib/log.ts";
import { LogRing, ringLogger } from "../../../lib/log_ring.ts";

test("the ring keeps the newest warnings and errors, newest first, and counts all", () => {
  const inner = memoryLogger();
  const ring = new LogRing(3);
  let now = 1000;
  const logger = ringLogger(inner, ring, () => now++);
  logger.log("info", "started");
  for (let i = 0; i < 5; i++) logger.log(i % 2 ? "error" : "warn", `problem ${i}`, { n: i });
  expect(inner.lines.length).toBe(6);
  expect(ring.total).toBe(5);
  expect(ring.recent().map((entry) => [entry.message, entry.level, entry.fields.n])).toEqual([
    ["problem 4", "warn", "4"],
    ["problem 3", "error", "3"],
    ["problem 2", "warn", "2"],
  ]);
  expect(ring.recent()[0].timeMs).toBe(1004);
});

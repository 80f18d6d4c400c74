import { expect, test } from "bun:test";
import { ManualClock } from "../../../lib/clock.ts";
import {
  ID_EPOCH_MS,
  idBrokerId,
  idTimestampMs,
  MessageIdGenerator,
} from "../../../lib/protocol/message_id.ts";

test("ids carry wall time, broker id and a sequence in MetaQ's layout", () => {
  const clock = new ManualClock(ID_EPOCH_MS + 1000);
  const ids = new MessageIdGenerator({ brokerId: 5, clock });
  const first = ids.next();
  expect(first).toBe((1000n << 22n) | (5n << 12n));
  expect(ids.next()).toBe(first + 1n);
  expect(idTimestampMs(first)).toBe(ID_EPOCH_MS + 1000);
  expect(idBrokerId(first)).toBe(5);
});

test("ids keep increasing when the clock steps back or the sequence runs out", () => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const ids = new MessageIdGenerator({ brokerId: 1, clock });
  let previous = 0n;
  for (let i = 0; i < 10_000; i++) {
    if (i === 5000) clock.jumpWall(-60_000);
    const id = ids.next();
    expect(id > previous).toBe(true);
    previous = id;
  }
});

test("ids stay above the newest id recovered from disk", () => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const before = new MessageIdGenerator({ brokerId: 1, clock });
  const recovered = before.next();
  clock.jumpWall(-3_600_000); // restarted with a clock an hour behind
  const after = new MessageIdGenerator({ brokerId: 1, clock });
  after.observe(recovered);
  expect(after.next() > recovered).toBe(true);
});

test("ids are never zero, even with broker 0 and a clock at or before MetaQ's epoch", () => {
  for (const wall of [ID_EPOCH_MS, ID_EPOCH_MS - 86_400_000, 0]) {
    const ids = new MessageIdGenerator({ brokerId: 0, clock: new ManualClock(wall) });
    expect(ids.next() > 0n).toBe(true);
  }
  const later = new MessageIdGenerator({
    brokerId: 0,
    clock: new ManualClock(Date.UTC(2099, 0, 1)),
  }).next();
  expect(later > 0n).toBe(true);
});

test("the allocation-light ids equal the BigInt ids, across millisecond and decimal carries", () => {
  const clock = new ManualClock(Date.UTC(2026, 10, 25, 12));
  const reference = new MessageIdGenerator({ brokerId: 1023, clock });
  const fast = new MessageIdGenerator({ brokerId: 1023, clock });
  for (let i = 0; i < 20_000; i++) {
    if (i % 997 === 0) clock.advance(1);
    const expected = reference.next();
    const id = fast.nextId();
    expect(id.toBigInt()).toBe(expected);
    expect(id.toString()).toBe(expected.toString());
  }
});

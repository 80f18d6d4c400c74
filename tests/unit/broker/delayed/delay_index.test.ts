/**
 * DelayIndex against a plain model (a Map and a sort), over random operations: add, move (the
 * same id again), take due messages in (time, id) order, hold and release, start firing, and
 * remove; the arrays grow and the id table is rebuilt along the way. The records of
 * `__delay-0` round-trip through their codec.
 */
import { expect, test } from "bun:test";
import fc from "fast-check";
import { DelayIndex } from "../../../../lib/broker/delayed/delay_index.ts";
import {
  decodeDelayRecord,
  type DelayRecord,
  encodeDelayRecord,
} from "../../../../lib/broker/delayed/delay_record.ts";

type Op =
  | { kind: "add"; id: number; at: number }
  | { kind: "pop"; now: number }
  | { kind: "hold"; pick: number }
  | { kind: "fire"; pick: number }
  | { kind: "remove"; pick: number };

// Mostly adds, so the arrays grow past their first 1024 slots and the id table is rebuilt.
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      kind: fc.constant("add" as const),
      id: fc.integer({ min: -50, max: 6000 }),
      at: fc.integer({ min: 0, max: 100 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("pop" as const),
      now: fc.integer({ min: 0, max: 100 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("hold" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("fire" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("remove" as const), pick: fc.nat() }) },
);

test("the index agrees with a model: due order, hold/restore, firing, removal, growth", () => {
  fc.assert(
    fc.property(fc.array(op, { minLength: 1500, maxLength: 2500 }), (ops) => {
      const index = new DelayIndex();
      // What each id should be: its time, where it lives, waiting or firing.
      const model = new Map<bigint, { at: number; state: string; offset: number }>();
      let offset = 0;
      const pickId = (pick: number) => {
        const ids = [...model.keys()];
        return ids.length === 0 ? undefined : ids[pick % ids.length];
      };
      for (const o of ops) {
        if (o.kind === "add") {
          const id = BigInt(o.id) * 7919n;
          offset += 100;
          const known = model.get(id);
          index.add({ id, deliverAtMs: o.at, offset, length: 100, target: 0 });
          if (known) known.offset = offset; // a copy moved forward: only where it lives changes
          else model.set(id, { at: o.at, state: "waiting", offset });
        } else if (o.kind === "pop") {
          const due = [...model.entries()].filter(([, m]) => m.state === "waiting" && m.at <= o.now)
            .sort(([a, x], [b, y]) => x.at - y.at || (a < b ? -1 : 1));
          for (const [id] of due) {
            const slot = index.popDue(o.now);
            expect(index.idOf(slot)).toBe(id);
            model.get(id)!.state = "taken";
          }
          expect(index.popDue(o.now)).toBe(-1);
          // What was taken goes back (as a firer that closes restores its queue).
          for (const [id] of due) {
            index.restore(index.find(id));
            model.get(id)!.state = "waiting";
          }
        } else {
          const id = pickId(o.pick);
          if (id === undefined) continue;
          const slot = index.find(id);
          const entry = model.get(id)!;
          if (o.kind === "hold") {
            const held = index.hold(slot);
            expect(held).toBe(entry.state === "waiting");
            if (held) {
              index.restore(slot);
            }
          } else if (o.kind === "fire") {
            index.startFiring(slot);
            if (entry.state === "waiting") entry.state = "firing";
          } else {
            index.remove(slot);
            model.delete(id);
          }
        }
        expect(index.size).toBe(model.size);
      }
      for (const [id, entry] of model) {
        const slot = index.find(id);
        expect(slot).toBeGreaterThanOrEqual(0);
        expect(index.deliverAtOf(slot)).toBe(entry.at);
        expect(index.offsetOf(slot)).toBe(entry.offset);
        expect(index.isFiring(slot)).toBe(entry.state === "firing");
      }
      const waiting = [...model.values()].filter((m) => m.state === "waiting").map((m) => m.at);
      expect(index.nextDueMs()).toBe(waiting.length ? Math.min(...waiting) : undefined);
      const offsets = [...model.values()].map((m) => m.offset);
      expect(index.lowestOffset()).toBe(offsets.length ? Math.min(...offsets) : undefined);
      expect(index.firingCount).toBe(
        [...model.values()].filter((m) => m.state === "firing").length,
      );
    }),
    { numRuns: 8 },
  );
});

test("every record of __delay-0 round-trips through its codec", () => {
  const records: DelayRecord[] = [
    {
      type: "message",
      id: -9_000_000_000_000_000_001n,
      deliverAtMs: 1_796_000_000_123,
      topic: "orders",
      partition: 3,
      flag: 1,
      schedule: "",
      data: new Uint8Array([0, 0, 0, 1, 65, 66]),
    },
    { type: "firing", fireAtMs: 5, since: 2 ** 40, topic: "t", partition: 0, ids: [1n, -2n] },
    { type: "fired", firing: 123_456 },
    { type: "cancel", id: 42n },
    {
      type: "schedule",
      name: "nightly.job-1",
      cron: "0 0 2 * * ?",
      topic: "jobs",
      partition: -1,
      flag: 0,
      paused: true,
      createdAtMs: 1,
      lastAtMs: 0,
      data: new TextEncoder().encode("compact"),
    },
    { type: "unschedule", name: "nightly.job-1" },
  ];
  for (const record of records) {
    expect(decodeDelayRecord(encodeDelayRecord(record))).toEqual(record);
  }
  const bytes = encodeDelayRecord(records[3]);
  expect(() => decodeDelayRecord(new Uint8Array([9, 1]))).toThrow("unknown type 9");
  expect(() => decodeDelayRecord(bytes.subarray(0, bytes.length - 1))).toThrow();
  const versioned = bytes.slice();
  versioned[1] = 7;
  expect(() => decodeDelayRecord(versioned)).toThrow("unknown version 7");
});

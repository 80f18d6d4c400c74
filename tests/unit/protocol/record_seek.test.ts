/**
 * The position searches over a partition held in memory as MetaQ lays it out: segments (a read
 * stops at a segment's end), records of random sizes with random payloads (some of which look
 * like record headers), ids from a clock that ticks irregularly. Every answer is checked
 * against a walk of the whole partition.
 */
import { describe, expect, test } from "bun:test";
import { Buffer } from "node:buffer";
import {
  offsetForTime,
  offsetOfLast,
  type PartitionBytes,
  recordStartAtOrAfter,
} from "../../../lib/protocol/record_seek.ts";
import { ID_EPOCH_MS } from "../../../lib/protocol/message_id.ts";
import { encodeRecord } from "../../../lib/protocol/record.ts";
import { Prng } from "../../../lib/prng.ts";

/** The searches' clock: a day after the records were written. */
const NOW = Date.parse("2026-12-07T10:00:00Z");

interface Built {
  readonly reader: PartitionBytes;
  readonly starts: number[];
  readonly times: number[];
  readonly end: number;
}

function build(seed: number, count: number, segmentBytes: number): Built {
  const random = new Prng(seed);
  const segments: Uint8Array[][] = [[]];
  const starts: number[] = [];
  const times: number[] = [];
  let segmentSize = 0;
  let offset = 0;
  let ms = Date.parse("2026-12-06T10:00:00Z");
  for (let i = 0; i < count; i++) {
    ms += random.int(0, 4); // several records may share a millisecond
    const payload = new Uint8Array(random.int(0, 700));
    for (let j = 0; j < payload.length; j++) payload[j] = random.int(0, 256);
    if (payload.length > 40 && random.int(0, 3) === 0) {
      // a payload that holds something shaped like a header (length 4, a plausible id)
      payload.set(
        encodeRecord({ id: 5n << 22n, flag: 0, data: new Uint8Array(4) }).subarray(0, 20),
        8,
      );
    }
    const id = (BigInt(ms - ID_EPOCH_MS) << 22n) | BigInt(i % 4096);
    const record = encodeRecord({ id, flag: 0, data: payload });
    if (segmentSize + record.length > segmentBytes && segmentSize > 0) {
      segments.push([]);
      segmentSize = 0;
    }
    segments[segments.length - 1].push(record);
    segmentSize += record.length;
    starts.push(offset);
    times.push(ms);
    offset += record.length;
  }
  const files = segments.map((records) => Buffer.concat(records));
  const reader: PartitionBytes = {
    read(at, maxSize) {
      let base = 0;
      for (const file of files) {
        if (at < base + file.length) {
          const from = at - base;
          return Promise.resolve(file.subarray(from, Math.min(file.length, from + maxSize)));
        }
        base += file.length;
      }
      return Promise.resolve(new Uint8Array(0));
    },
  };
  return { reader, starts, times, end: offset };
}

describe("record_seek", () => {
  test("the first record at or after a time, against a full walk", async () => {
    for (const seed of [1, 2, 3]) {
      const p = build(seed, 3000, 16 * 1024);
      const bounds = { start: 0, end: p.end };
      for (let k = 0; k < 40; k++) {
        const index = Math.floor((k / 40) * p.times.length);
        const time = p.times[index] + (k % 2); // on a record's time, and a millisecond after
        const expected = p.starts[p.times.findIndex((t) => t >= time)] ?? p.end;
        expect(await offsetForTime(p.reader, bounds, time, NOW)).toBe(expected);
      }
      expect(await offsetForTime(p.reader, bounds, 0, NOW)).toBe(0);
      expect(await offsetForTime(p.reader, bounds, p.times[p.times.length - 1] + 1, NOW)).toBe(
        p.end,
      );
    }
  });

  test("the last N records, against a full walk", async () => {
    const p = build(7, 2500, 8 * 1024);
    const bounds = { start: 0, end: p.end };
    for (const count of [1, 2, 17, 600, 2499, 2500, 9999]) {
      expect(await offsetOfLast(p.reader, bounds, count, NOW)).toBe(
        p.starts[Math.max(0, p.starts.length - count)],
      );
    }
  });

  test("a probe anywhere finds the next record start", async () => {
    const p = build(11, 400, 8 * 1024);
    const random = new Prng(5);
    for (let k = 0; k < 200; k++) {
      const at = random.int(0, p.end - 1);
      const found = await recordStartAtOrAfter(p.reader, at, p.end, NOW);
      expect(found?.offset).toBe(p.starts.find((start) => start >= at));
    }
  });
});

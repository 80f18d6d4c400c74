/** Cross-checking a copy against its peers on byte arrays: what it finds, and what it must not. */
import { describe, expect, test } from "bun:test";
import { crc32 } from "../../../lib/crc32.ts";
import {
  type AskDigest,
  crossCheck,
  type LocalCopy,
  type RangeDigest,
} from "../../../lib/cluster/cross_check.ts";
import { encodeRecord, readHeader, RECORD_HEADER_BYTES } from "../../../lib/protocol/record.ts";

/** `count` records of 30..79 data bytes with ids 1..count; returns the bytes and record starts. */
function log(count: number): { bytes: Uint8Array; starts: number[] } {
  const parts: Uint8Array[] = [];
  const starts: number[] = [];
  let offset = 0;
  for (let index = 0; index < count; index++) {
    const data = new TextEncoder().encode(`message ${index} `.padEnd(30 + (index * 7) % 50, "x"));
    const record = encodeRecord({ id: BigInt(index + 1), flag: 0, data });
    starts.push(offset);
    parts.push(record);
    offset += record.length;
  }
  const bytes = new Uint8Array(offset);
  let position = 0;
  for (const part of parts) {
    bytes.set(part, position);
    position += part.length;
  }
  return { bytes, starts };
}

/** A copy over `bytes` holding the log's range [start, end) (offsets are positions in `bytes`). */
function copy(bytes: Uint8Array, start = 0, end = bytes.length): LocalCopy {
  const recordStarts = (from: number, limit: number, countMax = Infinity) => {
    const out = [from];
    let position = from;
    while (position + RECORD_HEADER_BYTES <= limit && out.length < countMax) {
      const next = position + RECORD_HEADER_BYTES + readHeader(bytes, position).length;
      if (next > limit) break;
      out.push(next);
      position = next;
    }
    return out;
  };
  return {
    start,
    end,
    crc: (from, to) => crc32(bytes.subarray(from, to)),
    recordStarts,
    alignedStart: (offset) =>
      offset <= start ? start : recordStarts(start, end).find((at) => at >= offset) ?? end,
  };
}

/** Peers answering from their own copies; `silent` ones never answer. */
function peers(copies: Record<number, LocalCopy>, silent: number[] = []): AskDigest {
  return (peer, from, to) => {
    if (silent.includes(peer)) return Promise.resolve(undefined);
    const mine = copies[peer];
    const range: RangeDigest = { start: mine.start, end: mine.end };
    if (from < mine.start || to > mine.end || from > to) return Promise.resolve(range);
    return Promise.resolve({ ...range, crc: mine.crc(from, to) });
  };
}

/** Flips one bit of the message id in the header of the record at `at`. */
function flipIdBit(bytes: Uint8Array, at: number): Uint8Array {
  const damaged = bytes.slice();
  damaged[at + 13] ^= 0x04;
  return damaged;
}

describe("crossCheck", () => {
  const { bytes, starts } = log(200);

  test("identical copies agree over the whole committed range", async () => {
    const outcome = await crossCheck({
      local: copy(bytes),
      peers: [2, 3],
      needed: 2,
      ask: peers({ 2: copy(bytes), 3: copy(bytes) }),
      windowBytes: 1000,
    });
    expect(outcome).toEqual({ kind: "agrees", from: 0, to: bytes.length });
  });

  test("a flipped id bit in a header is found at its record, in any window", async () => {
    for (const record of [0, 1, 57, 123, 199]) {
      const outcome = await crossCheck({
        local: copy(flipIdBit(bytes, starts[record])),
        peers: [2, 3],
        needed: 2,
        ask: peers({ 2: copy(bytes), 3: copy(bytes) }),
        windowBytes: 1000,
      });
      expect(outcome).toEqual({ kind: "differs", offset: starts[record], nodes: [2, 3] });
    }
  });

  test("one peer that differs is outvoted: this copy is not called damaged", async () => {
    const outcome = await crossCheck({
      local: copy(bytes),
      peers: [2, 3],
      needed: 2,
      ask: peers({ 2: copy(flipIdBit(bytes, starts[40])), 3: copy(bytes) }),
    });
    expect(outcome.kind).toBe("agrees");
  });

  test("only the range every copy holds is compared (retention, a lagging commit)", async () => {
    const damagedEarly = flipIdBit(bytes, starts[5]);
    const outcome = await crossCheck({
      local: copy(damagedEarly, 0, starts[150]),
      peers: [2, 3],
      needed: 2,
      ask: peers({ 2: copy(bytes, starts[10]), 3: copy(bytes, 0, starts[180]) }),
      windowBytes: 512,
    });
    // Record 5 lies before node 2's start: nothing there is compared, so nothing is found.
    expect(outcome).toEqual({ kind: "agrees", from: starts[10], to: starts[150] });
  });

  test("a peer that does not answer means no verdict, never a cut", async () => {
    const outcome = await crossCheck({
      local: copy(flipIdBit(bytes, starts[3])),
      peers: [2, 3],
      needed: 2,
      ask: peers({ 2: copy(bytes), 3: copy(bytes) }, [3]),
    });
    expect(outcome).toEqual({ kind: "skipped", reason: "nodes 3 did not answer" });
  });

  test("with too few peers for a majority it does not compare", async () => {
    const outcome = await crossCheck({
      local: copy(bytes),
      peers: [2],
      needed: 2,
      ask: peers({ 2: copy(bytes) }),
    });
    expect(outcome.kind).toBe("skipped");
  });

  test("a record larger than the window is still compared whole", async () => {
    const outcome = await crossCheck({
      local: copy(flipIdBit(bytes, starts[2])),
      peers: [2, 3],
      needed: 2,
      ask: peers({ 2: copy(bytes), 3: copy(bytes) }),
      windowBytes: 10,
    });
    expect(outcome).toEqual({ kind: "differs", offset: starts[2], nodes: [2, 3] });
  });
});

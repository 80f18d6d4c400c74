import { expect, test } from "bun:test";
import { FRAME_BYTES, FramePool } from "../../../lib/broker/frame_pool.ts";
import { wholeFrame } from "../../../lib/protocol/reply.ts";
import type { HeldRange } from "../../../lib/store/log.ts";

test("a released frame's buffer serves the next take; a second release is ignored", () => {
  const pool = new FramePool();
  const first = pool.take(1000);
  expect(first.frame.length).toBe(1000);
  first.frame[0] = 42;
  first.release!();
  first.release!();
  expect(pool.idle).toBe(1);
  const second = pool.take(FRAME_BYTES);
  expect(second.frame.buffer).toBe(first.frame.buffer);
  expect(pool.idle).toBe(0);
  // Had the double release pooled the buffer twice, this take would share it with `second`.
  const third = pool.take(10);
  expect(third.frame.buffer).not.toBe(second.frame.buffer);
});

test("frames above the pooled size are plain buffers; at most four idle ones are kept", () => {
  const pool = new FramePool();
  const big = pool.take(FRAME_BYTES + 1);
  expect(big.frame.length).toBe(FRAME_BYTES + 1);
  expect(big.release).toBeUndefined();
  const taken = Array.from({ length: 6 }, () => pool.take(100));
  for (const { release } of taken) release!();
  expect(pool.idle).toBe(4);
});

/** A body source whose byte at position p is p mod 251, recording each read. */
function source(reads: [number, number][]) {
  return (target: Uint8Array, at: number, from: number, bytes: number) => {
    reads.push([from, bytes]);
    for (let index = 0; index < bytes; index++) target[at + index] = (from + index) % 251;
  };
}

test("a frame that fits one buffer is read at once, header first", () => {
  const pool = new FramePool();
  const reads: [number, number][] = [];
  const header = new TextEncoder().encode("value 300 7\r\n");
  const frame = pool.frame(header, 300, source(reads));
  expect(frame.rest).toBeUndefined();
  expect(frame.bytes.length).toBe(header.length + 300);
  expect(frame.bytes.subarray(0, header.length)).toEqual(header);
  expect(frame.bytes[header.length + 299]).toBe(299 % 251);
  expect(reads).toEqual([[0, 300]]);
});

test("a larger frame reads its rest a buffer at a time, only when asked, in order", () => {
  const pool = new FramePool();
  const reads: [number, number][] = [];
  const header = new TextEncoder().encode("value 3000000 7\r\n");
  const body = 3_000_000;
  const frame = pool.frame(header, body, source(reads));
  const first = FRAME_BYTES - header.length;
  expect(frame.bytes.length).toBe(FRAME_BYTES);
  expect(reads).toEqual([[0, first]]);
  const rest = frame.rest!;
  expect(rest.remaining).toBe(body - first);
  // The pieces join into the whole body; a released piece's buffer serves the next one.
  const whole = new Uint8Array(body);
  whole.set(frame.bytes.subarray(header.length), 0);
  let at = first;
  let previous: ArrayBufferLike | undefined;
  while (rest.remaining > 0) {
    const piece = rest.next();
    if (previous) expect(piece.bytes.buffer).toBe(previous);
    whole.set(piece.bytes, at);
    at += piece.bytes.length;
    piece.release?.();
    previous = piece.bytes.buffer;
  }
  expect(at).toBe(body);
  expect(reads).toEqual([[0, first], [first, FRAME_BYTES], [
    first + FRAME_BYTES,
    body - first - FRAME_BYTES,
  ]]);
  expect(whole.every((byte, index) => byte === index % 251)).toBe(true);
});

test("wholeFrame joins a frame's first part and its rest", () => {
  const pool = new FramePool();
  const header = new TextEncoder().encode("value 2500000 1\r\n");
  const whole = wholeFrame({ kind: "frame", ...pool.frame(header, 2_500_000, source([])) });
  expect(whole.length).toBe(header.length + 2_500_000);
  expect(whole.subarray(header.length).every((byte, index) => byte === index % 251)).toBe(true);
});

/**
 * A held range over `source`'s bytes whose sends take what `send` says; `released` tells whether
 * the frame let it go (release is idempotent, as Log.holdRange's is).
 */
function heldRange(reads: [number, number][], send: (from: number, count: number) => number) {
  const state = { released: false };
  const range: HeldRange = {
    readInto: source(reads),
    sendInto: (fd, from, count) => {
      expect(fd).toBe(17);
      expect(state.released).toBe(false);
      return send(from, count);
    },
    release: () => (state.released = true),
  };
  return { range, state };
}

test("a file frame reads nothing up front; sending and reading move one position", () => {
  const pool = new FramePool();
  const reads: [number, number][] = [];
  const header = new TextEncoder().encode("value 2621440 9\r\n");
  const bodyBytes = 2.5 * 1024 * 1024;
  // The socket takes 700,000 bytes, then is full, then takes whatever is asked.
  const takes = [700_000, 0];
  const sends: [number, number][] = [];
  const { range, state } = heldRange(reads, (from, count) => {
    const taken = Math.min(count, takes.shift() ?? count);
    sends.push([from, taken]);
    return taken;
  });
  const { bytes, rest } = pool.fileFrame(header, bodyBytes, range);
  expect(bytes).toEqual(header);
  expect(reads).toEqual([]);
  expect(rest.remaining).toBe(bodyBytes);
  expect(rest.sendTo!(17)).toBe(700_000);
  expect(rest.sendTo!(17)).toBe(0);
  // Full socket: the next piece is read into a pooled buffer from where the send stopped.
  const piece = rest.next();
  expect(piece.bytes.length).toBe(FRAME_BYTES);
  expect(piece.bytes[0]).toBe(700_000 % 251);
  expect(reads).toEqual([[700_000, FRAME_BYTES]]);
  expect(state.released).toBe(false); // the file is still needed
  expect(rest.sendTo!(17)).toBe(bodyBytes - 700_000 - FRAME_BYTES);
  expect(rest.remaining).toBe(0);
  expect(sends.map(([from]) => from)).toEqual([0, 700_000, 700_000 + FRAME_BYTES]);
  expect(state.released).toBe(true); // sent whole: the file is let go
});

test("a file frame abandoned half sent lets its file go", () => {
  const { range, state } = heldRange([], (_from, count) => Math.min(count, 4096));
  const { rest } = new FramePool().fileFrame(new Uint8Array(0), 1024 * 1024, range);
  expect(rest.sendTo!(17)).toBe(4096);
  expect(state.released).toBe(false);
  rest.abandon!();
  expect(state.released).toBe(true);
});

test("a file frame whose last bytes are read into a buffer lets its file go", () => {
  const { range, state } = heldRange([], () => 0); // the socket is full
  const { rest } = new FramePool().fileFrame(new Uint8Array(0), 100_000, range);
  expect(rest.sendTo!(17)).toBe(0);
  expect(rest.next().bytes.length).toBe(100_000);
  expect(rest.remaining).toBe(0);
  expect(state.released).toBe(true);
});

test("a frame read into buffers offers no send from a file", () => {
  const pool = new FramePool();
  const header = new TextEncoder().encode("value 2097152 1\r\n");
  const frame = pool.frame(header, 2 * 1024 * 1024, source([]));
  expect(frame.rest).toBeDefined();
  expect(frame.rest!.sendTo).toBeUndefined();
  expect(frame.rest!.abandon).toBeUndefined();
});

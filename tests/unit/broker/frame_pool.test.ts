import { expect, test } from "bun:test";
import { FRAME_BYTES, FramePool } from "../../../lib/broker/frame_pool.ts";

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

/**
 * @module Buffers for `value` frames (a `get`'s reply), reused instead of allocated per `get`.
 * A consumer reading a backlog asks for 1 MiB at a time; a fresh 1 MiB buffer per answer is
 * freed only when the garbage collector gets to it, so under a fast consume tens of them were
 * alive at once (the server's RSS peak, bench row 5b), and each was faulted in anew. A frame
 * comes back through its reply's `release` once the connection handed every byte to the kernel
 * (lib/server/connection.ts); one that never comes back (a slow socket kept it, a forwarded or
 * HTTP reply) is simply collected. Only buffers of exactly FRAME_BYTES are pooled.
 */

/** Pooled capacity: a 1 MiB read (what MetaQ's clients ask for) and its `value` header. */
export const FRAME_BYTES = 1024 * 1024 + 64;

/** Idle frames kept; a consumer has one `get` in flight, a few consumers a few. */
const IDLE_FRAMES_MAX = 4;

export class FramePool {
  readonly #idle: Uint8Array[] = [];

  /** A buffer of at least `bytes` (not zero-filled), and how to give it back when done. */
  take(bytes: number): { frame: Uint8Array; release?: () => void } {
    if (bytes > FRAME_BYTES) return { frame: new Uint8Array(bytes) };
    const buffer = this.#idle.pop() ?? new Uint8Array(FRAME_BYTES);
    let released = false;
    return {
      frame: buffer.subarray(0, bytes),
      release: () => {
        if (released) return; // a second release would hand one buffer to two frames
        released = true;
        if (this.#idle.length < IDLE_FRAMES_MAX) this.#idle.push(buffer);
      },
    };
  }

  /** Idle buffers held (tests). */
  get idle(): number {
    return this.#idle.length;
  }
}

/**
 * @module Buffers for `value` frames (a `get`'s reply), reused instead of allocated per `get`.
 * A consumer reading a backlog asks for 1 MiB at a time; a fresh 1 MiB buffer per answer is
 * freed only when the garbage collector gets to it, so under a fast consume tens of them were
 * alive at once (the server's RSS peak, bench row 5b), and each was faulted in anew. A frame
 * comes back through its reply's `release` once the connection handed every byte to the kernel
 * (lib/server/connection.ts); one that never comes back (a slow socket kept it, a forwarded or
 * HTTP reply) is simply collected. Only buffers of exactly FRAME_BYTES are pooled.
 *
 * A frame larger than one buffer (a `get` of a message over 1 MiB, up to 64 MiB) is not read
 * into one fresh array: its first buffer goes out at once and the rest is read a buffer at a time
 * as the socket takes it (`rest`, lib/protocol/reply.ts). A fresh 64 MiB array, then the copy the
 * socket keeps of what it could not write at once, cost ~1 s per such `get` on this machine (page
 * faults), and a few slow readers of large messages held that much memory each.
 */
import type { FrameRest } from "../protocol/reply.ts";
import type { HeldRange } from "../store/log.ts";

/** Reads `bytes` of a frame's body, from `from` bytes into it, into `target` at `at`. */
export type BodyReader = (target: Uint8Array, at: number, from: number, bytes: number) => void;

/** Pooled capacity: a 1 MiB read (what MetaQ's clients ask for) and its `value` header. */
export const FRAME_BYTES = 1024 * 1024 + 64;

/**
 * Smallest body left in its file for the socket to send (`fileFrame`). Below it a copy costs
 * less than the extra system call, and the header and body go out as one write, one packet.
 */
export const FILE_FRAME_BYTES_MIN = 64 * 1024;

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

  /**
   * A frame of `header` then a body of `bodyBytes` read by `read`: in one buffer when it fits,
   * else its first buffer and the rest to be read piece by piece.
   */
  frame(
    header: Uint8Array,
    bodyBytes: number,
    read: BodyReader,
  ): { bytes: Uint8Array; release?: () => void; rest?: FrameRest } {
    const firstBytes = Math.min(header.length + bodyBytes, FRAME_BYTES);
    const { frame, release } = this.take(firstBytes);
    frame.set(header, 0);
    const first = firstBytes - header.length;
    read(frame, header.length, 0, first);
    if (first === bodyBytes) return { bytes: frame, release };
    return { bytes: frame, release, rest: this.#rest(bodyBytes, first, read) };
  }

  /**
   * A frame whose body stays in its file until the socket's writer asks for it: `bytes` is the
   * header alone, and `rest` both sends the body straight from the file (`sendTo`, when the
   * writer's socket can) and reads it piece by piece into pooled buffers (when it cannot, or the
   * socket is full). Nothing is read before the writer knows which. The body's file is held
   * until the rest is handed over or abandoned, then `body.release` lets it go.
   */
  fileFrame(
    header: Uint8Array,
    bodyBytes: number,
    body: HeldRange,
  ): { bytes: Uint8Array; rest: FrameRest } {
    return { bytes: header, rest: this.#rest(bodyBytes, 0, body.readInto, body) };
  }

  /**
   * The body of a frame from `sent` bytes on: read a pooled buffer at a time (`next`) and, given
   * a file body, sent straight from its file (`sendTo`); both move the same position. A file
   * body is released (idempotent) once the last byte is handed over, or when the writer abandons
   * the rest.
   */
  #rest(bodyBytes: number, sent: number, read: BodyReader, file?: HeldRange): FrameRest {
    const moved = (bytes: number) => {
      sent += bytes;
      if (sent === bodyBytes) file?.release();
    };
    return {
      get remaining() {
        return bodyBytes - sent;
      },
      next: () => {
        const bytes = Math.min(FRAME_BYTES, bodyBytes - sent);
        const piece = this.take(bytes);
        read(piece.frame, 0, sent, bytes);
        moved(bytes);
        return { bytes: piece.frame, release: piece.release };
      },
      sendTo: file && ((socketFd) => {
        const taken = file.sendInto(socketFd, sent, bodyBytes - sent);
        moved(taken);
        return taken;
      }),
      abandon: file && (() => file.release()),
    };
  }

  /** Idle buffers held (tests). */
  get idle(): number {
    return this.#idle.length;
  }
}

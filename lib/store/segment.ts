/**
 * @module Segment: one append-only file of records, named by the partition offset of its first
 * byte (`<20 digits>.meta`, as MetaQ names them). Knows offsets and bytes, not topics.
 */
import { assert } from "../assert.ts";
import type { FileHandle } from "./storage.ts";

export const SEGMENT_SUFFIX = ".meta";
const SEGMENT_NAME = /^(\d{20})\.meta$/;

export function segmentFileName(startOffset: number): string {
  assert(Number.isSafeInteger(startOffset) && startOffset >= 0);
  return `${String(startOffset).padStart(20, "0")}${SEGMENT_SUFFIX}`;
}

/** The start offset a segment file name encodes, or undefined for other files. */
export function parseSegmentFileName(name: string): number | undefined {
  const match = SEGMENT_NAME.exec(name);
  if (!match) return undefined;
  const start = Number(match[1]);
  return Number.isSafeInteger(start) ? start : undefined;
}

export class Segment {
  readonly startOffset: number;
  readonly file: FileHandle;
  /** Bytes written to the file (not necessarily synced). */
  size: number;
  /** Replies still to be sent from this file (`hold`). */
  #holds = 0;
  /** The log let this segment go: the file closes once no reply holds it. */
  #retired = false;

  constructor(startOffset: number, file: FileHandle, size: number) {
    this.startOffset = startOffset;
    this.file = file;
    this.size = size;
  }

  get endOffset(): number {
    return this.startOffset + this.size;
  }

  contains(offset: number): boolean {
    return offset >= this.startOffset && offset < this.endOffset;
  }

  append(chunks: readonly Uint8Array[], bytes: number): void {
    this.file.write(chunks, this.size);
    this.size += bytes;
  }

  /** Copies `length` bytes at partition `offset` into `target`. */
  readInto(target: Uint8Array, targetOffset: number, offset: number, length: number): void {
    assert(offset >= this.startOffset && offset + length <= this.endOffset);
    const count = this.file.read(target, targetOffset, length, offset - this.startOffset);
    assert(count === length, `Segment ${this.file.path} returned ${count} of ${length} bytes`);
  }

  /** Sends up to `length` bytes at partition `offset` into a socket; returns the bytes it took. */
  sendInto(socketFd: number, offset: number, length: number): number {
    assert(offset >= this.startOffset && offset + length <= this.endOffset);
    return this.file.sendTo?.(socketFd, length, offset - this.startOffset) ?? 0;
  }

  /**
   * Keeps the file open for a reply whose bytes are sent from it later, after the log may have
   * let the segment go (retention, a cut, a close). A deleted file stays readable through an
   * open descriptor, so such a reply is finished as it was promised. Returns the release
   * (idempotent).
   */
  hold(): () => void {
    assert(!this.#retired, `Segment ${this.file.path} is no longer in its log`);
    this.#holds += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#holds -= 1;
      if (this.#holds === 0 && this.#retired) this.file.close();
    };
  }

  /** The log no longer reads this segment: its file closes now, or at the last hold's release. */
  retire(): void {
    if (this.#retired) return;
    this.#retired = true;
    if (this.#holds === 0) this.file.close();
  }

  truncate(size: number): void {
    assert(size >= 0 && size <= this.size);
    this.file.truncate(size);
    this.size = size;
  }
}

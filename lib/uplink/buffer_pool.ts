/**
 * @module BufferPool: the few large buffers the uplink's batches are read and built in, used
 * again instead of allocated per batch, so draining a long backlog leaves little garbage and the
 * edge's memory stays near what the batches in flight need. Keeps at most `keptMax` free
 * buffers; a buffer too small for a request is dropped and a larger one made.
 */
export class BufferPool {
  readonly #free: Uint8Array[] = [];
  readonly #keptMax: number;

  constructor(keptMax: number) {
    this.#keptMax = keptMax;
  }

  /** A buffer of at least `bytes` (its contents are whatever was left in it). */
  take(bytes: number): Uint8Array {
    const index = this.#free.findIndex((buffer) => buffer.length >= bytes);
    if (index >= 0) return this.#free.splice(index, 1)[0];
    return new Uint8Array(bytes);
  }

  /** Gives a buffer back once nothing refers to its bytes any more. */
  give(buffer: Uint8Array): void {
    if (this.#free.length < this.#keptMax) this.#free.push(buffer);
  }
}

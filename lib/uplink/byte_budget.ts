/**
 * @module ByteBudget: bounds the batch bytes all forwarded partitions hold at once (read from
 * the edge's log and not yet acknowledged by the hub), so an edge with many partitions and a
 * long backlog drains it in bounded memory. Waiters are served in arrival order; a request
 * larger than the whole budget is granted alone (when nothing else is held).
 */
export class ByteBudget {
  readonly totalBytes: number;
  #heldBytes = 0;
  readonly #waiters: { bytes: number; grant: () => void }[] = [];

  constructor(totalBytes: number) {
    this.totalBytes = totalBytes;
  }

  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** Resolves once `bytes` are held for the caller; give them back with `release`. */
  acquire(bytes: number): Promise<void> {
    if (this.#waiters.length === 0 && this.#fits(bytes)) {
      this.#heldBytes += bytes;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiters.push({ bytes, grant: resolve }));
  }

  release(bytes: number): void {
    this.#heldBytes -= bytes;
    while (this.#waiters.length > 0 && this.#fits(this.#waiters[0].bytes)) {
      const waiter = this.#waiters.shift()!;
      this.#heldBytes += waiter.bytes;
      waiter.grant();
    }
  }

  #fits(bytes: number): boolean {
    return this.#heldBytes === 0 || this.#heldBytes + bytes <= this.totalBytes;
  }
}

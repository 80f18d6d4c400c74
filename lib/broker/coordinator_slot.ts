/**
 * @module CoordinatorSlot: the coordinator a part runs while this node writes the part's log
 * (the group service, the transaction manager), and a bounded wait for one. A request that
 * reaches the log's new writer a moment before it is ready (it has just been elected and has
 * not committed in its own epoch yet) waits here instead of being refused.
 */

export class CoordinatorSlot<T> {
  #value: T | undefined;
  readonly #waiters = new Set<(value: T | undefined) => void>();

  get value(): T | undefined {
    return this.#value;
  }

  set(value: T): void {
    this.#value = value;
    for (const waiter of [...this.#waiters]) waiter(value);
  }

  /** Empties the slot; returns what it held. */
  take(): T | undefined {
    const value = this.#value;
    this.#value = undefined;
    return value;
  }

  /** The coordinator now, or once there is one within `timeoutMs` (else undefined). */
  when(timeoutMs: number): Promise<T | undefined> {
    if (this.#value !== undefined) return Promise.resolve(this.#value);
    return new Promise((resolve) => {
      const waiter = (value: T | undefined) => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        resolve(value);
      };
      const timer = setTimeout(() => waiter(undefined), timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  /** Ends every wait now, empty-handed (the part stops). */
  close(): void {
    for (const waiter of [...this.#waiters]) waiter(undefined);
  }
}

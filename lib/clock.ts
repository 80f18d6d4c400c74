/**
 * @module Clocks. Wall time is for message ids, timestamps and time-based retention; the
 * monotonic clock is for timeouts and rates. Cores take a Clock as a parameter so tests can
 * drive time by hand.
 */

export interface Clock {
  /** Milliseconds since the Unix epoch (may jump). */
  wallMs(): number;
  /** Milliseconds from an arbitrary origin, never going backwards. */
  monotonicMs(): number;
}

export const systemClock: Clock = {
  wallMs: () => Date.now(),
  monotonicMs: () => performance.now(),
};

/** A clock that moves only when told to: for unit tests and the simulator. */
export class ManualClock implements Clock {
  #wall: number;
  #monotonic = 0;

  constructor(wallMs = Date.UTC(2026, 0, 1)) {
    this.#wall = wallMs;
  }

  wallMs(): number {
    return this.#wall;
  }

  monotonicMs(): number {
    return this.#monotonic;
  }

  advance(ms: number): void {
    this.#wall += ms;
    this.#monotonic += ms;
  }

  /** Moves wall time only, as an NTP step would. */
  jumpWall(ms: number): void {
    this.#wall += ms;
  }
}

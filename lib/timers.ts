/**
 * @module Timers: calling back later. The cluster's driver (replicas, the node, forwarding) takes
 * a Timers as a parameter, as it takes a Clock, so the simulator can run it in virtual time;
 * production passes `systemTimers`, which are the runtime's own setTimeout and setInterval.
 */

/** Stops a timer; calling it again, or after the timer fired, does nothing. */
export type CancelTimer = () => void;

export interface Timers {
  /** Calls `callback` once, `ms` milliseconds from now. */
  after(ms: number, callback: () => void): CancelTimer;
  /** Calls `callback` every `ms` milliseconds until cancelled. */
  every(ms: number, callback: () => void): CancelTimer;
}

export const systemTimers: Timers = {
  after(ms, callback) {
    const timer = setTimeout(callback, ms);
    return () => clearTimeout(timer);
  },
  every(ms, callback) {
    const timer = setInterval(callback, ms);
    return () => clearInterval(timer);
  },
};

/** Resolves `ms` milliseconds from now on `timers`. */
export function sleep(timers: Timers, ms: number): Promise<void> {
  return new Promise((resolve) => timers.after(ms, resolve));
}

/**
 * @module Virtual time for the driver simulator: one event queue in milliseconds, and for each
 * run of each node a Clock and Timers on it. The node's code is real and asynchronous, so after
 * each event the loop lets promises and `setImmediate` callbacks (the segment log's writer) run
 * before time moves on; nothing in the simulated code waits on real time, so a run is exactly
 * reproducible from its seed.
 *
 * A node's time can stop: a crash kills its incarnation (its timers never fire again, so code
 * of a dead process never runs on), and a pause holds its callbacks until it resumes.
 */
import { setImmediate } from "node:timers";
import type { Clock } from "../../lib/clock.ts";
import type { CancelTimer, Timers } from "../../lib/timers.ts";
import { EventQueue } from "./event_queue.ts";

/** Settling rounds after one event; work still appearing after this many is left for later. */
const SETTLE_ROUNDS_MAX = 64;

export class VirtualTime {
  readonly #queue = new EventQueue<() => void>();
  #now = 0;
  /** Bumped by everything that starts work (storage, network, timers), to see when it stops. */
  activity = 0;
  events = 0;

  get now(): number {
    return this.#now;
  }

  get pending(): number {
    return this.#queue.size;
  }

  /** Runs `task` at virtual time `time` (never before now). */
  at(time: number, task: () => void): void {
    this.activity++;
    this.#queue.push(Math.max(time, this.#now), task);
  }

  after(ms: number, task: () => void): void {
    this.at(this.#now + ms, task);
  }

  /**
   * Runs events in time order until `done()` or the queue is empty or past `untilMs`; after each
   * event, lets the code it woke up run to its next wait.
   */
  async run(done: () => boolean, untilMs: number): Promise<void> {
    while (!done()) {
      if (this.#queue.peekTime() > untilMs) return;
      const next = this.#queue.pop();
      if (!next) return;
      this.#now = next.time;
      this.events++;
      next.event();
      await this.settle();
    }
  }

  /** Lets microtasks and immediates run until no new work appears (bounded). */
  async settle(): Promise<void> {
    for (let round = 0; round < SETTLE_ROUNDS_MAX; round++) {
      const before = this.activity;
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.activity === before) return;
    }
  }
}

/**
 * The clock and timers one incarnation of one node sees. Its clock runs at `rate` times
 * virtual time (drift); `kill()` ends the incarnation, `pause()`/`resume()` freeze it.
 */
export class NodeTime implements Clock, Timers {
  readonly #time: VirtualTime;
  readonly #rate: number;
  readonly #wallBaseMs: number;
  #alive = true;
  #paused = false;
  #held: (() => void)[] = [];

  constructor(time: VirtualTime, rate: number, wallBaseMs: number) {
    this.#time = time;
    this.#rate = rate;
    this.#wallBaseMs = wallBaseMs;
  }

  get alive(): boolean {
    return this.#alive;
  }

  get paused(): boolean {
    return this.#paused;
  }

  wallMs(): number {
    return this.#wallBaseMs + this.monotonicMs();
  }

  monotonicMs(): number {
    return Math.floor(this.#time.now * this.#rate);
  }

  after(ms: number, callback: () => void): CancelTimer {
    let cancelled = false;
    this.#time.after(Math.max(1, ms) / this.#rate, () => {
      if (!cancelled) this.run(callback);
    });
    return () => void (cancelled = true);
  }

  every(ms: number, callback: () => void): CancelTimer {
    let cancelled = false;
    // A stopped process misses its interval's beats: it fires once when it wakes, not once per beat.
    let held = false;
    const period = Math.max(1, ms) / this.#rate;
    const fire = () => {
      if (cancelled || !this.#alive) return;
      this.#time.after(period, fire);
      if (held) return;
      held = this.#paused;
      this.run(() => {
        held = false;
        if (!cancelled) callback();
      });
    };
    this.#time.after(period, fire);
    return () => void (cancelled = true);
  }

  /** Runs `callback` in this node's process: never once it died, later if it is paused. */
  run(callback: () => void): void {
    if (!this.#alive) return;
    if (this.#paused) {
      this.#held.push(callback);
      return;
    }
    callback();
  }

  kill(): void {
    this.#alive = false;
    this.#held = [];
  }

  pause(): void {
    this.#paused = true;
  }

  /** Runs what arrived while paused, in arrival order. */
  resume(): void {
    if (!this.#alive || !this.#paused) return;
    this.#paused = false;
    const held = this.#held;
    this.#held = [];
    for (const callback of held) callback();
  }
}

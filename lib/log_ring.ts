/**
 * @module LogRing: the last few warnings and errors a broker logged, kept in memory for the
 * dashboard. Bounded: the oldest entry is dropped when a new one arrives at capacity. It is not a
 * log file and keeps nothing across restarts.
 */
import { assert } from "./assert.ts";
import type { LogFields, Logger, LogLevel } from "./log.ts";

export interface LogEntry {
  /** Milliseconds since the Unix epoch. */
  readonly timeMs: number;
  readonly level: LogLevel;
  readonly message: string;
  readonly fields: Readonly<Record<string, string>>;
}

export class LogRing {
  readonly capacity: number;
  readonly #entries: LogEntry[] = [];
  #next = 0;
  #total = 0;

  constructor(capacity: number) {
    assert(Number.isInteger(capacity) && capacity > 0);
    this.capacity = capacity;
  }

  /** Entries recorded since start, including those already dropped. */
  get total(): number {
    return this.#total;
  }

  add(entry: LogEntry): void {
    if (this.#entries.length < this.capacity) {
      this.#entries.push(entry);
    } else {
      this.#entries[this.#next] = entry;
      this.#next = (this.#next + 1) % this.capacity;
    }
    this.#total += 1;
  }

  /** The kept entries, newest first. */
  recent(): LogEntry[] {
    const ordered = [...this.#entries.slice(this.#next), ...this.#entries.slice(0, this.#next)];
    return ordered.reverse();
  }
}

/** A logger that writes through `inner` and keeps warnings and errors in `ring`. */
export function ringLogger(
  inner: Logger,
  ring: LogRing,
  now: () => number = () => Date.now(),
): Logger {
  return {
    log(level: LogLevel, message: string, fields?: LogFields) {
      inner.log(level, message, fields);
      if (level !== "warn" && level !== "error") return;
      const kept: Record<string, string> = {};
      for (const [key, value] of Object.entries(fields ?? {})) {
        if (value !== undefined) kept[key] = String(value);
      }
      ring.add({ timeMs: now(), level, message, fields: kept });
    },
  };
}

/**
 * @module Test-build clock skew, switched on by `METAQ_TEST_CLOCK_FILE=<file>`: the broker's wall
 * clock becomes the system's plus the offset in that file (whole milliseconds, "+604800000" or
 * "-300000"; absent or empty = 0). The file is read again at most every CLOCK_FILE_RECHECK_MS of
 * monotonic time, so a harness jumps a running node's clock by rewriting it. Only wall time
 * moves: the monotonic clock that drives Raft timers and timeouts is untouched, which is what
 * the clock-skew scenario (T11) holds the broker to. Production never sets the variable; without
 * it `clockFromEnv` returns the system clock itself.
 */
import * as fs from "node:fs";
import { type Clock, systemClock } from "./clock.ts";

/** How stale the offset may be: a jump takes effect within this many ms. */
export const CLOCK_FILE_RECHECK_MS = 100;

export function clockFromEnv(env: Record<string, string | undefined>): Clock {
  const file = env.METAQ_TEST_CLOCK_FILE;
  return file ? offsetClock(systemClock, () => readOffsetMs(file)) : systemClock;
}

/** `base` with `readOffset()` added to its wall time, re-read at most every 100 ms. */
export function offsetClock(base: Clock, readOffset: () => number): Clock {
  let offsetMs = readOffset();
  let readAt = base.monotonicMs();
  return {
    wallMs() {
      const now = base.monotonicMs();
      if (now - readAt >= CLOCK_FILE_RECHECK_MS) {
        offsetMs = readOffset();
        readAt = now;
      }
      return base.wallMs() + offsetMs;
    },
    monotonicMs: () => base.monotonicMs(),
  };
}

/** The offset in `file`; 0 when it is missing, empty or not a whole number. */
export function readOffsetMs(file: string): number {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8").trim();
  } catch {
    return 0;
  }
  const value = Number(text);
  return text !== "" && Number.isInteger(value) ? value : 0;
}

/**
 * @module Helpers for delayed-message tests: the `delay` request line, and a watcher that reads
 * each record a partition acknowledges the moment its end moves, with the broker's wall clock
 * at that moment (so a test can tell a message that became readable before its time).
 */
import type { Clock } from "../../lib/clock.ts";
import { parseScheduledAttribute, type Scheduled } from "../../lib/protocol/delayed.ts";
import { decodeRecords, splitAttribute } from "../../lib/protocol/record.ts";
import type { Log } from "../../lib/store/log.ts";
import type { Timers } from "../../lib/timers.ts";

/** `delay` + body: `when` is `+<ms>` or an epoch time in ms. */
export function delayLine(
  options: { topic?: string; partition?: number; body: string; when: string; opaque: number },
): string {
  const { topic = "test", partition = 0, body, when, opaque } = options;
  return `delay ${topic} ${partition} ${Buffer.byteLength(body)} 0 -1 ${when} ${opaque}\r\n${body}`;
}

export interface Arrival {
  readonly id: bigint;
  readonly payload: string;
  readonly scheduled: Scheduled | undefined;
  readonly attribute: string | undefined;
  /** The broker's wall clock when the record became readable. */
  readonly readableAtMs: number;
}

/** Every record appended to `log` from now on, as it becomes readable. */
export function watchArrivals(log: Log, clock: Clock): { arrivals: Arrival[]; stop: () => void } {
  const arrivals: Arrival[] = [];
  let seen = log.endOffset;
  const read = () => {
    const end = log.endOffset;
    if (end <= seen) return;
    const now = clock.wallMs();
    const bytes = new Uint8Array(end - seen);
    let at = seen;
    while (at < end) {
      const length = log.readableAt(at, end - at);
      log.readInto(bytes, at - seen, at, length);
      at += length;
    }
    for (const record of decodeRecords(bytes, seen)) {
      const { attribute, payload } = splitAttribute(record.flag, record.data);
      const parsed = attribute === undefined ? undefined : parseScheduledAttribute(attribute);
      arrivals.push({
        id: record.id,
        payload: new TextDecoder().decode(payload),
        scheduled: parsed?.scheduled,
        attribute: parsed ? parsed.attribute : attribute,
        readableAtMs: now,
      });
    }
    seen = end;
  };
  const stop = log.onChange(read);
  return { arrivals, stop };
}

/**
 * A wall clock that runs `factor` times faster than real time, and timers that wait
 * accordingly: a minute of delays takes 60/factor seconds.
 */
export function fastTime(factor: number): { clock: Clock; timers: Timers } {
  const realStart = Date.now();
  const start = performance.now();
  const clock: Clock = {
    wallMs: () => Math.floor(realStart + (performance.now() - start) * factor),
    monotonicMs: () => performance.now(),
  };
  const timers: Timers = {
    after(ms, callback) {
      const timer = setTimeout(callback, Math.ceil(ms / factor));
      return () => clearTimeout(timer);
    },
    every(ms, callback) {
      const timer = setInterval(callback, Math.max(1, Math.ceil(ms / factor)));
      return () => clearInterval(timer);
    },
  };
  return { clock, timers };
}

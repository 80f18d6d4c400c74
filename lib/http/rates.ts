/**
 * @module RateTracker: produce and consume rates per partition and in total, derived from
 * cumulative figures (records appended, readable end, bytes served) and the clock of the node
 * that took them (partition_facts.ts): this node's, or a partition leader's in a cluster. A
 * partition's rate is the change between the last two distinct figures it was seen with,
 * divided by the time between them on that node's clock, so every node that hears the same
 * figures shows the same rates. Figures from another node (a new leader) start the partition
 * over; figures that stop changing for STALE_MS (a leader gone silent) read as zero.
 *
 * It samples when asked, at most once a second, so nothing runs while nobody looks, and keeps
 * the last minute of totals for the dashboard chart.
 */
import type { Clock } from "../clock.ts";

export const SAMPLE_INTERVAL_MS = 1000;
export const HISTORY_POINTS_MAX = 60;
/** Figures unchanged this long (three of a leader's info intervals) are no longer a rate. */
export const STALE_MS = 3500;

export interface Rates {
  readonly produceMessagesPerSecond: number;
  readonly produceBytesPerSecond: number;
  readonly consumeBytesPerSecond: number;
}

export interface HistoryPoint extends Rates {
  /** Wall-clock milliseconds of the sample. */
  readonly timeMs: number;
}

/** The cumulative figures of one partition, as one node took them. */
export interface RateFigures {
  /** `<topic>-<partition>`. */
  readonly name: string;
  /** The node whose clock `timeMs` is. */
  readonly source: string;
  readonly timeMs: number;
  readonly messages: number;
  readonly endOffset: number;
  readonly servedBytes: number;
}

interface Track {
  latest: RateFigures;
  rates: Rates;
  /** This node's monotonic time when `latest` last changed. */
  changedMs: number;
}

const ZERO: Rates = {
  produceMessagesPerSecond: 0,
  produceBytesPerSecond: 0,
  consumeBytesPerSecond: 0,
};

export class RateTracker {
  readonly #clock: Clock;
  readonly #tracks = new Map<string, Track>();
  #lastSampleMs: number | undefined;
  readonly #history: HistoryPoint[] = [];

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Takes a sample of `figures()` unless the last one is younger than SAMPLE_INTERVAL_MS. */
  sample(figures: () => Iterable<RateFigures>): void {
    const now = this.#clock.monotonicMs();
    const last = this.#lastSampleMs;
    if (last !== undefined && now - last < SAMPLE_INTERVAL_MS) return;
    this.#lastSampleMs = now;
    const seen = new Set<string>();
    for (const latest of figures()) {
      seen.add(latest.name);
      const track = this.#tracks.get(latest.name);
      if (!track || track.latest.source !== latest.source) {
        this.#tracks.set(latest.name, { latest, rates: ZERO, changedMs: now });
      } else if (latest.timeMs > track.latest.timeMs) {
        track.rates = ratesBetween(track.latest, latest);
        track.latest = latest;
        track.changedMs = now;
      } else if (now - track.changedMs >= STALE_MS) {
        track.rates = ZERO;
      }
    }
    for (const name of [...this.#tracks.keys()]) if (!seen.has(name)) this.#tracks.delete(name);
    if (last === undefined) return;
    this.#history.push({ timeMs: this.#clock.wallMs(), ...this.total() });
    if (this.#history.length > HISTORY_POINTS_MAX) this.#history.shift();
  }

  /** Rates of one partition (`topic-partition`); zero until it was seen with two figures. */
  partition(name: string): Rates {
    return this.#tracks.get(name)?.rates ?? ZERO;
  }

  /** Rates of every partition together. */
  total(): Rates {
    let produceMessages = 0;
    let produceBytes = 0;
    let consumeBytes = 0;
    for (const { rates } of this.#tracks.values()) {
      produceMessages += rates.produceMessagesPerSecond;
      produceBytes += rates.produceBytesPerSecond;
      consumeBytes += rates.consumeBytesPerSecond;
    }
    return {
      produceMessagesPerSecond: round(produceMessages),
      produceBytesPerSecond: round(produceBytes),
      consumeBytesPerSecond: round(consumeBytes),
    };
  }

  /** Totals of the last minute, oldest first. */
  history(): readonly HistoryPoint[] {
    return this.#history;
  }
}

function ratesBetween(previous: RateFigures, latest: RateFigures): Rates {
  const seconds = (latest.timeMs - previous.timeMs) / 1000;
  const per = (delta: number) => Math.max(0, round(delta / seconds));
  return {
    produceMessagesPerSecond: per(latest.messages - previous.messages),
    produceBytesPerSecond: per(latest.endOffset - previous.endOffset),
    consumeBytesPerSecond: per(latest.servedBytes - previous.servedBytes),
  };
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

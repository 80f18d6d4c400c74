/**
 * @module RateTracker: produce and consume rates per partition and in total, from counters the
 * broker already keeps (a log's message count and acknowledged end, bytes served per partition).
 * It samples when asked, at most once a second, so nothing runs while nobody looks; a rate is the
 * change between the last two samples. Keeps the last minute of totals for the dashboard chart.
 */
import type { Broker } from "../broker/broker.ts";
import type { Clock } from "../clock.ts";

export const SAMPLE_INTERVAL_MS = 1000;
export const HISTORY_POINTS_MAX = 60;

export interface Rates {
  readonly produceMessagesPerSecond: number;
  readonly produceBytesPerSecond: number;
  readonly consumeBytesPerSecond: number;
}

export interface HistoryPoint extends Rates {
  /** Wall-clock milliseconds of the sample. */
  readonly timeMs: number;
}

interface Counts {
  messages: number;
  bytes: number;
  served: number;
}

interface Sample {
  readonly monotonicMs: number;
  readonly partitions: Map<string, Counts>;
  readonly total: Counts;
}

const ZERO: Rates = {
  produceMessagesPerSecond: 0,
  produceBytesPerSecond: 0,
  consumeBytesPerSecond: 0,
};

export class RateTracker {
  readonly #broker: Broker;
  readonly #clock: Clock;
  #previous: Sample | undefined;
  #latest: Sample | undefined;
  readonly #history: HistoryPoint[] = [];

  constructor(broker: Broker, clock: Clock) {
    this.#broker = broker;
    this.#clock = clock;
  }

  /** Takes a sample unless the last one is younger than SAMPLE_INTERVAL_MS. */
  sample(): void {
    const now = this.#clock.monotonicMs();
    if (this.#latest && now - this.#latest.monotonicMs < SAMPLE_INTERVAL_MS) return;
    const partitions = new Map<string, Counts>();
    const total: Counts = { messages: 0, bytes: 0, served: 0 };
    const served = this.#broker.stats.servedBytes;
    for (const log of this.#broker.store.logs()) {
      const counts = {
        messages: log.messageCount,
        bytes: log.ackedEnd,
        served: served.get(log.name) ?? 0,
      };
      partitions.set(log.name, counts);
      total.messages += counts.messages;
      total.bytes += counts.bytes;
    }
    total.served = this.#broker.stats.counters.getBytes;
    this.#previous = this.#latest;
    this.#latest = { monotonicMs: now, partitions, total };
    if (this.#previous) {
      this.#history.push({ timeMs: this.#clock.wallMs(), ...this.total() });
      if (this.#history.length > HISTORY_POINTS_MAX) this.#history.shift();
    }
  }

  /** Rates of one partition (`topic-partition`); zero until two samples exist. */
  partition(name: string): Rates {
    const latest = this.#latest?.partitions.get(name);
    if (!latest || !this.#previous) return ZERO;
    const previous = this.#previous.partitions.get(name) ?? { messages: 0, bytes: 0, served: 0 };
    return this.#rates(previous, latest);
  }

  /** Rates of the whole broker. */
  total(): Rates {
    if (!this.#latest || !this.#previous) return ZERO;
    return this.#rates(this.#previous.total, this.#latest.total);
  }

  /** Totals of the last minute, oldest first. */
  history(): readonly HistoryPoint[] {
    return this.#history;
  }

  #rates(previous: Counts, latest: Counts): Rates {
    const seconds = (this.#latest!.monotonicMs - this.#previous!.monotonicMs) / 1000;
    const per = (delta: number) => Math.max(0, Math.round((delta / seconds) * 100) / 100);
    return {
      produceMessagesPerSecond: per(latest.messages - previous.messages),
      produceBytesPerSecond: per(latest.bytes - previous.bytes),
      consumeBytesPerSecond: per(latest.served - previous.served),
    };
  }
}

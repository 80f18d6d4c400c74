/**
 * @module How late delayed messages reach their partitions: for each message, the time from
 * its delivery time to the moment its partition acknowledged it (readable by consumers), as
 * the node that delivered it measured with its wall clock. Keeps cumulative counts in fixed
 * buckets (for `/metrics`) and the most recent samples (for exact p50/p99 in `stats` and the
 * dashboard). Pure: the caller passes the figures.
 */

/** Upper bounds of the lateness buckets, in milliseconds. */
export const LATENESS_BUCKETS_MS = [
  1,
  2,
  5,
  10,
  20,
  50,
  100,
  200,
  500,
  1000,
  2000,
  5000,
  10_000,
  60_000,
] as const;

/** Recent samples kept for quantiles. */
const RECENT_SAMPLES = 16_384;

export interface LatenessSummary {
  readonly count: number;
  /** Over the most recent samples (up to 16384). */
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Over every sample since the node started. */
  readonly maxMs: number;
  readonly sumMs: number;
  /** Cumulative counts per bucket of LATENESS_BUCKETS_MS (not including +Inf). */
  readonly buckets: readonly number[];
}

export class LatenessStats {
  readonly #counts: number[] = LATENESS_BUCKETS_MS.map(() => 0);
  readonly #recent = new Float64Array(RECENT_SAMPLES);
  #next = 0;
  #count = 0;
  #sumMs = 0;
  #maxMs = 0;

  /** Records one message that arrived `latenessMs` after its time (negative counts as 0). */
  observe(latenessMs: number): void {
    const value = Math.max(0, latenessMs);
    this.#count += 1;
    this.#sumMs += value;
    if (value > this.#maxMs) this.#maxMs = value;
    const bucket = LATENESS_BUCKETS_MS.findIndex((bound) => value <= bound);
    if (bucket >= 0) this.#counts[bucket] += 1;
    this.#recent[this.#next] = value;
    this.#next = (this.#next + 1) % RECENT_SAMPLES;
  }

  summary(): LatenessSummary {
    const kept = Math.min(this.#count, RECENT_SAMPLES);
    const sorted = this.#recent.slice(0, kept).sort();
    const quantile = (q: number) =>
      kept === 0 ? 0 : sorted[Math.min(kept - 1, Math.floor(q * kept))];
    let cumulative = 0;
    return {
      count: this.#count,
      p50Ms: quantile(0.5),
      p99Ms: quantile(0.99),
      maxMs: this.#maxMs,
      sumMs: this.#sumMs,
      buckets: this.#counts.map((count) => (cumulative += count)),
    };
  }
}

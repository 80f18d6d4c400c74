/**
 * @module Histogram: a latency histogram with log-linear buckets (as HdrHistogram lays them
 * out), so recording is O(1), memory is fixed, and any percentile is within 1/128 (0.8 %) of the
 * true value. Values are recorded in milliseconds (what `performance.now()` differences give)
 * and kept in whole nanoseconds. Pure: no clock, no I/O.
 */
import { assert } from "../assert.ts";

/** Sub-buckets per power of two: 64 of width 2^e over [64, 128) * 2^e, under 0.8 % error. */
const SUB_BUCKETS = 64;
const SUB_BITS = 6;
/** Largest recordable value: 2^40 ns, about 18 minutes; larger values are clamped. */
const VALUE_NS_MAX = 2 ** 40;
const BUCKET_COUNT = (40 - SUB_BITS) * SUB_BUCKETS + 2 * SUB_BUCKETS;

export interface LatencySummary {
  readonly count: number;
  readonly p50Us: number;
  readonly p90Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly maxUs: number;
  readonly meanUs: number;
}

export class Histogram {
  readonly #counts = new Float64Array(BUCKET_COUNT);
  #count = 0;
  #sumNs = 0;
  #maxNs = 0;
  #minNs = Infinity;

  get count(): number {
    return this.#count;
  }

  /** Records one value given in milliseconds (negative values count as 0). */
  recordMs(valueMs: number): void {
    const ns = Math.min(VALUE_NS_MAX - 1, Math.max(0, Math.round(valueMs * 1e6)));
    this.#counts[bucketOf(ns)] += 1;
    this.#count += 1;
    this.#sumNs += ns;
    if (ns > this.#maxNs) this.#maxNs = ns;
    if (ns < this.#minNs) this.#minNs = ns;
  }

  /** Adds every value recorded in `other`. */
  merge(other: Histogram): void {
    for (let index = 0; index < BUCKET_COUNT; index++) this.#counts[index] += other.#counts[index];
    this.#count += other.#count;
    this.#sumNs += other.#sumNs;
    this.#maxNs = Math.max(this.#maxNs, other.#maxNs);
    this.#minNs = Math.min(this.#minNs, other.#minNs);
  }

  /** The value at `percentile` (0..100) in microseconds; 0 when nothing was recorded. */
  percentileUs(percentile: number): number {
    assert(percentile >= 0 && percentile <= 100);
    if (this.#count === 0) return 0;
    if (percentile === 100) return this.#maxNs / 1000;
    const rank = Math.max(1, Math.ceil((percentile / 100) * this.#count));
    let seen = 0;
    for (let index = 0; index < BUCKET_COUNT; index++) {
      seen += this.#counts[index];
      if (seen >= rank) {
        const value = Math.min(this.#maxNs, Math.max(this.#minNs, middleOf(index)));
        return value / 1000;
      }
    }
    return this.#maxNs / 1000;
  }

  get maxUs(): number {
    return this.#count === 0 ? 0 : this.#maxNs / 1000;
  }

  get meanUs(): number {
    return this.#count === 0 ? 0 : this.#sumNs / this.#count / 1000;
  }

  summary(): LatencySummary {
    return {
      count: this.#count,
      p50Us: this.percentileUs(50),
      p90Us: this.percentileUs(90),
      p99Us: this.percentileUs(99),
      p999Us: this.percentileUs(99.9),
      maxUs: this.maxUs,
      meanUs: this.meanUs,
    };
  }
}

/** Bucket of a value in ns: exact below 128, then 64 linear sub-buckets per power of two. */
export function bucketOf(ns: number): number {
  if (ns < 2 * SUB_BUCKETS) return ns;
  let exponent = Math.floor(Math.log2(ns)) - SUB_BITS;
  let shifted = Math.floor(ns / 2 ** exponent);
  if (shifted < SUB_BUCKETS) { // log2 rounded up just below a power of two
    exponent -= 1;
    shifted = Math.floor(ns / 2 ** exponent);
  }
  return exponent * SUB_BUCKETS + shifted;
}

/** The middle of the range of values that fall into bucket `index`, in ns. */
function middleOf(index: number): number {
  if (index < 2 * SUB_BUCKETS) return index;
  const exponent = Math.floor(index / SUB_BUCKETS) - 1;
  const shifted = index - exponent * SUB_BUCKETS;
  return shifted * 2 ** exponent + 2 ** exponent / 2;
}

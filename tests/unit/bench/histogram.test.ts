import { expect, test } from "bun:test";
import { bucketOf, Histogram } from "../../../lib/bench/histogram.ts";

test("percentiles of a uniform spread land within the bucket error", () => {
  const histogram = new Histogram();
  for (let us = 1; us <= 10_000; us++) histogram.recordMs(us / 1000);
  const summary = histogram.summary();
  expect(summary.count).toBe(10_000);
  for (const [percentile, expected] of [[50, 5000], [90, 9000], [99, 9900]] as const) {
    const value = histogram.percentileUs(percentile);
    expect(Math.abs(value - expected) / expected, `p${percentile}=${value}`).toBeLessThan(0.01);
  }
  expect(summary.maxUs).toBe(10_000);
  expect(summary.meanUs).toBeCloseTo(5000.5, 3);
});

test("an empty histogram reports zeros and merge adds counts", () => {
  const empty = new Histogram();
  expect(empty.summary()).toEqual({
    count: 0,
    p50Us: 0,
    p90Us: 0,
    p99Us: 0,
    p999Us: 0,
    maxUs: 0,
    meanUs: 0,
  });
  const other = new Histogram();
  other.recordMs(2);
  other.recordMs(4);
  empty.merge(other);
  expect(empty.count).toBe(2);
  expect(empty.maxUs).toBe(4000);
  expect(empty.percentileUs(100)).toBe(4000);
});

test("buckets grow monotonically and stay in range up to the largest value", () => {
  let previous = -1;
  for (let ns = 0; ns < 5_000_000; ns += 997) {
    const bucket = bucketOf(ns);
    expect(bucket >= previous, `ns=${ns}`).toBe(true);
    previous = bucket;
  }
  for (let power = 7; power < 40; power++) {
    expect(bucketOf(2 ** power - 1)).toBeLessThan(bucketOf(2 ** power));
  }
  const huge = new Histogram();
  huge.recordMs(1e9); // clamped, not thrown
  expect(huge.count).toBe(1);
});

import { expect, test } from "bun:test";
import { FSYNC_BUCKETS_SECONDS, FsyncHistogram } from "../../../lib/http/metrics.ts";

test("the fsync histogram puts each latency in the first bucket that holds it", () => {
  const histogram = new FsyncHistogram();
  for (const seconds of [0.0001, 0.0005, 0.0006, 0.3, 2.5, 9]) histogram.observe(seconds);
  const counts = Object.fromEntries(
    FSYNC_BUCKETS_SECONDS.map((bound, index) => [bound, histogram.counts[index]]),
  );
  expect(counts[0.0005]).toBe(2);
  expect(counts[0.001]).toBe(1);
  expect(counts[0.5]).toBe(1);
  expect(counts[2.5]).toBe(1);
  expect(histogram.count).toBe(6);
  expect(histogram.counts.reduce((a, b) => a + b, 0)).toBe(5); // 9 s is only in +Inf
  expect(histogram.sumSeconds).toBeCloseTo(11.8012, 6);
});

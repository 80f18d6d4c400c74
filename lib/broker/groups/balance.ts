/**
 * @module Balancing: which consumer of a group reads which partitions of one topic, with MetaQ's
 * two strategies. Pure functions of the member and partition names; they know nothing of
 * generations, ownership hand-over or time (coordinator.ts does that).
 *
 * Both strategies see the names MetaQ used: consumers by their id, partitions as
 * `<brokerId>-<partition>`, each list sorted as Java sorts strings (so `0-10` comes before `0-2`).
 *
 * - DEFAULT: contiguous slices. With P partitions and C consumers, consumer i (in sorted order)
 *   gets `floor(P / C)` partitions, plus one more when `i < P % C`, starting at
 *   `floor(P / C) * i + min(i, P % C)`. Consumers beyond P get nothing.
 * - CONSIST: a consistent-hash ring with 160 points per consumer: for k in 0..39 the MD5 of
 *   `<consumerId>-<k>` gives four little-endian 32-bit points. A partition's point is the first
 *   four digest bytes of the MD5 of its name, little-endian; it belongs to the consumer at the
 *   first ring point at or after it, wrapping to the lowest.
 */
import { assert } from "../../assert.ts";
import type { Strategy } from "../../protocol/group_wire.ts";
import { nodeCrypto } from "../../runtime/node_crypto.ts";

/** Ring points per consumer in CONSIST (MetaQ's NUM_REPS). */
const RING_POINTS_PER_CONSUMER = 160;

/** MetaQ's name of a partition in balancing: `<brokerId>-<partition>`. */
export function partitionName(brokerId: number, partition: number): string {
  return `${brokerId}-${partition}`;
}

/** Sorts as Java's String.compareTo (UTF-16 code units), which is JavaScript's default. */
export function javaSorted(names: Iterable<string>): string[] {
  return [...names].sort();
}

/**
 * Assigns `partitions` to `consumers`; returns consumer -> partition names (every consumer is a
 * key, possibly with an empty list). Inputs are sorted here, so callers may pass any order.
 */
export function balance(
  strategy: Strategy,
  consumers: readonly string[],
  partitions: readonly string[],
): Map<string, string[]> {
  const sortedConsumers = javaSorted(new Set(consumers));
  const sortedPartitions = javaSorted(new Set(partitions));
  const plan = new Map<string, string[]>(sortedConsumers.map((consumer) => [consumer, []]));
  if (sortedConsumers.length === 0) return plan;
  if (strategy === "DEFAULT") {
    sortedConsumers.forEach((consumer, index) => {
      plan.set(consumer, defaultSlice(sortedPartitions, sortedConsumers.length, index));
    });
  } else {
    const ring = buildRing(sortedConsumers);
    for (const partition of sortedPartitions) plan.get(ringOwner(ring, partition))!.push(partition);
  }
  return plan;
}

/** The DEFAULT strategy's slice for the consumer at `index` of `count`. */
function defaultSlice(partitions: readonly string[], count: number, index: number): string[] {
  const perConsumer = Math.floor(partitions.length / count);
  const withExtra = partitions.length % count;
  const start = perConsumer * index + Math.min(index, withExtra);
  const length = perConsumer + (index < withExtra ? 1 : 0);
  return partitions.slice(start, start + length);
}

interface Ring {
  /** Ascending, unique. */
  readonly points: Uint32Array;
  readonly owners: readonly string[];
}

/** Later consumers overwrite earlier ones on a point collision, as MetaQ's TreeMap.put does. */
function buildRing(consumers: readonly string[]): Ring {
  const byPoint = new Map<number, string>();
  for (const consumer of consumers) {
    for (let k = 0; k < RING_POINTS_PER_CONSUMER / 4; k++) {
      const digest = md5(`${consumer}-${k}`);
      for (let h = 0; h < 4; h++) byPoint.set(littleEndian32(digest, h * 4), consumer);
    }
  }
  const points = Uint32Array.from(byPoint.keys()).sort();
  return { points, owners: Array.from(points, (point) => byPoint.get(point)!) };
}

function ringOwner(ring: Ring, partition: string): string {
  assert(ring.points.length > 0);
  const hash = littleEndian32(md5(partition), 0);
  let low = 0;
  let high = ring.points.length; // first index whose point >= hash, by binary search
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (ring.points[middle] < hash) low = middle + 1;
    else high = middle;
  }
  return ring.owners[low === ring.points.length ? 0 : low];
}

function md5(text: string): Uint8Array {
  return nodeCrypto().createHash("md5").update(text, "utf8").digest();
}

function littleEndian32(bytes: Uint8Array, at: number): number {
  return (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0;
}

/**
 * @module MetaQ's client-side balancing strategies, as the original Java consumer computes them,
 * so metaq consumers and original ones agree on who reads what in a ZooKeeper-balanced group.
 * Inputs are the group's consumer ids (sorted as strings) and the topic's partitions as
 * `<brokerId>-<partition>` strings (sorted as strings, so `0-10` comes before `0-2`). Pure.
 *
 * - DEFAULT (DefaultLoadBalanceStrategy): contiguous slices; consumer i of C gets
 *   `P / C` partitions, plus one for the first `P % C`, starting at `per * i + min(i, P % C)`.
 * - CONSIST (ConsisHashStrategy, Ketama): 160 points per consumer on a ring, four little-endian
 *   32-bit words of MD5(`<consumerId>-<k>`) for k < 40; a partition goes to the first point at or
 *   after MD5 word 0 of its name, wrapping to the first point.
 */
import { createHash } from "node:crypto";

export type ZkStrategy = "DEFAULT" | "CONSIST";

/** The partitions `consumerId` reads, in the order MetaQ lists them. */
export function partitionsFor(
  strategy: ZkStrategy,
  consumerId: string,
  consumers: readonly string[],
  partitions: readonly string[],
): string[] {
  return strategy === "CONSIST"
    ? consistentShare(consumerId, consumers, partitions)
    : defaultShare(consumerId, consumers, partitions);
}

export function defaultShare(
  consumerId: string,
  consumers: readonly string[],
  partitions: readonly string[],
): string[] {
  const position = consumers.indexOf(consumerId);
  if (position < 0) return [];
  const perConsumer = Math.floor(partitions.length / consumers.length);
  const withExtra = partitions.length % consumers.length;
  const start = perConsumer * position + Math.min(position, withExtra);
  const count = perConsumer + (position + 1 > withExtra ? 0 : 1);
  return partitions.slice(start, start + count);
}

export function consistentShare(
  consumerId: string,
  consumers: readonly string[],
  partitions: readonly string[],
): string[] {
  const ring = new Map<number, string>();
  for (const consumer of consumers) {
    for (let replica = 0; replica < 40; replica++) {
      const digest = md5(`${consumer}-${replica}`);
      // A later consumer's equal point replaces an earlier one's, as TreeMap.put does.
      for (let word = 0; word < 4; word++) ring.set(littleEndianWord(digest, word), consumer);
    }
  }
  const points = [...ring.keys()].sort((a, b) => a - b);
  return partitions.filter((partition) => {
    const hash = littleEndianWord(md5(partition), 0);
    return ring.get(ceiling(points, hash) ?? points[0]) === consumerId;
  });
}

function md5(text: string): Uint8Array {
  return createHash("md5").update(new TextEncoder().encode(text)).digest();
}

function littleEndianWord(digest: Uint8Array, word: number): number {
  const at = word * 4;
  return (digest[at + 3] * 2 ** 24) + (digest[at + 2] << 16) + (digest[at + 1] << 8) + digest[at];
}

/** The smallest point >= `value`, by binary search; undefined past the last. */
function ceiling(points: readonly number[], value: number): number | undefined {
  let low = 0;
  let high = points.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (points[middle] < value) low = middle + 1;
    else high = middle;
  }
  return points[low];
}

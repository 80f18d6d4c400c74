/**
 * @module Cross-checking a replica against the other copies of its group. MetaQ's record
 * checksum covers only the message data, so a flipped bit in a header's message id or flag
 * passes every local check. Replicas of a group are byte-identical up to their commit, so
 * comparing CRCs of byte ranges with the peers finds what a local scrub cannot: where a
 * majority of the group's voters hold other bytes than this node, this node's copy is the
 * damaged one, and the first differing record is where it must be cut.
 *
 * The search is pure over two interfaces (the local copy and a way to ask a peer for a digest),
 * so it is tested on byte arrays; cluster_node.ts binds it to the log and forwarding.
 */
import type { NodeId } from "./messages.ts";

/** A peer's answer: its readable range, and the CRC of the bytes asked for when inside it. */
export interface RangeDigest {
  readonly start: number;
  readonly end: number;
  readonly crc?: number;
}

/** Asks `peer` for the CRC of its bytes [from, to); undefined when it did not answer. */
export type AskDigest = (
  peer: NodeId,
  from: number,
  to: number,
) => Promise<RangeDigest | undefined>;

/** This node's copy, up to what it has committed. */
export interface LocalCopy {
  readonly start: number;
  readonly end: number;
  /** CRC-32 of the bytes [from, to). */
  crc(from: number, to: number): number;
  /** The first record start at or after `offset`. */
  alignedStart(offset: number): number;
  /**
   * Record starts from `from` (a record start) while they stay at or below `limit`, at most
   * `countMax` of them; the last one is the end of the last whole record (so a window ends on a
   * record boundary).
   */
  recordStarts(from: number, limit: number, countMax?: number): number[];
}

export type CrossCheck =
  | { readonly kind: "agrees"; readonly from: number; readonly to: number }
  | { readonly kind: "differs"; readonly offset: number; readonly nodes: readonly NodeId[] }
  | { readonly kind: "skipped"; readonly reason: string };

export interface CrossCheckOptions {
  readonly local: LocalCopy;
  /** The other voters of the group. */
  readonly peers: readonly NodeId[];
  /** Copies that must disagree with this one before it is called damaged: a voter majority. */
  readonly needed: number;
  readonly ask: AskDigest;
  /** Bytes compared per round trip. */
  readonly windowBytes?: number;
}

const WINDOW_BYTES = 1 << 20;

export async function crossCheck(options: CrossCheckOptions): Promise<CrossCheck> {
  const { local, peers, needed, ask } = options;
  const windowBytes = options.windowBytes ?? WINDOW_BYTES;
  if (peers.length < needed) {
    return { kind: "skipped", reason: `the group has ${peers.length} other copies` };
  }
  const ranges = await Promise.all(peers.map((peer) => ask(peer, 0, 0)));
  if (ranges.some((range) => range === undefined)) {
    const silent = peers.filter((_, index) => ranges[index] === undefined);
    return { kind: "skipped", reason: `nodes ${silent.join(", ")} did not answer` };
  }
  const starts = ranges.map((range) => range!.start);
  const ends = ranges.map((range) => range!.end);
  const from = local.alignedStart(Math.max(local.start, ...starts));
  const to = Math.min(local.end, ...ends);
  let windowStart = from;
  while (windowStart < to) {
    let bounds = local.recordStarts(windowStart, Math.min(to, windowStart + windowBytes));
    if (bounds.length < 2) bounds = local.recordStarts(windowStart, to, 2); // one big record
    if (bounds.length < 2) break; // the rest is shorter than one record: nothing to compare
    const windowEnd = bounds[bounds.length - 1];
    const mine = local.crc(windowStart, windowEnd);
    const theirs = await Promise.all(peers.map((peer) => ask(peer, windowStart, windowEnd)));
    if (theirs.some((digest) => digest?.crc === undefined)) {
      return { kind: "skipped", reason: `a peer stopped answering at offset ${windowStart}` };
    }
    const differing = peers.filter((_, index) => theirs[index]!.crc !== mine);
    if (differing.length >= needed) {
      const offset = await firstDifferingRecord(local, bounds, differing, needed, ask);
      if (offset === undefined) {
        return { kind: "skipped", reason: `a peer stopped answering at offset ${windowStart}` };
      }
      return { kind: "differs", offset, nodes: differing };
    }
    windowStart = windowEnd;
  }
  return { kind: "agrees", from, to: windowStart };
}

/**
 * Binary search over the window's records for the first one whose prefix CRC disagrees with at
 * least `needed` peers (a prefix that differs stays different as it grows).
 */
async function firstDifferingRecord(
  local: LocalCopy,
  bounds: readonly number[],
  peers: readonly NodeId[],
  needed: number,
  ask: AskDigest,
): Promise<number | undefined> {
  const start = bounds[0];
  let low = 1;
  let high = bounds.length - 1; // the whole window differs
  while (low < high) {
    const middle = (low + high) >>> 1;
    const mine = local.crc(start, bounds[middle]);
    const theirs = await Promise.all(peers.map((peer) => ask(peer, start, bounds[middle])));
    if (theirs.some((digest) => digest?.crc === undefined)) return undefined;
    const differing = theirs.filter((digest) => digest!.crc !== mine).length;
    if (differing >= needed) high = middle;
    else low = middle + 1;
  }
  return bounds[low - 1];
}

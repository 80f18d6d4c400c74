/**
 * @module Majority arithmetic for a static voter set. Pure functions over counts and sorted
 * values; they know nothing about terms, logs or messages.
 */
import { assert } from "../assert.ts";

/** Voters a group may have: 1, 3 or 5 in practice; the bound keeps quorum sorts trivial. */
export const VOTERS_MAX = 9;

/** The smallest strict majority of `voterCount` voters. */
export function quorumSize(voterCount: number): number {
  assert(Number.isInteger(voterCount), `voter count ${voterCount}`);
  assert(voterCount >= 1 && voterCount <= VOTERS_MAX, `voter count ${voterCount}`);
  return Math.floor(voterCount / 2) + 1;
}

/** Whether `count` voters (the node itself included) form a majority of `voterCount`. */
export function hasQuorum(count: number, voterCount: number): boolean {
  assert(count >= 0 && count <= voterCount, `count ${count} of ${voterCount}`);
  return count >= quorumSize(voterCount);
}

/**
 * The largest value that a majority has reached: with the values sorted from high to low, the
 * one at the quorum's position. `values` holds one value per voter that reported one; voters
 * without a value count as below everything, so fewer values than a quorum give undefined.
 */
export function quorumValue<T>(
  values: readonly T[],
  voterCount: number,
  compare: (a: T, b: T) => number,
): T | undefined {
  assert(values.length <= voterCount, `${values.length} values for ${voterCount} voters`);
  const quorum = quorumSize(voterCount);
  if (values.length < quorum) return undefined;
  const sorted = [...values].sort((a, b) => compare(b, a));
  return sorted[quorum - 1];
}

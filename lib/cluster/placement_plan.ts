/**
 * @module Reassignment plans: which copies move so that no leaving member holds a copy and every
 * active member holds a fair share (counts differ by at most one), moving as few copies as it
 * can. Pure: the current placement in, the groups whose placement changes out.
 */

export interface PlanInput {
  /** Each group's copies now. */
  readonly groups: ReadonlyMap<string, readonly number[]>;
  /** Members that hold copies from now on. */
  readonly active: readonly number[];
}

export interface Move {
  readonly group: string;
  readonly from: readonly number[];
  readonly to: readonly number[];
}

/** The moves that drain leaving members and even out the counts, in group order. */
export function planPlacement(input: PlanInput): Move[] {
  const active = [...new Set(input.active)].sort((a, b) => a - b);
  if (active.length === 0) return [];
  const placement = new Map<string, number[]>();
  for (const [group, replicas] of [...input.groups].sort(([a], [b]) => (a < b ? -1 : 1))) {
    placement.set(group, [...replicas]);
  }
  const count = new Map<number, number>(active.map((id) => [id, 0]));
  for (const replicas of placement.values()) {
    for (const id of replicas) if (count.has(id)) count.set(id, count.get(id)! + 1);
  }
  const leastLoaded = (exclude: readonly number[]): number | undefined => {
    let best: number | undefined;
    for (const id of active) {
      if (exclude.includes(id)) continue;
      if (best === undefined || count.get(id)! < count.get(best)!) best = id;
    }
    return best;
  };

  // Drain: every copy on a node that is not active goes to the least loaded active node.
  for (const [group, replicas] of placement) {
    for (const id of [...replicas]) {
      if (count.has(id)) continue;
      const target = leastLoaded(replicas);
      const next = replicas.filter((other) => other !== id);
      if (target !== undefined) {
        next.push(target);
        count.set(target, count.get(target)! + 1);
      }
      placement.set(group, next);
      replicas.splice(0, replicas.length, ...next);
    }
  }

  // Even out: move one copy from the most to the least loaded node while they differ by two or
  // more. Each move lowers the spread's sum of squares, so the loop ends; bounded besides.
  const movesMax = [...placement.values()].reduce((sum, r) => sum + r.length, 0) + 1;
  for (let moves = 0; moves < movesMax; moves++) {
    const sorted = [...active].sort((a, b) => count.get(a)! - count.get(b)! || a - b);
    const low = sorted[0];
    const high = sorted[sorted.length - 1];
    if (count.get(high)! - count.get(low)! < 2) break;
    const group = [...placement.keys()].find((name) => {
      const replicas = placement.get(name)!;
      return replicas.includes(high) && !replicas.includes(low);
    });
    if (!group) break;
    placement.set(group, placement.get(group)!.map((id) => (id === high ? low : id)));
    count.set(high, count.get(high)! - 1);
    count.set(low, count.get(low)! + 1);
  }

  const moves: Move[] = [];
  for (const [group, from] of input.groups) {
    const to = [...placement.get(group)!].sort((a, b) => a - b);
    const before = [...from].sort((a, b) => a - b);
    if (String(to) !== String(before)) moves.push({ group, from: before, to });
  }
  return moves.sort((a, b) => (a.group < b.group ? -1 : a.group > b.group ? 1 : 0));
}

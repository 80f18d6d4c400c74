/**
 * @module The operator's membership and placement commands, run on the leader of the metadata
 * group `__cluster-0` (the edge forwards them there): `add` a node, `remove` one (its copies
 * move to the other members first), and `rebalance` (a plan, applied on request). Each changes
 * the cluster's state in one record; the groups then move their copies on their own (a new copy
 * catches up as a learner before it votes; a copy is removed only after that).
 */
import { BrokerError } from "../errors.ts";
import type { ClusterNode } from "./cluster_node.ts";
import { validAddress } from "./cluster_state.ts";
import { isInternalTopic } from "./placement.ts";
import { type Move, planPlacement } from "./placement_plan.ts";

/** How long an action waits for a just-started cluster to write its first metadata record. */
const METADATA_WAIT_MS = 5_000;

/** Actions that change the cluster's state: served on the metadata group's leader. */
export const MEMBERSHIP_ACTIONS: ReadonlySet<string> = new Set([
  "add",
  "remove",
  "rebalance",
  "swap",
]);

export interface PlacementReport {
  readonly moves: readonly Move[];
  readonly applied: boolean;
  /** Groups whose copies nobody reported (they keep their placement). */
  readonly groups: number;
}

/** Runs one membership action; the answer is JSON for `metaq cluster`. */
export async function runMembershipAction(
  node: ClusterNode,
  action: string,
  arg: string,
): Promise<string> {
  const metadata = node.metadata;
  if (!metadata || !await metadata.whenInitialized(METADATA_WAIT_MS)) {
    throw new BrokerError("unavailable", "this node has not applied the cluster's metadata yet");
  }
  switch (action) {
    case "add": {
      const match = /^(\d+)=(.+)$/.exec(arg);
      if (!match || !validAddress(match[2])) {
        throw new BrokerError("badRequest", `expected <node id>=<host>:<peer port>, got '${arg}'`);
      }
      const id = Number(match[1]);
      await metadata.propose({ kind: "add", id, peer: match[2] });
      return JSON.stringify({ added: id, peer: match[2], members: metadata.state.members() });
    }
    case "remove": {
      const id = Number(arg);
      if (!Number.isInteger(id)) throw new BrokerError("badRequest", `bad node id '${arg}'`);
      const problem = metadata.state.problemWith({ kind: "remove", id });
      if (problem) throw new BrokerError("badRequest", problem);
      // One record: the member leaves and its copies are placed elsewhere together.
      const active = metadata.state.activeIds().filter((other) => other !== id);
      const { moves, groups } = await planMoves(node, active);
      await metadata.propose({ kind: "remove", id, groups: groupsOf(moves) });
      return JSON.stringify({ removed: id, moves, applied: true, groups });
    }
    case "swap": {
      // `replace --node-id X --with Y`: Y joins, takes every copy X held, and X leaves.
      const match = /^(\d+):(\d+)=(.+)$/.exec(arg);
      if (!match || !validAddress(match[3])) {
        throw new BrokerError("badRequest", `expected <old id>:<new id>=<host>:<peer port>`);
      }
      const [from, to, peer] = [Number(match[1]), Number(match[2]), match[3]];
      const leaving = metadata.state.problemWith({ kind: "remove", id: from });
      if (leaving) throw new BrokerError("badRequest", leaving);
      if (!metadata.state.member(to)) await metadata.propose({ kind: "add", id: to, peer });
      const names = new Set([...metadata.state.placedGroups(), ...await node.groupsHeldAnywhere()]);
      const moves: Move[] = [];
      for (const name of [...names].sort()) {
        const dash = name.lastIndexOf("-");
        const topic = name.slice(0, dash);
        if (isInternalTopic(topic)) continue;
        const replicas = metadata.state.replicasOf(topic, Number(name.slice(dash + 1)));
        if (!replicas.includes(from) || replicas.includes(to)) continue;
        const next = replicas.map((id) => (id === from ? to : id)).sort((a, b) => a - b);
        moves.push({ group: name, from: replicas, to: next });
      }
      await metadata.propose({ kind: "remove", id: from, groups: groupsOf(moves) });
      return JSON.stringify({ removed: from, added: to, moves, applied: true, groups: names.size });
    }
    case "rebalance": {
      if (arg !== "plan" && arg !== "apply") {
        throw new BrokerError("badRequest", `rebalance takes 'plan' or 'apply', got '${arg}'`);
      }
      return JSON.stringify(await placeEvenly(node, arg === "apply"));
    }
    default:
      throw new BrokerError("badRequest", `unknown membership action '${action}'`);
  }
}

/**
 * Plans the moves that drain leaving members and even out copies over the active ones, from
 * every group any member holds or the state places, and records them when `apply` is set.
 */
async function placeEvenly(node: ClusterNode, apply: boolean): Promise<PlacementReport> {
  const metadata = node.metadata!;
  const { moves, groups } = await planMoves(node, metadata.state.activeIds());
  if (apply && moves.length > 0) await metadata.propose({ kind: "place", groups: groupsOf(moves) });
  return { moves, applied: apply && moves.length > 0, groups };
}

function groupsOf(moves: readonly Move[]): Record<string, readonly number[]> {
  return Object.fromEntries(moves.map((move) => [move.group, move.to]));
}

/** The moves onto the `active` members, over every group held anywhere or placed. */
async function planMoves(
  node: ClusterNode,
  active: readonly number[],
): Promise<{ moves: Move[]; groups: number }> {
  const state = node.metadata!.state;
  const names = new Set(state.placedGroups());
  for (const group of await node.groupsHeldAnywhere()) names.add(group);
  const groups = new Map<string, number[]>();
  for (const name of names) {
    const dash = name.lastIndexOf("-");
    const topic = name.slice(0, dash);
    if (isInternalTopic(topic)) continue;
    groups.set(name, state.replicasOf(topic, Number(name.slice(dash + 1))));
  }
  return { moves: planPlacement({ groups, active }), groups: groups.size };
}

/**
 * @module `metaq cluster add|remove|rebalance|replace --with`: the request each one sends (the
 * `cluster` verb's action and argument) and how its answer is printed.
 */
import { CliError, integerFlag } from "./common.ts";

export const MEMBERSHIP_USAGE = `  add --node-id N --address HOST:PEERPORT
                         make the node started with --join (empty --data) a member: it receives
                         the cluster's metadata and the broker's own logs, and becomes a voter
                         once caught up. No copies of partitions move until 'rebalance --apply'.
  remove --node-id N     the node leaves: its copies move to the other members (each new copy
                         catches up before it votes), then it is out of every group; stop it when
                         'status' shows no moving group left
  rebalance [--apply]    show the moves that give every member a fair share of copies (and drain
                         leaving members); with --apply, record them: the groups move their copies
                         while producers and consumers keep going
  replace --node-id N --with M --address HOST:PEERPORT
                         replace member N by the node started with --join as M: M is added, takes
                         every copy N held (each catches up before it votes), and N leaves`;

export const MEMBERSHIP_FLAGS = {
  address: { type: "string" },
  apply: { type: "boolean" },
  with: { type: "string" },
} as const;

export const MEMBERSHIP_ACTIONS = ["add", "remove", "rebalance"];

/** The `cluster` verb's action and argument for a membership command, or undefined. */
export function membershipRequest(
  action: string,
  nodeId: number | undefined,
  values: { address?: string; apply?: boolean; with?: string },
): { verb: string; arg: string } | undefined {
  const successor = integerFlag("with", values.with, { min: 1, max: 1023 });
  const swap = action === "replace" && successor !== undefined;
  if (!swap && !MEMBERSHIP_ACTIONS.includes(action)) return undefined;
  if ((action !== "rebalance") && nodeId === undefined) {
    throw new CliError(`Cannot ${action} a node: give --node-id N`);
  }
  if ((action === "add" || swap) && !/^.+:\d{1,5}$/.test(values.address ?? "")) {
    throw new CliError(`Cannot ${action} a node: give --address HOST:PEERPORT (its peer port)`);
  }
  if (swap) return { verb: "swap", arg: `${nodeId}:${successor}=${values.address}` };
  if (action === "add") return { verb: "add", arg: `${nodeId}=${values.address}` };
  if (action === "rebalance") return { verb: "rebalance", arg: values.apply ? "apply" : "plan" };
  return { verb: "remove", arg: String(nodeId) };
}

/** Prints the outcome of add, remove, rebalance or swap. */
export function printMembership(verb: string, report: {
  added?: number;
  peer?: string;
  removed?: number;
  moves?: { group: string; from: number[]; to: number[] }[];
  applied?: boolean;
  groups?: number;
}): void {
  if (verb === "add") {
    console.log(
      `node ${report.added} (${report.peer}) is a member; it becomes a voter of the cluster's own ` +
        "logs once caught up. Move copies to it with 'metaq cluster rebalance --apply'.",
    );
    return;
  }
  if (verb === "remove") console.log(`node ${report.removed} is leaving`);
  if (verb === "swap") {
    console.log(`node ${report.added} takes over from node ${report.removed}, which is leaving`);
  }
  const moves = report.moves ?? [];
  for (const move of moves) {
    console.log(`  ${move.group}: ${move.from.join(",")} -> ${move.to.join(",")}`);
  }
  const outcome = verb !== "rebalance" || report.applied
    ? "recorded"
    : "planned (run again with --apply to record them)";
  console.log(
    moves.length === 0
      ? `placement is even: nothing to move (${report.groups ?? 0} groups)`
      : `${moves.length} of ${report.groups ?? 0} groups move: ${outcome}; follow them with ` +
        "'metaq cluster status'",
  );
}

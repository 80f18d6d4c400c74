/**
 * @module The cluster's commands: `cluster status|scrub|replace <arg> <opaque>` (the admin side
 * of `metaq cluster`) and the `stats cluster` item. Served on the node asked: each node reports
 * its own view.
 */
import { BrokerError, describeError } from "../errors.ts";
import type { ExtensionCommand } from "../protocol/commands.ts";
import type { CommandTable } from "../protocol/command_table.ts";
import { errorReply, type RequestContext, type Respond, result } from "../protocol/reply.ts";
import type { ClusterNode } from "./cluster_node.ts";
import { clusterStatus, type OffsetsSummary, statusLines } from "./status.ts";

export function clusterCommands(
  node: ClusterNode,
  offsets: () => OffsetsSummary | undefined,
): CommandTable {
  return {
    "ext:cluster": {
      spec: { args: 2 },
      handle(command: ExtensionCommand, _context: RequestContext, respond: Respond) {
        const [action, arg] = command.args;
        run(node, offsets, action, arg).then(
          (text) => respond(result(200, text)),
          (error) =>
            respond(errorReply(
              error instanceof BrokerError
                ? error
                : new BrokerError("internal", describeError(error)),
            )),
        );
      },
    },
  };
}

/** The `stats cluster` lines. */
export function clusterStatsLines(
  node: ClusterNode,
  offsets: () => OffsetsSummary | undefined,
): string[] {
  return statusLines(clusterStatus(node, offsets()));
}

async function run(
  node: ClusterNode,
  offsets: () => OffsetsSummary | undefined,
  action: string,
  arg: string,
): Promise<string> {
  switch (action) {
    case "status":
      return JSON.stringify(clusterStatus(node, offsets()));
    case "scrub":
      return JSON.stringify(await node.scrub());
    case "replace": {
      const id = Number(arg);
      const peer = node.peerInfos().find((info) => info.nodeId === id);
      if (!Number.isInteger(id) || !node.voters.includes(id)) {
        throw new BrokerError("badRequest", `node ${arg} is not a voter`);
      }
      if (!peer) {
        throw new BrokerError(
          "unavailable",
          `node ${id} has not introduced itself to node ${node.nodeId}; start it first`,
        );
      }
      node.membership.replace(id, peer.uuid);
      return JSON.stringify({ replaced: id, uuid: peer.uuid });
    }
    default:
      throw new BrokerError(
        "badRequest",
        `unknown cluster action '${action}' (expected status, scrub or replace)`,
      );
  }
}

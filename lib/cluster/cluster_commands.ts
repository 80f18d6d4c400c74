/**
 * @module The cluster's commands: `cluster status|scrub|replace|force-recover <arg> <opaque>`
 * (the admin side of `metaq cluster`) and the `stats cluster` item. Served on the node asked:
 * each node reports its own view; force-recover coordinates from there.
 *
 * force-recover's argument is a query string: `partition=T-P` or `all=1`, and optionally
 * `from=N`, `force=1`, and `apply=<fingerprint>` (without it the plan is only shown).
 */
import { BrokerError } from "../errors.ts";
import type { ExtensionCommand } from "../protocol/commands.ts";
import { type CommandTable, HERE, type Home } from "../protocol/command_table.ts";
import { CLUSTER_TOPIC } from "./metadata.ts";
import { MEMBERSHIP_ACTIONS, runMembershipAction } from "./membership_commands.ts";
import { errorReply, type RequestContext, type Respond, result } from "../protocol/reply.ts";
import type { ClusterNode } from "./cluster_node.ts";
import { forceRecover } from "./force_recover.ts";
import type { RecoverRequest } from "./recovery_plan.ts";
import { splitPartitionKey } from "../store/message_store.ts";
import { clusterStatus, type OffsetsSummary, statusLines } from "./status.ts";

/** How long force-recover waits for recovered groups to elect their base, at least. */
const RECOVER_WAIT_MS = 20_000;

/** Partitions a configured topic has (undefined: no such topic). */
export type PartitionCount = (topic: string) => number | undefined;

export function clusterCommands(
  node: ClusterNode,
  offsets: () => OffsetsSummary | undefined,
  partitionsOf: PartitionCount = () => undefined,
): CommandTable {
  return {
    "ext:cluster": {
      spec: { args: 2 },
      // Membership and placement change the cluster's metadata: on its group's leader.
      home: (command: ExtensionCommand): Home =>
        MEMBERSHIP_ACTIONS.has(command.args[0])
          ? { kind: "leader", topic: CLUSTER_TOPIC, partition: 0 }
          : HERE,
      handle(command: ExtensionCommand, _context: RequestContext, respond: Respond) {
        const [action, arg] = command.args;
        run(node, offsets, partitionsOf, action, arg).then(
          (text) => respond(result(200, text)),
          (error) => respond(errorReply(BrokerError.from(error))),
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
  partitionsOf: PartitionCount,
  action: string,
  arg: string,
): Promise<string> {
  switch (action) {
    case "status":
      return JSON.stringify(clusterStatus(node, offsets()));
    case "add":
    case "remove":
    case "rebalance":
    case "swap":
      return await runMembershipAction(node, action, arg);
    case "scrub":
      return JSON.stringify(await node.scrub());
    case "replace": {
      const id = Number(arg);
      if (!Number.isInteger(id) || !node.voters.includes(id)) {
        throw new BrokerError("badRequest", `node ${arg} is not a voter`);
      }
      const uuid = await newIdentityOf(node, id);
      node.membership.replace(id, uuid);
      return JSON.stringify({ replaced: id, uuid });
    }
    case "force-recover": {
      const params = new URLSearchParams(arg);
      const report = await forceRecover(node, {
        request: recoverRequest(params),
        apply: params.get("apply") ?? undefined,
        checkGroup: (group) => unknownGroup(group, partitionsOf),
        waitMs: Math.max(RECOVER_WAIT_MS, 8 * node.settings.electionMaxMs),
      });
      return JSON.stringify({ ...report, fsync: fsyncText(node) });
    }
    default:
      throw new BrokerError(
        "badRequest",
        `unknown cluster action '${action}' (expected status, scrub, replace, force-recover, add, remove or rebalance)`,
      );
  }
}

/** How long `cluster replace` waits for the new node to introduce itself. */
const REPLACE_WAIT_MS = 5000;
const REPLACE_POLL_MS = 50;

/**
 * The identity node `id` introduced itself with, once it is not the one this node's registry
 * holds. A node started on an empty disk introduces itself when its link to this node comes up
 * (and again every second); until then the last introduction heard is the old incarnation's, and
 * a replacement with that identity would change nothing and leave the new node out for good,
 * while the command answered success. Waits up to REPLACE_WAIT_MS, then says why it cannot.
 */
async function newIdentityOf(node: ClusterNode, id: number): Promise<string> {
  const deadline = Date.now() + REPLACE_WAIT_MS;
  // Bounded: one check per REPLACE_POLL_MS until the deadline.
  for (;;) {
    const peer = node.peerInfos().find((info) => info.nodeId === id);
    const registered = node.membership.members[String(id)]?.uuid;
    if (peer && peer.uuid !== registered) return peer.uuid;
    if (Date.now() >= deadline) {
      throw new BrokerError(
        "unavailable",
        peer
          ? `node ${id} introduces itself to node ${node.nodeId} with the identity the cluster ` +
            `already has for it (${registered}): start the new node, on an empty data directory, first`
          : `node ${id} has not introduced itself to node ${node.nodeId}; start it first`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, REPLACE_POLL_MS));
  }
}

/** The request in a force-recover argument; bad input is a badRequest naming the problem. */
function recoverRequest(params: URLSearchParams): RecoverRequest {
  const partition = params.get("partition");
  const all = params.get("all") === "1";
  if ((partition === null) === !all) {
    throw new BrokerError("badRequest", "force-recover needs either partition=T-P or all=1");
  }
  const fromText = params.get("from");
  const from = fromText === null ? undefined : Number(fromText);
  if (from !== undefined && (!Number.isInteger(from) || from < 1)) {
    throw new BrokerError("badRequest", `force-recover: bad node id '${fromText}'`);
  }
  return {
    groups: partition !== null ? { kind: "one", group: partition } : { kind: "all" },
    ...(from !== undefined ? { from } : {}),
    force: params.get("force") === "1",
  };
}

/** Why `group` names no partition of a configured topic, or undefined when it does. */
function unknownGroup(group: string, partitionsOf: PartitionCount): string | undefined {
  const parts = splitPartitionKey(group);
  if (!parts) return `'${group}' is not a partition: expected <topic>-<partition>, e.g. orders-0`;
  const count = partitionsOf(parts.topic);
  if (count === undefined) return `unknown partition ${group}: no topic '${parts.topic}' here`;
  if (parts.partition >= count) {
    return `unknown partition ${group}: topic '${parts.topic}' has ${count} partitions (0-${
      count - 1
    })`;
  }
  return undefined;
}

function fsyncText(node: ClusterNode): string {
  const fsync = node.settings.fsync;
  return fsync.kind === "always" ? "always" : `interval:${fsync.intervalMs}`;
}

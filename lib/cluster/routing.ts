/**
 * @module Routing: which node serves a client's request in a cluster. Puts go to the
 * partition's leader (forwarded if it is another node; waited for briefly while a new group
 * elects one); reads are served by any node holding the partition, up to its commit offset;
 * consumer-group commands go to the leader of `__meta-0`, which coordinates groups. On the
 * serving node the broker appends through Raft (`appendHook`) and caps reads at the commit
 * offset (`readLimit`). Transactions on replicated topics are refused with a clear error.
 */
import { type CheckedPut } from "../broker/broker.ts";
import { type Reply, type RequestContext, result } from "../protocol/reply.ts";
import { encodeRecord } from "../protocol/record.ts";
import type { Command, PutCommand } from "../protocol/commands.ts";
import type { Respond } from "../server/router.ts";
import type { ClusterNode } from "./cluster_node.ts";
import type { Forwarder } from "./forwarding.ts";
import { isInternalTopic, META_GROUP } from "./placement.ts";

/** How long a request waits for a new group to elect a leader before it is refused (503). */
const LEADER_WAIT_MS = 4000;
/** Extension verbs of consumer groups: served by the group coordinator (the `__meta` leader). */
export const GROUP_VERBS = new Set([
  "join",
  "heartbeat",
  "assignment",
  "leave",
  "commit",
  "committed",
  "describe",
  "adjust",
]);

export class ClusterRouting {
  readonly #node: ClusterNode;
  readonly #forwarder: Forwarder;

  constructor(node: ClusterNode, forwarder: Forwarder) {
    this.#node = node;
    this.#forwarder = forwarder;
  }

  /** Router interceptor: true when the request was taken (forwarded, refused or deferred). */
  intercept(command: Command, context: RequestContext, respond: Respond): boolean {
    switch (command.kind) {
      case "put":
        return this.#routePut(command, context, respond);
      case "get":
      case "offset":
        return this.#routeRead(command, context, respond);
      case "transaction":
        if (command.type !== "END") {
          respond(
            result(
              500,
              "Cannot run transaction command: transactions are not supported on replicated topics yet",
            ),
          );
        }
        return true;
      case "extension":
        if (!GROUP_VERBS.has(command.verb)) return false;
        return this.#routeToLeader(META_GROUP, command, context, respond);
      default:
        return false;
    }
  }

  /** Broker append hook: proposes the record to the partition's Raft group. */
  append(put: CheckedPut, done: (reply: Reply) => void): boolean {
    const replica = this.#node.replica(put.topic, put.partition);
    if (!replica) {
      done(result(503, `Cannot put to ${put.topic}-${put.partition}: this node does not hold it`));
      return true;
    }
    const id = this.#node.running.broker.ids.nextId();
    const record = encodeRecord({ id, flag: put.flag, data: put.body });
    replica.propose(record, (outcome) => {
      if (outcome.ok) {
        done({
          kind: "result",
          code: 200,
          text: `${id} ${put.partition} ${outcome.offset}`,
          ascii: true,
        });
      } else done(result(outcome.error.status, outcome.error.message));
    });
    return true;
  }

  #routePut(command: PutCommand, context: RequestContext, respond: Respond): boolean {
    if (command.txKey && command.txKey.kind !== "null") {
      respond(
        result(
          500,
          "Cannot put in a transaction: transactions are not supported on replicated topics yet",
        ),
      );
      return true;
    }
    if (isInternalTopic(command.topic)) {
      respond(
        result(
          500,
          `Cannot put to ${command.topic}: topics starting with '__' belong to the cluster`,
        ),
      );
      return true;
    }
    const settings = this.#node.running.broker.topicSettings(command.topic);
    // Invalid topics, partitions and sizes: the broker's own checks answer with MetaQ's texts.
    if (!settings || command.oversizedBytes !== undefined) return false;
    const partition = command.partition === -1
      ? Math.floor(Math.random() * settings.numPartitions)
      : command.partition;
    if (partition < 0 || partition >= settings.numPartitions) return false;
    const resolved: PutCommand = partition === command.partition
      ? command
      : { ...command, partition };
    const group = `${command.topic}-${partition}`;
    if (this.#node.replica(command.topic, partition)?.isLeader) {
      if (resolved === command) return false;
      this.#node.running.broker.put(resolved, context, respond);
      return true;
    }
    return this.#routeToLeader(group, resolved, context, respond);
  }

  #routeRead(
    command: Extract<Command, { kind: "get" | "offset" }>,
    context: RequestContext,
    respond: Respond,
  ): boolean {
    if (this.#node.hosts(command.topic, command.partition)) {
      if (this.#node.replica(command.topic, command.partition)) return false;
      // Open the replica first, so reads are capped at the commit offset from the start.
      void this.#node.ensureReplica(command.topic, command.partition).then(() =>
        this.#dispatchLocally(command, context, respond)
      );
      return true;
    }
    if (context.forwarded) {
      respond(
        result(
          503,
          `Cannot serve ${command.topic}-${command.partition}: this node does not hold it`,
        ),
      );
      return true;
    }
    const group = `${command.topic}-${command.partition}`;
    const target = this.#node.leaderOf(group)?.nodeId ??
      this.#node.replicasOf(command.topic, command.partition)[0];
    this.#forwarder.forward(target, command, respond);
    return true;
  }

  /** Serves `command` where `group`'s leader is: here, another node, or after an election. */
  #routeToLeader(
    group: string,
    command: Command,
    context: RequestContext,
    respond: Respond,
  ): boolean {
    const dash = group.lastIndexOf("-");
    const topic = group.slice(0, dash);
    const partition = Number(group.slice(dash + 1));
    const deadline = Date.now() + LEADER_WAIT_MS;
    const attempt = async (): Promise<void> => {
      if (this.#node.hosts(topic, partition)) await this.#node.ensureReplica(topic, partition);
      const leader = this.#node.leaderOf(group);
      if (!leader) this.#node.replica(topic, partition)?.campaignIfNew();
      if (leader?.nodeId === this.#node.nodeId) {
        return this.#dispatchLocally(command, context, respond);
      }
      if (context.forwarded) {
        // The node that forwarded it thought we lead: we do not (any more). Nothing was stored.
        return respond(result(503, `Cannot serve ${group}: this node is not its leader`));
      }
      if (leader && this.#node.isConnected(leader.nodeId)) {
        return this.#forwarder.forward(leader.nodeId, command, respond);
      }
      // No leader, or one we cannot reach (it may have died): wait for an election, bounded.
      if (Date.now() >= deadline) {
        const why = leader
          ? `its leader, node ${leader.nodeId}, is unreachable`
          : "it has no leader now";
        return respond(result(503, `Cannot serve ${group}: ${why}; retry shortly`));
      }
      await this.#node.roleChanged(Math.min(250, deadline - Date.now()));
      return attempt();
    };
    const leader = this.#node.leaderOf(group);
    if (leader?.nodeId === this.#node.nodeId) return false;
    void attempt();
    return true;
  }

  #dispatchLocally(command: Command, context: RequestContext, respond: Respond): void {
    this.#node.running.router.dispatchHere(command, context, respond);
  }
}

/**
 * @module Edge: where a client's request is served. Every request from the TCP port, the HTTP
 * API and other nodes passes here before any part of the broker sees it. On a broker that
 * runs alone everything is served here. In a cluster the command's home (router.ts) decides:
 * a put goes to its partition's leader (forwarded when that is another node, or waited for
 * briefly while a new group elects one); a read goes to any node holding the partition;
 * transactions and consumer groups go to the leader of the broker's own log that keeps them.
 * A request another node forwarded here is never forwarded again.
 */
import { BrokerError } from "../errors.ts";
import { LEADER_WAIT_MS } from "../limits.ts";
import type { Command } from "../protocol/commands.ts";
import type { ExtensionSpec } from "../protocol/parser.ts";
import { errorReply, type RequestContext, type Respond } from "../protocol/reply.ts";
import type { Forwarder } from "./forwarder.ts";
import type { Home, Router } from "./router.ts";

/** Where partitions live in a cluster (ClusterNode provides it). */
export interface Placement {
  readonly nodeId: number;
  /** Whether this node holds a copy of the partition. */
  hosts(topic: string, partition: number): boolean;
  /** The nodes holding the partition, sorted by id. */
  holdersOf(topic: string, partition: number): readonly number[];
  /** The partition's leader as far as this node knows, if any. */
  leaderNodeOf(topic: string, partition: number): number | undefined;
  isConnected(node: number): boolean;
  /**
   * Opens the partition's copy here (when this node holds one) and lets a new group elect;
   * undefined when there is nothing to wait for.
   */
  prepare(topic: string, partition: number): Promise<void> | undefined;
  /** Resolves when a leader changes anywhere on this node, or after `timeoutMs`. */
  roleChanged(timeoutMs: number): Promise<void>;
  /**
   * Why the partition cannot elect a leader until an operator acts (and what to run), when
   * that is so: waiting for an election would be pointless.
   */
  whyLeaderless?(topic: string, partition: number): string | undefined;
}

/** The request path every edge uses; TCP connections and HTTP routes hold one of these. */
export interface Requests {
  /** Verbs and framing the parser must accept besides MetaQ's own. */
  readonly extensionSpecs: ReadonlyMap<string, ExtensionSpec>;
  dispatch(command: Command, context: RequestContext, respond: Respond): void;
  connectionClosed(context: RequestContext): void;
}

export interface EdgeOptions {
  readonly router: Router;
  /** Absent on a broker that runs alone. */
  readonly cluster?: { readonly placement: Placement; readonly forwarder: Forwarder };
  /** Monotonic milliseconds, for the bounded wait for a leader. */
  readonly now: () => number;
}

export class Edge implements Requests {
  readonly #router: Router;
  readonly #cluster: EdgeOptions["cluster"];
  readonly #now: () => number;

  constructor(options: EdgeOptions) {
    this.#router = options.router;
    this.#cluster = options.cluster;
    this.#now = options.now;
  }

  get extensionSpecs(): ReadonlyMap<string, ExtensionSpec> {
    return this.#router.extensionSpecs;
  }

  dispatch(command: Command, context: RequestContext, respond: Respond): void {
    const cluster = this.#cluster;
    if (!cluster) return this.#router.handle(command, context, respond);
    if (context.originNode === undefined && this.#router.nodesOnly(command)) {
      // Forwarded, a client's would arrive at its target as if a node had sent it.
      const verb = command.kind === "extension" ? command.verb : command.kind;
      return respond(
        errorReply(new BrokerError("forbidden", `${verb} is sent between cluster nodes only`)),
      );
    }
    const home = this.#router.home(command);
    switch (home.kind) {
      case "here":
        return this.#router.handle(command, context, respond);
      case "leader":
        return this.#toLeader(home, home.command ?? command, context, respond);
      case "holder":
        return this.#toHolder(home, command, context, respond);
    }
  }

  connectionClosed(context: RequestContext): void {
    this.#router.connectionClosed(context);
    this.#cluster?.forwarder.connectionClosed(context);
  }

  /** Serves `command` where the partition's leader is: here, another node, or after an election. */
  #toLeader(
    home: Extract<Home, { kind: "leader" }>,
    command: Command,
    context: RequestContext,
    respond: Respond,
  ): void {
    const { placement, forwarder } = this.#cluster!;
    const { topic, partition } = home;
    if (placement.leaderNodeOf(topic, partition) === placement.nodeId) {
      return this.#router.handle(command, context, respond);
    }
    const group = `${topic}-${partition}`;
    const deadline = this.#now() + LEADER_WAIT_MS;
    const attempt = async (): Promise<void> => {
      await placement.prepare(topic, partition);
      const leader = placement.leaderNodeOf(topic, partition);
      if (leader === placement.nodeId) return this.#router.handle(command, context, respond);
      if (context.originNode !== undefined) {
        // The node that forwarded it thought we lead: we do not (any more). Nothing was stored.
        const error = new BrokerError(
          "notLeader",
          `node ${placement.nodeId} does not lead ${group}`,
        );
        return respond(errorReply(error));
      }
      if (leader !== undefined && placement.isConnected(leader)) {
        const plan = this.#router.forwardPlan(command);
        return forwarder.forward(leader, plan, context, respond, { topic, partition });
      }
      const stuck = leader === undefined ? placement.whyLeaderless?.(topic, partition) : undefined;
      if (stuck) return respond(errorReply(new BrokerError("unavailable", stuck)));
      // No leader, or one we cannot reach (it may have died): wait for an election, bounded.
      const left = deadline - this.#now();
      if (left <= 0) {
        const why = leader !== undefined
          ? `its leader, node ${leader}, is unreachable`
          : "it has no leader now";
        return respond(
          errorReply(new BrokerError("unavailable", `${group}: ${why}; retry shortly`)),
        );
      }
      await placement.roleChanged(Math.min(250, left));
      return attempt();
    };
    void attempt();
  }

  /** Serves a read on a node holding the partition: here when this node does. */
  #toHolder(
    home: Extract<Home, { kind: "holder" }>,
    command: Command,
    context: RequestContext,
    respond: Respond,
  ): void {
    const { placement, forwarder } = this.#cluster!;
    const { topic, partition } = home;
    if (placement.hosts(topic, partition)) {
      // Open the copy first, so the read sees the committed end from the start.
      const preparing = placement.prepare(topic, partition);
      if (!preparing) return this.#router.handle(command, context, respond);
      return void preparing.then(() => this.#router.handle(command, context, respond));
    }
    if (context.originNode !== undefined) {
      const error = new BrokerError(
        "unavailable",
        `node ${placement.nodeId} does not hold ${topic}-${partition}`,
      );
      return respond(errorReply(error));
    }
    const target = placement.leaderNodeOf(topic, partition) ??
      placement.holdersOf(topic, partition)[0];
    // Any holder can serve a read, leader or not: a change of leader does not concern it.
    forwarder.forward(target, this.#router.forwardPlan(command), context, respond);
  }
}

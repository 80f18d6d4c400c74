/**
 * @module Forwarder: sends a client's request to the node that must serve it, and serves the
 * requests other nodes send here. The request travels re-encoded as wire bytes with the
 * client's opaque; the serving node runs it through its own edge (never forwarding it again)
 * and sends back the reply bytes, which this node hands to the client unchanged. A request
 * whose reply does not come back in time is answered as indeterminate (a put may or may not
 * have been stored).
 *
 * It also carries the end of a client connection to the nodes that served its requests, so a
 * local transaction held for that connection elsewhere is rolled back; and when a node
 * restarts or stays unreachable, the connections it forwarded are treated as closed here.
 */
import type { ForwardedFrame } from "../cluster/cluster_node.ts";
import { BrokerError, ERRORS } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Command } from "../protocol/commands.ts";
import {
  encodeExtension,
  encodeGet,
  encodeOffset,
  encodePut,
  encodeResult,
  encodeStats,
  encodeTransaction,
} from "../protocol/encoder.ts";
import { BATCH_PUT_VERB } from "../protocol/batch_put.ts";
import { type ExtensionSpec, Parser } from "../protocol/parser.ts";
import { type ForwardPlan, OUTCOME_AT_NEXT_LEADER } from "../protocol/command_table.ts";
import {
  errorReply,
  INTERNAL_CONNECTION_ID,
  type Reply,
  type RequestContext,
  type Respond,
  wholeFrame,
} from "../protocol/reply.ts";
import type { CancelTimer, Timers } from "../timers.ts";
import type { Placement } from "./edge.ts";
import {
  FORWARD_TIMEOUT_MS,
  FORWARDED_REQUEST_BYTES_MAX,
  FORWARDS_PENDING_MAX,
} from "../limits.ts";

/** What the forwarder needs from the cluster's peer links (ClusterNode provides them). */
export interface PeerLink {
  readonly nodeId: number;
  isConnected(node: number): boolean;
  /** False when the request could not be queued (the link is down or backed up). */
  sendRequest(to: number, requestId: number, connectionId: number, bytes: Uint8Array): boolean;
  sendReply(to: number, requestId: number, bytes: Uint8Array): void;
  sendClosed(to: number, connectionId: number): void;
}

/** Frames other nodes send here, as the cluster's node hands them over. */
export type IncomingFrame = ForwardedFrame;

export interface ForwarderOptions {
  readonly link: PeerLink;
  /** Serves a request another node sent here (the edge: it never forwards such a request). */
  readonly serve: (command: Command, context: RequestContext, respond: Respond) => void;
  /** Who leads what (the cluster's node): a request's target may stop leading. */
  readonly placement: Pick<Placement, "nodeId" | "leaderNodeOf" | "isConnected" | "roleChanged">;
  /** Extension verbs the parser must accept in forwarded requests. */
  readonly extensionSpecs: () => ReadonlyMap<string, ExtensionSpec>;
  /** A client connection that sent requests here through another node has ended. */
  readonly remoteClosed: (context: RequestContext) => void;
  readonly logger: Logger;
  /** For each request's overall deadline. */
  readonly timers: Timers;
}

/** The partition (or the broker's own log) whose leader a forwarded request was sent to. */
export interface Route {
  readonly topic: string;
  readonly partition: number;
}

interface PendingForward {
  readonly respond: Respond;
  readonly context: RequestContext;
  readonly isPut: boolean;
  /** The deadline of the current attempt: each attempt gets the forwarding timeout. */
  cancelTimer: CancelTimer;
  readonly route?: Route;
  readonly plan: ForwardPlan;
  /** The node it was last sent to, and how many times it was sent. */
  target: number;
  attempts: number;
  /**
   * The target answered that it does not lead the partition: nothing was done there, so the
   * request waits (still pending) for the next leader, whatever its plan.
   */
  refused: boolean;
  /**
   * When it was refused, and whether who leads changed since: a refused request goes again to
   * the same node once that node leads anew (an election it won after refusing), which this
   * node may see only as the same leader, so also once REFUSED_SAME_LEADER_MS have passed.
   */
  refusedAtMs: number;
  leaderChangedSinceRefusal: boolean;
  /**
   * The target answered that only the next leader knows the outcome (OUTCOME_AT_NEXT_LEADER):
   * kept for the client if no next leader answers it within the attempts.
   */
  unknown?: Uint8Array;
  /** An earlier attempt may have taken effect (it got no answer, or an unknown outcome). */
  uncertain: boolean;
  /** Its client has its answer: later ones (a timer, another attempt) are dropped. */
  answered: boolean;
}

/** A request is sent at most this many times (the first, and retries at new leaders). */
const ATTEMPTS_MAX = 3;
/** How often, at most, pending requests are checked against who leads while nothing changes. */
const LEADER_WATCH_MS = 250;
/**
 * A request refused by the node this one still sees as leader goes there again after this
 * long (it may have lost and won an election since; this node's view may lag).
 */
const REFUSED_SAME_LEADER_MS = 1000;

export class Forwarder {
  readonly #options: ForwarderOptions;
  readonly #pending = new Map<number, PendingForward>();
  /** For each local connection, the nodes its requests were forwarded to. */
  readonly #sentFor = new Map<number, Set<number>>();
  /** For each node, the connections there whose requests were served here. */
  readonly #servedFrom = new Map<number, Set<number>>();
  #nextId = 1;
  #watching = false;
  #closed = false;

  constructor(options: ForwarderOptions) {
    this.#options = options;
  }

  /**
   * Sends `command` to node `to`; `respond` gets that node's reply, or an answer from this node
   * (not reachable, timed out, or an unknown outcome). A request routed to a partition's leader
   * (`route`) that stops leading before it answered is sent again to the new leader when the
   * plan allows it (`again`), and otherwise answered at once as of unknown outcome.
   */
  forward(
    to: number,
    plan: ForwardPlan,
    context: RequestContext,
    respond: Respond,
    route?: Route,
  ): void {
    const { command } = plan;
    if (!encodeCommand(command)) {
      return respond(errorReply(new BrokerError("notSupported", `cannot forward ${command.kind}`)));
    }
    if (!this.#options.link.isConnected(to)) {
      // Not sent, so certainly not stored: the client may retry.
      return respond(errorReply(new BrokerError("unavailable", `node ${to} is not reachable`)));
    }
    if (this.#pending.size >= FORWARDS_PENDING_MAX) {
      const error = new BrokerError("queueFull", "too many requests in flight to other nodes");
      return respond(errorReply(error));
    }
    const isPut = command.kind === "put" || isBatchPut(command) ||
      plan.again !== undefined && isPutLike(command);
    const pending: PendingForward = {
      respond,
      context,
      isPut,
      route,
      plan,
      target: to,
      attempts: 0,
      refused: false,
      refusedAtMs: 0,
      leaderChangedSinceRefusal: false,
      uncertain: false,
      answered: false,
      cancelTimer: this.#options.timers.after(FORWARD_TIMEOUT_MS, () => this.#expire(pending)),
    };
    if (!context.internal) {
      let nodes = this.#sentFor.get(context.connectionId);
      if (!nodes) this.#sentFor.set(context.connectionId, nodes = new Set());
      nodes.add(to);
    }
    this.#send(pending, to, command);
    if (route) this.#watchLeaders();
  }

  /** Sends (again) under a new request id; an answer to an earlier attempt is then ignored. */
  #send(pending: PendingForward, to: number, command: Command): void {
    for (const [id, entry] of this.#pending) if (entry === pending) this.#pending.delete(id);
    const requestId = this.#nextId;
    this.#nextId = this.#nextId >= 0xffff_fffe ? 1 : this.#nextId + 1;
    pending.target = to;
    pending.attempts += 1;
    pending.refused = false;
    if (pending.attempts > 1) {
      // A large request sent again must have as long to travel as the first time.
      pending.cancelTimer();
      pending.cancelTimer = this.#options.timers.after(
        FORWARD_TIMEOUT_MS,
        () => this.#expire(pending),
      );
    }
    this.#pending.set(requestId, pending);
    const connectionId = pending.context.internal
      ? INTERNAL_CONNECTION_ID
      : pending.context.connectionId;
    if (!this.#options.link.sendRequest(to, requestId, connectionId, encodeCommand(command)!)) {
      // Not sent, so certainly not stored (by this attempt): the client may retry.
      this.#finish(
        requestId,
        pending,
        errorReply(
          new BrokerError("unavailable", `the link to node ${to} is backed up`),
        ),
      );
    }
  }

  /** Checks pending requests against who leads now, while any was sent to a leader. */
  #watchLeaders(): void {
    if (this.#watching) return;
    this.#watching = true;
    const loop = async (): Promise<void> => {
      while (!this.#closed && [...this.#pending.values()].some((entry) => entry.route)) {
        await this.#options.placement.roleChanged(LEADER_WATCH_MS);
        this.#checkLeaders();
      }
      this.#watching = false;
    };
    void loop();
  }

  /** Requests whose target no longer leads their partition: sent again, or answered now. */
  #checkLeaders(): void {
    const { placement } = this.#options;
    for (const [requestId, pending] of [...this.#pending]) {
      const route = pending.route;
      if (!route) continue;
      const leader = placement.leaderNodeOf(route.topic, route.partition);
      if (leader !== pending.target) pending.leaderChangedSinceRefusal = true;
      if (leader === undefined) continue; // electing
      if (leader === pending.target && !this.#leadsAnew(pending)) continue; // unchanged
      if (leader !== placement.nodeId && !placement.isConnected(leader)) continue;
      const { again, command: first } = pending.plan;
      if (pending.attempts >= ATTEMPTS_MAX && pending.unknown) {
        this.#finish(requestId, pending, { kind: "frame", bytes: pending.unknown });
        continue;
      }
      if (pending.attempts >= ATTEMPTS_MAX || !pending.refused && !again) {
        const error = pending.refused && !pending.uncertain
          ? new BrokerError(
            "unavailable",
            `${route.topic}-${route.partition} changed leader ` +
              `${pending.attempts} times while this request was on its way; retry`,
          )
          : lostLeader(pending.target, pending.isPut, again !== undefined || pending.uncertain);
        this.#finish(requestId, pending, errorReply(error));
        continue;
      }
      if (!pending.refused) pending.uncertain = true;
      // A refused request was not acted on: the same request goes again (a put keeps its id).
      const command = again ? again(pending.attempts + 1) : first;
      this.#options.logger.log("info", "Forwarded request sent again to a new leader", {
        from: pending.target,
        to: leader,
        partition: `${route.topic}-${route.partition}`,
        attempt: pending.attempts + 1,
      });
      if (leader === placement.nodeId) {
        // This node leads now: serve the retry here, as if forwarded (it is never sent on).
        this.#pending.delete(requestId);
        const context = { ...pending.context, originNode: placement.nodeId };
        pending.attempts += 1;
        pending.target = leader;
        pending.cancelTimer();
        pending.cancelTimer = this.#options.timers.after(
          FORWARD_TIMEOUT_MS,
          () => this.#expire(pending),
        );
        this.#options.serve(command, context, (reply) => this.#finish(undefined, pending, reply));
        continue;
      }
      this.#send(pending, leader, command);
    }
  }

  /** Whether a request its target refused may go to that target again (see refusedAtMs). */
  #leadsAnew(pending: PendingForward): boolean {
    if (!pending.refused) return false;
    return pending.leaderChangedSinceRefusal ||
      performance.now() - pending.refusedAtMs >= REFUSED_SAME_LEADER_MS;
  }

  /** Answers a pending request once (later answers to any of its attempts are ignored). */
  #finish(requestId: number | undefined, pending: PendingForward, reply: Reply): void {
    if (requestId !== undefined) this.#pending.delete(requestId);
    if (pending.answered) return;
    pending.answered = true;
    for (const [id, entry] of this.#pending) if (entry === pending) this.#pending.delete(id);
    pending.cancelTimer();
    pending.respond(reply);
  }

  #expire(pending: PendingForward): void {
    for (const [id, entry] of this.#pending) if (entry === pending) this.#pending.delete(id);
    if (pending.answered) return;
    pending.answered = true;
    this.#options.logger.log("warn", "Forwarded request got no answer in time", {
      node: pending.target,
      attempts: pending.attempts,
    });
    pending.respond(errorReply(timedOut(pending.target, pending.isPut)));
  }

  /** A frame from node `from`: a request to serve, a reply to hand back, or a closed client. */
  receive(from: number, frame: IncomingFrame): void {
    switch (frame.kind) {
      case "request":
        return this.#serve(from, frame.requestId, frame.connectionId, frame.bytes);
      case "reply":
        return this.#onReply(frame.requestId, frame.bytes);
      case "closed": {
        this.#servedFrom.get(from)?.delete(frame.connectionId);
        return this.#options.remoteClosed(remoteContext(from, frame.connectionId));
      }
    }
  }

  /** A client connection here ended: the nodes that served its requests hear of it. */
  connectionClosed(context: RequestContext): void {
    const nodes = this.#sentFor.get(context.connectionId);
    if (!nodes) return;
    this.#sentFor.delete(context.connectionId);
    for (const node of nodes) this.#options.link.sendClosed(node, context.connectionId);
  }

  /** Node `node` restarted or stayed unreachable: its clients' connections are gone. */
  peerGone(node: number): void {
    const connections = this.#servedFrom.get(node);
    if (!connections) return;
    this.#servedFrom.delete(node);
    for (const connectionId of connections) {
      this.#options.remoteClosed(remoteContext(node, connectionId));
    }
  }

  /** Fails every forward in flight (node shutting down). */
  close(): void {
    this.#closed = true;
    for (const [requestId, pending] of [...this.#pending]) {
      const error = pending.isPut
        ? new BrokerError(
          "internal",
          "this node is shutting down; the message may or may not be stored",
        )
        : new BrokerError("unavailable", "this node is shutting down");
      this.#finish(requestId, pending, errorReply(error));
    }
  }

  #onReply(requestId: number, reply: Uint8Array): void {
    const pending = this.#pending.get(requestId);
    if (!pending || pending.refused) return; // answered already (timeout, another attempt)
    if (pending.route && pending.attempts < ATTEMPTS_MAX && isNotLeaderReply(reply)) {
      // Its target stopped leading before the request arrived: wait for the next leader.
      pending.refused = true;
      pending.refusedAtMs = performance.now();
      pending.leaderChangedSinceRefusal = false;
      return this.#watchLeaders();
    }
    if (
      pending.route && pending.plan.again && pending.attempts < ATTEMPTS_MAX &&
      hasText(reply, OUTCOME_AT_NEXT_LEADER_TEXT)
    ) {
      // Only the next leader can tell what became of it: ask it there (`again` is safe).
      pending.unknown = reply.slice();
      return this.#watchLeaders();
    }
    this.#finish(requestId, pending, { kind: "frame", bytes: reply.slice() });
  }

  #serve(from: number, requestId: number, connectionId: number, request: Uint8Array): void {
    const parser = new Parser({
      bodyBytesMax: FORWARDED_REQUEST_BYTES_MAX,
      extensions: this.#options.extensionSpecs(),
    });
    const { commands, error } = parser.push(request);
    const command = commands[0];
    if (
      error || commands.length !== 1 || command.kind === "quit" || command.kind === "result" ||
      command.kind === "value"
    ) {
      this.#options.logger.log("warn", "Dropping a malformed forwarded request", {
        peer: from,
        reason: error?.message,
      });
      return;
    }
    const internal = connectionId === INTERNAL_CONNECTION_ID;
    if (!internal) {
      let connections = this.#servedFrom.get(from);
      if (!connections) this.#servedFrom.set(from, connections = new Set());
      connections.add(connectionId);
    }
    const context: RequestContext = internal
      ? { connectionId, peer: `node ${from}`, originNode: from, internal: true }
      : remoteContext(from, connectionId);
    const opaque = command.opaque;
    this.#options.serve(command, context, (reply) => {
      const bytes = reply.kind === "frame"
        ? wholeFrame(reply)
        : encodeResult(reply.code, reply.text, opaque);
      this.#options.link.sendReply(from, requestId, bytes);
    });
  }
}

/** The context of a request a client of node `node` sent through it. */
function remoteContext(node: number, connectionId: number): RequestContext {
  return { connectionId, peer: `node ${node}`, originNode: node };
}

const NOT_LEADER_TEXT = new TextEncoder().encode(ERRORS.notLeader.text);

/** Whether a reply frame is the `notLeader` error (the request was not acted on). */
function isNotLeaderReply(frame: Uint8Array): boolean {
  return startsWith(frame, RESULT_503) && hasText(frame, NOT_LEADER_TEXT);
}

const OUTCOME_AT_NEXT_LEADER_TEXT = new TextEncoder().encode(OUTCOME_AT_NEXT_LEADER);

/** Whether `text` occurs in the first 512 bytes of a reply frame. */
function hasText(frame: Uint8Array, text: Uint8Array): boolean {
  const head = frame.subarray(0, Math.min(frame.length, 512));
  outer: for (let i = 0; i + text.length <= head.length; i++) {
    for (let j = 0; j < text.length; j++) {
      if (head[i + j] !== text[j]) continue outer;
    }
    return true;
  }
  return false;
}

const RESULT_503 = new TextEncoder().encode("result 503 ");

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/** A command the broker sends to a leader in place of a client's put (see brokerCommands). */
function isPutLike(command: Command): boolean {
  return command.kind === "extension" && command.verb === "fput";
}

function isBatchPut(command: Command): boolean {
  return command.kind === "extension" && command.verb === BATCH_PUT_VERB;
}

/**
 * The answer to a request whose target stopped leading before it answered: a 503 (nothing
 * changed) only for a request that cannot have acted (a read, or no attempt but refused ones).
 */
function lostLeader(node: number, isPut: boolean, mayHaveActed: boolean): BrokerError {
  if (isPut) {
    return new BrokerError(
      "internal",
      `node ${node} stopped leading before it answered; the message may or may not be stored`,
    );
  }
  return mayHaveActed
    ? new BrokerError(
      "internal",
      `node ${node} stopped leading before it answered; the request may or may not have ` +
        "taken effect",
    )
    : new BrokerError("unavailable", `node ${node} stopped leading before it answered; retry`);
}

function timedOut(node: number, isPut: boolean): BrokerError {
  return isPut
    ? new BrokerError(
      "internal",
      `node ${node} did not answer in time; the message may or may not be stored`,
    )
    : new BrokerError("timeout", `node ${node} did not answer in time`);
}

/** Wire bytes of a request, carrying the client's opaque, for the commands a node forwards. */
export function encodeCommand(command: Command): Uint8Array | undefined {
  switch (command.kind) {
    case "put":
      return encodePut({
        topic: command.topic,
        partition: command.partition,
        flag: command.flag,
        checksum: command.checksum,
        txKey: command.txKey?.text,
        opaque: command.opaque,
        body: command.body,
      });
    case "get":
      return encodeGet({
        topic: command.topic,
        group: command.group,
        partition: command.partition,
        offset: command.offsetIsLongMax ? 9223372036854775807n : command.offset,
        maxSize: command.maxSize,
        opaque: command.opaque,
      });
    case "offset":
      return encodeOffset(command);
    case "transaction":
      return encodeTransaction({
        txKey: command.txKey.text,
        sessionId: command.sessionId,
        type: command.type,
        timeout: command.timeout,
        uniqueQualifier: command.uniqueQualifier,
        opaque: command.opaque,
      });
    case "stats":
      return encodeStats(command.item, command.opaque);
    case "extension":
      return encodeExtension(
        command.verb,
        command.args,
        command.opaque,
        command.body.length ? command.body : undefined,
      );
    default:
      return undefined;
  }
}

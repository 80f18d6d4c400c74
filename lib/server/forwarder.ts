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
import { BrokerError } from "../errors.ts";
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
import { type ExtensionSpec, Parser } from "../protocol/parser.ts";
import {
  errorReply,
  INTERNAL_CONNECTION_ID,
  type RequestContext,
  type Respond,
} from "../protocol/reply.ts";
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
  /** Extension verbs the parser must accept in forwarded requests. */
  readonly extensionSpecs: () => ReadonlyMap<string, ExtensionSpec>;
  /** A client connection that sent requests here through another node has ended. */
  readonly remoteClosed: (context: RequestContext) => void;
  readonly logger: Logger;
}

interface PendingForward {
  readonly respond: Respond;
  readonly timer: ReturnType<typeof setTimeout>;
  readonly isPut: boolean;
}

export class Forwarder {
  readonly #options: ForwarderOptions;
  readonly #pending = new Map<number, PendingForward>();
  /** For each local connection, the nodes its requests were forwarded to. */
  readonly #sentFor = new Map<number, Set<number>>();
  /** For each node, the connections there whose requests were served here. */
  readonly #servedFrom = new Map<number, Set<number>>();
  #nextId = 1;

  constructor(options: ForwarderOptions) {
    this.#options = options;
  }

  /** Sends `command` to node `to`; `respond` gets that node's reply, or a timeout answer. */
  forward(to: number, command: Command, context: RequestContext, respond: Respond): void {
    const link = this.#options.link;
    const bytes = encodeCommand(command);
    if (!bytes) {
      return respond(errorReply(new BrokerError("notSupported", `cannot forward ${command.kind}`)));
    }
    if (!link.isConnected(to)) {
      // Not sent, so certainly not stored: the client may retry.
      return respond(errorReply(new BrokerError("unavailable", `node ${to} is not reachable`)));
    }
    if (this.#pending.size >= FORWARDS_PENDING_MAX) {
      const error = new BrokerError("queueFull", "too many requests in flight to other nodes");
      return respond(errorReply(error));
    }
    const requestId = this.#nextId;
    this.#nextId = this.#nextId >= 0xffff_fffe ? 1 : this.#nextId + 1;
    const isPut = command.kind === "put";
    const timer = setTimeout(() => {
      this.#pending.delete(requestId);
      this.#options.logger.log("warn", "Forwarded request got no answer in time", {
        node: to,
        command: command.kind === "extension" ? command.verb : command.kind,
      });
      respond(errorReply(timedOut(to, isPut)));
    }, FORWARD_TIMEOUT_MS);
    this.#pending.set(requestId, { respond, timer, isPut });
    const connectionId = context.internal ? INTERNAL_CONNECTION_ID : context.connectionId;
    if (!context.internal) {
      let nodes = this.#sentFor.get(context.connectionId);
      if (!nodes) this.#sentFor.set(context.connectionId, nodes = new Set());
      nodes.add(to);
    }
    if (!link.sendRequest(to, requestId, connectionId, bytes)) {
      // Not sent, so certainly not stored: the client may retry.
      clearTimeout(timer);
      this.#pending.delete(requestId);
      respond(errorReply(new BrokerError("unavailable", `the link to node ${to} is backed up`)));
    }
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
    for (const [requestId, pending] of this.#pending) {
      clearTimeout(pending.timer);
      const error = pending.isPut
        ? new BrokerError(
          "internal",
          "this node is shutting down; the message may or may not be stored",
        )
        : new BrokerError("unavailable", "this node is shutting down");
      pending.respond(errorReply(error));
      this.#pending.delete(requestId);
    }
  }

  #onReply(requestId: number, reply: Uint8Array): void {
    const pending = this.#pending.get(requestId);
    if (!pending) return; // answered by its timeout already
    this.#pending.delete(requestId);
    clearTimeout(pending.timer);
    pending.respond({ kind: "frame", bytes: reply.slice() });
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
        ? reply.bytes
        : encodeResult(reply.code, reply.text, opaque);
      this.#options.link.sendReply(from, requestId, bytes);
    });
  }
}

/** The context of a request a client of node `node` sent through it. */
function remoteContext(node: number, connectionId: number): RequestContext {
  return { connectionId, peer: `node ${node}`, originNode: node };
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

/**
 * @module Forwarding: a node that cannot serve a client's request (it does not lead the
 * partition, or does not hold it) sends the request, re-encoded as wire bytes with the client's
 * opaque, to the node that can; that node runs it through its own router and sends back the
 * reply bytes, which the first node hands to the client unchanged. A forwarded request is never
 * forwarded again. A request whose reply does not come back in time is answered as
 * indeterminate (a put may or may not have been stored).
 */
import { type Reply, result } from "../protocol/reply.ts";
import type { Logger } from "../log.ts";
import type { Command } from "../protocol/commands.ts";
import {
  encodeExtension,
  encodeGet,
  encodeOffset,
  encodePut,
  encodeResult,
} from "../protocol/encoder.ts";
import { Parser } from "../protocol/parser.ts";
import type { Respond, Router } from "../server/router.ts";
import type { ClusterNode } from "./cluster_node.ts";
import type { NodeId } from "./messages.ts";

const FORWARD_TIMEOUT_MS = 10_000;
/** Requests forwarded and not yet answered, per node; beyond it, new ones are refused (503). */
const FORWARDS_PENDING_MAX = 65_536;

interface PendingForward {
  readonly respond: Respond;
  readonly timer: ReturnType<typeof setTimeout>;
  readonly isPut: boolean;
}

export class Forwarder {
  readonly #node: ClusterNode;
  readonly #router: Router;
  readonly #logger: Logger;
  readonly #pending = new Map<number, PendingForward>();
  #nextId = 1;

  constructor(node: ClusterNode, router: Router, logger: Logger) {
    this.#node = node;
    this.#router = router;
    this.#logger = logger;
    node.onForward = (from, requestId, request) => this.#serve(from, requestId, request);
    node.onForwardReply = (requestId, reply) => this.#onReply(requestId, reply);
  }

  /** Sends `command` to node `to`; `respond` gets that node's reply, or a timeout answer. */
  forward(to: NodeId, command: Command, respond: Respond): void {
    const bytes = encodeCommand(command);
    if (!bytes) return respond(result(500, `Cannot forward ${command.kind}: not forwardable`));
    if (!this.#node.isConnected(to)) {
      // Not sent, so certainly not stored: the client may retry.
      return respond(result(503, `Cannot forward request: node ${to} is not reachable`));
    }
    if (this.#pending.size >= FORWARDS_PENDING_MAX) {
      return respond(
        result(503, "Cannot forward request: too many requests in flight to other nodes"),
      );
    }
    const requestId = this.#nextId;
    this.#nextId = this.#nextId >= 0xffff_fffe ? 1 : this.#nextId + 1;
    const isPut = command.kind === "put";
    const timer = setTimeout(() => {
      this.#pending.delete(requestId);
      this.#logger.log("warn", "Forwarded request got no answer in time", {
        node: to,
        command: command.kind === "extension" ? command.verb : command.kind,
      });
      respond(
        isPut
          ? result(
            500,
            `Cannot confirm put: node ${to} did not answer in time; the message may or may not be stored`,
          )
          : result(503, `Cannot serve request: node ${to} did not answer in time`),
      );
    }, FORWARD_TIMEOUT_MS);
    this.#pending.set(requestId, { respond, timer, isPut });
    this.#node.send(to, { kind: "forward", requestId, request: bytes });
  }

  /** Fails every forward in flight (node shutting down). */
  close(): void {
    for (const [requestId, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.respond(
        pending.isPut
          ? result(
            500,
            "Cannot confirm put: this node is shutting down; the message may or may not be stored",
          )
          : result(503, "Cannot serve request: this node is shutting down"),
      );
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

  #serve(from: NodeId, requestId: number, request: Uint8Array): void {
    const parser = new Parser({
      bodyBytesMax: 64 * 1024 * 1024,
      extensions: this.#router.extensionSpecs,
    });
    const { commands, error } = parser.push(request.slice());
    const command = commands[0];
    if (
      error || commands.length !== 1 || command.kind === "quit" || command.kind === "result" ||
      command.kind === "value"
    ) {
      this.#logger.log("warn", "Dropping a malformed forwarded request", {
        peer: from,
        reason: error?.message,
      });
      return;
    }
    const opaque = command.opaque;
    this.#router.dispatch(
      command,
      { connectionId: -from, peer: `node ${from}`, forwarded: true },
      (reply: Reply) => {
        const bytes = reply.kind === "frame"
          ? reply.bytes
          : encodeResult(reply.code, reply.text, opaque);
        this.#node.send(from, { kind: "reply", requestId, reply: bytes });
      },
    );
  }
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

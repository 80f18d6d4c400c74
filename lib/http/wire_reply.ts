/**
 * @module The HTTP edge's way of sending a wire command and reading its reply. Commands go
 * through a Dispatch: the edge (lib/server/edge.ts), which serves them here or on the node that
 * must (forwarding in a cluster), or the broker itself when the app has no edge. A reply served
 * here is a value (a `result`, or the `value` frame the broker built); one served by another
 * node arrives as its wire bytes. Both are decoded here, once, into code and text or the body of
 * a `value` reply.
 */
import { BrokerError } from "../errors.ts";
import type { Command } from "../protocol/commands.ts";
import { Parser } from "../protocol/parser.ts";
import { type Reply, type RequestContext, type Respond, wholeFrame } from "../protocol/reply.ts";

/** Requests over HTTP have no connection of their own (no per-connection transactions). */
export const HTTP_REQUEST_CONTEXT: RequestContext = { connectionId: 0, peer: "http" };

/** Serves one command and calls `respond` with its reply (Requests.dispatch, bound). */
export type Dispatch = (command: Command, respond: Respond) => void;

/** A reply as the HTTP routes read it. */
export type WireAnswer =
  | { readonly kind: "result"; readonly code: number; readonly text: string }
  | { readonly kind: "value"; readonly body: Uint8Array };

const utf8 = new TextDecoder();

/** Sends `command` and resolves with its decoded reply. */
export function ask(dispatch: Dispatch, command: Command): Promise<WireAnswer> {
  return new Promise((resolve) => dispatch(command, (reply) => resolve(decodeReply(reply))));
}

/** `reply` as code and text, or as a value body; wire bytes are decoded. */
export function decodeReply(reply: Reply): WireAnswer {
  if (reply.kind === "result") {
    const text = typeof reply.text === "string" ? reply.text : utf8.decode(reply.text);
    return { kind: "result", code: reply.code, text };
  }
  const bytes = wholeFrame(reply);
  const { commands } = new Parser({ bodyBytesMax: bytes.length }).push(bytes);
  const first = commands[0];
  if (first?.kind === "value") return { kind: "value", body: first.body };
  if (first?.kind === "result") {
    return { kind: "result", code: first.code, text: utf8.decode(first.body) };
  }
  const error = new BrokerError("internal", "the reply of the node that served it is not a reply");
  return { kind: "result", code: error.status, text: error.message };
}

/**
 * @module Replies that come back from another node (a put forwarded to its partition's leader)
 * arrive as the wire bytes of a `result` line, ready for a TCP client. The HTTP routes read
 * replies as code and text, so they decode those bytes first.
 */
import { BrokerError } from "../errors.ts";
import { errorReply, type Reply, result, wholeFrame } from "./reply.ts";
import { Parser } from "./parser.ts";

/** `reply` as a `result` with a code and text; wire bytes are decoded. */
export function plainReply(reply: Reply): Reply {
  if (reply.kind !== "frame") return reply;
  const bytes = wholeFrame(reply);
  const { commands } = new Parser({ bodyBytesMax: bytes.length }).push(bytes);
  const first = commands[0];
  if (first?.kind !== "result") {
    return errorReply(
      new BrokerError("internal", "the reply of the node that served the request is not a result"),
    );
  }
  return result(first.code, new TextDecoder().decode(first.body));
}

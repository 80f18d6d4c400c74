/**
 * @module What a request gets back, and who sent it: the vocabulary every part that answers
 * requests shares (broker, transactions, groups, cluster, both edges). A reply is a value; the
 * TCP edge encodes it with the request's opaque, the HTTP edge renders it as JSON or text.
 * Error replies are built from an error kind (lib/errors.ts) by `errorReply`, so a status and
 * its text always come from one table.
 */
import { BrokerError, describeError, type ErrorKind, ERRORS } from "../errors.ts";

/** What the server sends back: a `result` line, or a prebuilt frame (a `value` reply). */
export type Reply =
  | {
    readonly kind: "result";
    readonly code: number;
    readonly text?: string | Uint8Array;
    /** The text is known to be ASCII (put acknowledgements): its length is its byte count. */
    readonly ascii?: boolean;
  }
  | {
    readonly kind: "frame";
    readonly bytes: Uint8Array;
    /**
     * Called (at most once) by whoever writes `bytes` to a socket, once the socket no longer
     * needs them: the buffer goes back to its pool (lib/broker/frame_pool.ts). Never called for
     * bytes kept or passed on; those are collected as usual.
     */
    readonly release?: () => void;
    /**
     * The rest of a frame too large for one buffer (a `get` of a message over 1 MiB): `bytes`
     * holds its start, and the socket's writer reads the rest piece by piece as the socket takes
     * them, so the whole frame is never in memory at once. Parts that keep or forward a reply
     * take it whole with `wholeFrame`.
     */
    readonly rest?: FrameRest;
  };

/** The bytes of a frame after its first part, read from their source on demand. */
export interface FrameRest {
  /** Bytes still to come. */
  readonly remaining: number;
  /**
   * The next piece (at most 1 MiB), with how to give its buffer back once the socket no longer
   * needs it. Throws if the source went away (a deleted segment): the frame cannot be finished.
   */
  next(): { bytes: Uint8Array; release?: () => void };
  /**
   * Where the rest is still in a file: sends as much of it as the socket `socketFd` takes at
   * once straight from the file (sendfile), without reading it into this process, and returns
   * the bytes taken (0: the socket is full). Throws as `next` does. Only a writer whose socket
   * holds nothing queued of its own may call it, or the bytes would overtake what is queued.
   */
  sendTo?(socketFd: number): number;
  /**
   * The writer drops the frame before its end (its connection closed): what the rest holds (a
   * segment file kept open for it) is let go. Idempotent, and a no-op once the rest is sent.
   */
  abandon?(): void;
}

/** A frame's bytes in one array: its first part and whatever its rest still has to read. */
export function wholeFrame(reply: Extract<Reply, { kind: "frame" }>): Uint8Array {
  const rest = reply.rest;
  if (!rest) return reply.bytes;
  const whole = new Uint8Array(reply.bytes.length + rest.remaining);
  whole.set(reply.bytes, 0);
  reply.release?.();
  let at = reply.bytes.length;
  while (rest.remaining > 0) {
    const piece = rest.next();
    whole.set(piece.bytes, at);
    at += piece.bytes.length;
    piece.release?.();
  }
  return whole;
}

/** Called with the reply to a request, once (or never: MetaQ answers no END and no quit). */
export type Respond = (reply: Reply) => void;

/** A `result` reply with MetaQ's code and text. Successes only: failures use `errorReply`. */
export const result = (code: number, text?: string | Uint8Array): Reply => ({
  kind: "result",
  code,
  text,
});

/** The reply for an operating error: the kind's status and the error's text. */
export function errorReply(error: BrokerError): Reply {
  return { kind: "result", code: error.status, text: error.message };
}

/** The reply for anything thrown: a BrokerError as itself, anything else as `internal`. */
export function replyForThrown(error: unknown): Reply {
  if (error instanceof BrokerError) return errorReply(error);
  return errorReply(new BrokerError("internal", describeError(error)));
}

/** Who sent a request: for logs, per-connection state (transactions) and stats. */
export interface RequestContext {
  readonly connectionId: number;
  readonly peer: string;
  /**
   * Set when another cluster node forwarded the request: the node it came from. A forwarded
   * request is never forwarded again; `connectionId` is then the client's connection there.
   */
  readonly originNode?: number;
  /**
   * Set on requests the broker sends itself (a transaction's batch to a partition's leader),
   * also when another node forwarded them; never on a client's. Internal commands need it.
   */
  readonly internal?: true;
  /**
   * Set by the TCP edge on a plain socket whose bytes this runtime can send straight from a
   * file (lib/runtime/file_to_socket.ts): a `get` may then leave its body in the segment file,
   * for the connection to send without reading it (FrameRest.sendTo).
   */
  readonly sendsFromFiles?: true;
}

/** The connection id a forwarded internal request carries (no client connection has it). */
export const INTERNAL_CONNECTION_ID = 0xffff_ffff;

/** Names the client connection of a request across the cluster: `<node>:<connection>`. */
export function connectionKey(context: RequestContext, localNode = 0): string {
  return `${context.originNode ?? localNode}:${context.connectionId}`;
}

const KINDS = Object.keys(ERRORS) as ErrorKind[];

/**
 * The one decoding of an error reply back into a BrokerError (clients, and the HTTP edge
 * reading a reply another node sent). The kind whose text starts the reply wins (several kinds
 * share a status); otherwise the first kind with the status, otherwise `internal`. The status
 * is the reply's, also for MetaQ texts that no kind's text starts.
 */
export function errorFromResult(code: number, text: string): BrokerError {
  const kind =
    KINDS.find((name) => ERRORS[name].status === code && text.startsWith(ERRORS[name].text)) ??
      KINDS.find((name) => ERRORS[name].status === code) ??
      "internal";
  const error = BrokerError.verbatim(kind, text || `status ${code}`);
  (error as { status: number }).status = code;
  return error;
}

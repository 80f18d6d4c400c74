/**
 * @module What travels in a peer frame: a Raft message for a named group, a client request
 * forwarded to the node that can serve it (and its reply), the end of a client connection whose
 * requests were forwarded, a node's self-description, and small questions one node asks
 * another (a group's commit offset, a digest of a copy). Pure encode/decode; the transport adds
 * framing and a CRC.
 *
 * ```text
 * raft      0x01 | u16 nameLength | name | Raft message (messages.ts encoding)
 * forward   0x02 | u32 requestId | u32 connectionId | the client's request, as wire bytes
 * reply     0x03 | u32 requestId | the reply, as wire bytes
 * info      0x04 | JSON NodeInfo
 * closed    0x05 | u32 connectionId
 * ask       0x06 | u32 questionId | JSON Question
 * answer    0x07 | u32 questionId | JSON answer (null: cannot answer)
 * beat      0x08 | (nothing): "this node is alive", once per heartbeat interval per peer
 * ```
 */
import {
  decodeMessage,
  type DecodeOptions,
  encodedMessageBytes,
  encodeMessageInto,
  encodeMessageParts,
  type Message,
} from "./messages.ts";

export interface NodeInfo {
  readonly nodeId: number;
  /** `host:port` of the client port, for `meta` leaders and forwarding answers. */
  readonly clientAddress: string;
  /** This node's identity (a random UUID made when its data directory was created). */
  readonly uuid: string;
  /** Random per process start: a new value means the node restarted (its clients are gone). */
  readonly incarnation?: string;
  /** The identities this node has recorded for every node id it has seen. */
  readonly members: Readonly<Record<string, { readonly uuid: string; readonly version: number }>>;
  readonly httpPort?: number;
  /** `host:port` of this node's peer port (a joining node learns where to answer). */
  readonly peer?: string;
  /** Groups this node leads whose copies are moving (voters differ from their placement). */
  readonly moving?: readonly Reassignment[];
  /** Groups this node leads now (so every node can route to any leader). */
  readonly leads?: readonly string[];
  /** Figures of the groups this node leads, for cluster-wide views (see cluster_figures.ts). */
  readonly figures?: Readonly<Record<string, readonly number[]>>;
  /**
   * Set when `figures` holds only the groups whose figures changed: the receiver keeps what it
   * had for the other groups in `leads`. Unset: `figures` is complete.
   */
  readonly figuresChangedOnly?: boolean;
  /** Groups whose copy here is in repair mode waiting for a leader (votes for nobody). */
  readonly repairing?: readonly string[];
  /**
   * Whether this node is admitted. Before, it opens no copy and drops what its peers' groups
   * send it, so a change here must wake their sleeping groups again (cluster_node.ts #onInfo).
   */
  readonly admitted?: boolean;
  /**
   * Peers this node has heard nothing from for an election timeout. A node listed here whose
   * link to this node has been up that long has a stalled link and dials it again
   * (stalled_links.ts). Older nodes send none.
   */
  readonly unheard?: readonly number[];
}

/** A group whose copies are moving, as its leader sees it. */
export interface Reassignment {
  readonly group: string;
  readonly leader: number;
  readonly voters: readonly number[];
  readonly target: readonly number[];
  /** Bytes each new copy still lacks (the leader's log end minus what it stored). */
  readonly behindBytes: Readonly<Record<string, number | null>>;
}

/** Questions a node answers from its own state. */
export type Question =
  | { readonly kind: "commit"; readonly group: string }
  /** Your copy's start and committed end, as `[start, end]`. */
  | { readonly kind: "bounds"; readonly group: string }
  /** Open your copy of the group and let it elect: a client is waiting for its leader. */
  | { readonly kind: "open"; readonly group: string }
  /** The partition groups you hold a copy of (for placement plans). */
  | { readonly kind: "held" }
  /** The group's committed voters, from its leader (a moved copy asks before it goes). */
  | { readonly kind: "voters"; readonly group: string }
  | { readonly kind: "digest"; readonly group: string; readonly from: number; readonly to: number }
  /** force-recover: describe your copy of the group (`*`: every copy you hold). */
  | { readonly kind: "survey"; readonly group: string }
  /**
   * force-recover: restart your copy of the group behind `base` (in repair mode, voting for it
   * only), or, when you are the base, out of repair mode in a term of at least `term`.
   */
  | {
    readonly kind: "recover";
    readonly group: string;
    readonly base: number;
    readonly term: number;
  };

export type Envelope =
  | { readonly kind: "raft"; readonly group: string; readonly message: Message }
  | {
    readonly kind: "forward";
    readonly requestId: number;
    readonly connectionId: number;
    readonly request: Uint8Array;
  }
  | { readonly kind: "reply"; readonly requestId: number; readonly reply: Uint8Array }
  | { readonly kind: "info"; readonly info: NodeInfo }
  | { readonly kind: "closed"; readonly connectionId: number }
  /**
   * One per node pair per heartbeat interval, whatever the number of groups: sleeping groups
   * (quiescence) rely on it to notice that a leader's node went silent.
   */
  | { readonly kind: "beat" }
  | { readonly kind: "ask"; readonly questionId: number; readonly question: Question }
  | { readonly kind: "answer"; readonly questionId: number; readonly answer: unknown };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeEnvelope(envelope: Envelope): Uint8Array {
  return encodeEnvelopeAfter(envelope, 0);
}

/**
 * Encodes `envelope` after `headerBytes` bytes left free for the transport's frame header, in
 * one buffer: a large Raft entry is copied once on its way out, not once per layer.
 */
export function encodeEnvelopeAfter(envelope: Envelope, headerBytes: number): Uint8Array {
  switch (envelope.kind) {
    case "raft": {
      const name = encoder.encode(envelope.group);
      const at = headerBytes + 3 + name.length;
      const out = new Uint8Array(at + encodedMessageBytes(envelope.message));
      out[headerBytes] = 1;
      new DataView(out.buffer).setUint16(headerBytes + 1, name.length);
      out.set(name, headerBytes + 3);
      encodeMessageInto(out, at, 0, envelope.message);
      return out;
    }
    case "forward": {
      const out = new Uint8Array(headerBytes + 9 + envelope.request.length);
      out[headerBytes] = 2;
      const view = new DataView(out.buffer);
      view.setUint32(headerBytes + 1, envelope.requestId);
      view.setUint32(headerBytes + 5, envelope.connectionId >>> 0);
      out.set(envelope.request, headerBytes + 9);
      return out;
    }
    case "reply":
      return withId(headerBytes, 3, envelope.requestId, envelope.reply);
    case "info":
      return withId(headerBytes, 4, undefined, encoder.encode(JSON.stringify(envelope.info)));
    case "closed":
      return withId(headerBytes, 5, envelope.connectionId >>> 0, new Uint8Array(0));
    case "ask": {
      const question = encoder.encode(JSON.stringify(envelope.question));
      return withId(headerBytes, 6, envelope.questionId, question);
    }
    case "answer": {
      const answer = encoder.encode(JSON.stringify(envelope.answer ?? null));
      return withId(headerBytes, 7, envelope.questionId, answer);
    }
    case "beat": {
      const out = new Uint8Array(headerBytes + 1);
      out[headerBytes] = 8;
      return out;
    }
  }
}

/**
 * Like encodeEnvelopeAfter, as parts sent one after the other: a Raft message's large entries
 * are the caller's buffers, not copies (see encodeMessageParts). The first part starts with
 * `headerBytes` free bytes.
 */
export function encodeEnvelopeParts(envelope: Envelope, headerBytes: number): Uint8Array[] {
  if (envelope.kind !== "raft") return [encodeEnvelopeAfter(envelope, headerBytes)];
  const name = encoder.encode(envelope.group);
  const parts = encodeMessageParts(0, envelope.message, headerBytes + 3 + name.length);
  const first = parts[0];
  first[headerBytes] = 1;
  new DataView(first.buffer, first.byteOffset).setUint16(headerBytes + 1, name.length);
  first.set(name, headerBytes + 3);
  return parts;
}

/**
 * Decodes a peer frame; a string says why it is malformed (the caller drops it). `options`
 * passes on how far the bytes are trusted (see DecodeOptions).
 */
export function decodeEnvelope(bytes: Uint8Array, options: DecodeOptions = {}): Envelope | string {
  if (bytes.length < 1) return "empty frame";
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  switch (bytes[0]) {
    case 1: {
      if (bytes.length < 3) return "short raft frame";
      const nameLength = view.getUint16(1);
      if (bytes.length < 3 + nameLength) return "short group name";
      const decoded = decodeMessage(bytes.subarray(3 + nameLength), options);
      if (!decoded.ok) return decoded.reason;
      return {
        kind: "raft",
        group: decoder.decode(bytes.subarray(3, 3 + nameLength)),
        message: decoded.message,
      };
    }
    case 2:
      if (bytes.length < 9) return "short forward frame";
      return {
        kind: "forward",
        requestId: view.getUint32(1),
        connectionId: view.getUint32(5),
        request: bytes.subarray(9),
      };
    case 3:
      if (bytes.length < 5) return "short reply frame";
      return { kind: "reply", requestId: view.getUint32(1), reply: bytes.subarray(5) };
    case 4: {
      const info = parseJson(bytes.subarray(1));
      if (typeof info?.nodeId !== "number" || typeof info.clientAddress !== "string") {
        return "bad node info";
      }
      return { kind: "info", info };
    }
    case 5:
      if (bytes.length < 5) return "short closed frame";
      return { kind: "closed", connectionId: view.getUint32(1) };
    case 6: {
      if (bytes.length < 5) return "short ask frame";
      const question = parseJson(bytes.subarray(5));
      const groupless = question?.kind === "held";
      if (
        typeof question?.kind !== "string" || (!groupless && typeof question.group !== "string")
      ) {
        return "bad question";
      }
      return { kind: "ask", questionId: view.getUint32(1), question };
    }
    case 7:
      if (bytes.length < 5) return "short answer frame";
      return {
        kind: "answer",
        questionId: view.getUint32(1),
        answer: parseJson(bytes.subarray(5)),
      };
    case 8:
      return bytes.length === 1 ? { kind: "beat" } : "long beat frame";
    default:
      return `unknown frame kind ${bytes[0]}`;
  }
}

/** After `headerBytes` free bytes: `kind`, then (when given) a u32 id, then `body`. */
function withId(
  headerBytes: number,
  kind: number,
  id: number | undefined,
  body: Uint8Array,
): Uint8Array {
  const head = headerBytes + (id === undefined ? 1 : 5);
  const out = new Uint8Array(head + body.length);
  out[headerBytes] = kind;
  if (id !== undefined) new DataView(out.buffer).setUint32(headerBytes + 1, id);
  out.set(body, head);
  return out;
}

// deno-lint-ignore no-explicit-any
function parseJson(bytes: Uint8Array): any {
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch {
    return undefined;
  }
}

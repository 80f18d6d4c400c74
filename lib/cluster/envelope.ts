/**
 * @module What travels in a peer frame: a Raft message for a named group, a client request
 * forwarded to the node that can serve it (and its reply), or a node's self-description.
 * Pure encode/decode; the transport adds framing and a CRC.
 *
 * ```text
 * raft     0x01 | u16 nameLength | name | Raft message (messages.ts encoding)
 * forward  0x02 | u32 requestId | the client's request, as wire bytes
 * reply    0x03 | u32 requestId | the reply, as wire bytes
 * info     0x04 | JSON NodeInfo
 * ```
 */
import { decodeMessage, encodeMessage, type Message } from "./messages.ts";

export interface NodeInfo {
  readonly nodeId: number;
  /** `host:port` of the client port, for `meta` leaders and forwarding answers. */
  readonly clientAddress: string;
  /** This node's identity (a random UUID made when its data directory was created). */
  readonly uuid: string;
  /** The identities this node has recorded for every node id it has seen. */
  readonly members: Readonly<Record<string, { readonly uuid: string; readonly version: number }>>;
  readonly httpPort?: number;
  /** Groups this node leads now (so every node can route to any leader). */
  readonly leads?: readonly string[];
}

export type Envelope =
  | { readonly kind: "raft"; readonly group: string; readonly message: Message }
  | { readonly kind: "forward"; readonly requestId: number; readonly request: Uint8Array }
  | { readonly kind: "reply"; readonly requestId: number; readonly reply: Uint8Array }
  | { readonly kind: "info"; readonly info: NodeInfo };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeEnvelope(envelope: Envelope): Uint8Array {
  switch (envelope.kind) {
    case "raft": {
      const name = encoder.encode(envelope.group);
      const body = encodeMessage(0, envelope.message);
      const out = new Uint8Array(3 + name.length + body.length);
      out[0] = 1;
      new DataView(out.buffer).setUint16(1, name.length);
      out.set(name, 3);
      out.set(body, 3 + name.length);
      return out;
    }
    case "forward":
    case "reply": {
      const bytes = envelope.kind === "forward" ? envelope.request : envelope.reply;
      const out = new Uint8Array(5 + bytes.length);
      out[0] = envelope.kind === "forward" ? 2 : 3;
      new DataView(out.buffer).setUint32(1, envelope.requestId);
      out.set(bytes, 5);
      return out;
    }
    case "info": {
      const json = encoder.encode(JSON.stringify(envelope.info));
      const out = new Uint8Array(1 + json.length);
      out[0] = 4;
      out.set(json, 1);
      return out;
    }
  }
}

/** Decodes a peer frame; a string says why it is malformed (the caller drops it). */
export function decodeEnvelope(bytes: Uint8Array): Envelope | string {
  if (bytes.length < 1) return "empty frame";
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  switch (bytes[0]) {
    case 1: {
      if (bytes.length < 3) return "short raft frame";
      const nameLength = view.getUint16(1);
      if (bytes.length < 3 + nameLength) return "short group name";
      const decoded = decodeMessage(bytes.subarray(3 + nameLength));
      if (!decoded.ok) return decoded.reason;
      return {
        kind: "raft",
        group: decoder.decode(bytes.subarray(3, 3 + nameLength)),
        message: decoded.message,
      };
    }
    case 2:
    case 3: {
      if (bytes.length < 5) return "short forward frame";
      const requestId = view.getUint32(1);
      const payload = bytes.subarray(5);
      return bytes[0] === 2
        ? { kind: "forward", requestId, request: payload }
        : { kind: "reply", requestId, reply: payload };
    }
    case 4:
      try {
        const info = JSON.parse(decoder.decode(bytes.subarray(1)));
        if (typeof info?.nodeId !== "number" || typeof info.clientAddress !== "string") {
          return "bad node info";
        }
        return { kind: "info", info };
      } catch {
        return "node info is not JSON";
      }
    default:
      return `unknown frame kind ${bytes[0]}`;
  }
}

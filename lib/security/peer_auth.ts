/**
 * @module The peer handshake: both ends of a link between cluster nodes prove they hold the
 * cluster secret, without sending it, before any Raft message is accepted. Each side picks a
 * fresh random nonce and answers the other's with an HMAC-SHA256, so a recorded handshake
 * cannot be replayed and a stranger cannot join or forge a node's identity.
 *
 * ```text
 * dialer   -> listener  "metaq-peer/2 <from> <to> <dialerNonce>"
 * listener -> dialer    "metaq-peer/2 <listenerNonce> <HMAC(secret, accept|from|to|dN|lN)>"
 * dialer   -> listener  "<HMAC(secret, dial|from|to|dN|lN)>"
 * ```
 *
 * Each line travels as one peer frame; nonces and MACs are lower-case hex. Proofs are compared
 * in constant time. Without a secret the same exchange runs with an empty key: it checks node
 * ids, not identity (docs/security.md says so).
 */
import { Buffer } from "node:buffer";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

export const PEER_PROTOCOL = "metaq-peer/2";
const NONCE_BYTES = 16;

export interface Hello {
  readonly from: number;
  readonly to: number;
  readonly nonce: string;
}

export function newNonce(): string {
  return randomBytes(NONCE_BYTES).toString("hex");
}

export function encodeHello(hello: Hello): string {
  return `${PEER_PROTOCOL} ${hello.from} ${hello.to} ${hello.nonce}`;
}

export function decodeHello(text: string): Hello | undefined {
  const match = /^metaq-peer\/2 (\d{1,4}) (\d{1,4}) ([0-9a-f]{32})$/.exec(text);
  if (!match) return undefined;
  return { from: Number(match[1]), to: Number(match[2]), nonce: match[3] };
}

export function encodeChallenge(nonce: string, proof: string): string {
  return `${PEER_PROTOCOL} ${nonce} ${proof}`;
}

export function decodeChallenge(text: string): { nonce: string; proof: string } | undefined {
  const match = /^metaq-peer\/2 ([0-9a-f]{32}) ([0-9a-f]{64})$/.exec(text);
  return match ? { nonce: match[1], proof: match[2] } : undefined;
}

/** The MAC one side sends: `role` is `accept` (the listener) or `dial` (the dialer). */
export function peerProof(
  secret: string,
  role: "accept" | "dial",
  hello: Hello,
  listenerNonce: string,
): string {
  return createHmac("sha256", secret)
    .update(`${role}|${hello.from}|${hello.to}|${hello.nonce}|${listenerNonce}`)
    .digest("hex");
}

/** Constant-time comparison of two hex proofs. */
export function proofsEqual(expected: string, presented: string): boolean {
  if (!/^[0-9a-f]{64}$/.test(presented)) return false;
  return timingSafeEqual(Buffer.from(expected, "hex"), Buffer.from(presented, "hex"));
}

/**
 * @module Encoder: commands and replies to bytes, byte for byte as MetaQ writes them
 * (BooleanCommand, DataCommand, PutCommand.encode, ...). Pure.
 */
import type { OffsetCommand, TransactionType, TxKey } from "./commands.ts";

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

/** `result <code> <length> <opaque>\r\n<text>`; an empty text has no body. */
export function encodeResult(
  code: number,
  text: string | Uint8Array | undefined,
  opaque: number,
): Uint8Array {
  const body = text === undefined ? EMPTY : typeof text === "string" ? encoder.encode(text) : text;
  return frame(`result ${code} ${body.length} ${opaque}\r\n`, body);
}

/** Header of a `value` reply; the raw record bytes follow it. */
export function encodeValueHeader(length: number, opaque: number): Uint8Array {
  return encoder.encode(`value ${length} ${opaque}\r\n`);
}

export function encodeValue(body: Uint8Array, opaque: number): Uint8Array {
  return frame(`value ${body.length} ${opaque}\r\n`, body);
}

export interface PutRequest {
  readonly topic: string;
  readonly partition: number;
  readonly flag: number;
  /** Sent as the 7th token unless `legacy` (6 tokens, no checksum). */
  readonly checksum?: number;
  readonly txKey?: string;
  readonly opaque: number;
  readonly body: Uint8Array;
  /** Pre-1.4.4 six-token form. */
  readonly legacy?: boolean;
}

export function encodePut(request: PutRequest): Uint8Array {
  const { topic, partition, flag, opaque, body } = request;
  const head = `put ${topic} ${partition} ${body.length} ${flag}`;
  if (request.legacy) return frame(`${head} ${opaque}\r\n`, body);
  const checksum = request.checksum ?? -1;
  const tail = request.txKey ? `${checksum} ${request.txKey} ${opaque}` : `${checksum} ${opaque}`;
  return frame(`${head} ${tail}\r\n`, body);
}

export interface GetRequest {
  readonly topic: string;
  readonly group: string;
  readonly partition: number;
  /** A bigint allows Java's Long.MAX_VALUE ("from the end"). */
  readonly offset: number | bigint;
  readonly maxSize: number;
  readonly opaque: number;
}

export function encodeGet(request: GetRequest): Uint8Array {
  const { topic, group, partition, offset, maxSize, opaque } = request;
  return encoder.encode(`get ${topic} ${group} ${partition} ${offset} ${maxSize} ${opaque}\r\n`);
}

export function encodeOffset(request: Omit<OffsetCommand, "kind">): Uint8Array {
  const { topic, group, partition, offset, opaque } = request;
  return encoder.encode(`offset ${topic} ${group} ${partition} ${offset} ${opaque}\r\n`);
}

/** MetaQ's Java client writes `stats  <opaque>` (two spaces) when it asks for no item. */
export function encodeStats(item: string | undefined, opaque: number): Uint8Array {
  return encoder.encode(`stats ${item ?? ""} ${opaque}\r\n`);
}

export function encodeVersion(opaque: number): Uint8Array {
  return encoder.encode(`version ${opaque}\r\n`);
}

export function encodeQuit(): Uint8Array {
  return encoder.encode("quit\r\n");
}

export interface TransactionRequest {
  readonly txKey: TxKey | string;
  readonly sessionId: string;
  readonly type: TransactionType;
  readonly timeout?: number;
  readonly uniqueQualifier?: string;
  readonly opaque: number;
}

/** The encoder omits the timeout when it is 0 and the qualifier when blank, as MetaQ's does. */
export function encodeTransaction(request: TransactionRequest): Uint8Array {
  const key = typeof request.txKey === "string" ? request.txKey : request.txKey.text;
  const parts = ["transaction", key, request.sessionId, request.type];
  if (request.timeout) parts.push(String(request.timeout));
  if (request.uniqueQualifier && request.uniqueQualifier.trim() !== "") {
    parts.push(request.uniqueQualifier);
  }
  parts.push(String(request.opaque));
  return encoder.encode(`${parts.join(" ")}\r\n`);
}

export interface SyncRequest {
  readonly topic: string;
  readonly partition: number;
  readonly flag: number;
  readonly messageId: bigint;
  readonly checksum: number;
  readonly opaque: number;
  readonly body: Uint8Array;
}

export function encodeSync(request: SyncRequest): Uint8Array {
  const { topic, partition, flag, messageId, checksum, opaque, body } = request;
  return frame(
    `sync ${topic} ${partition} ${body.length} ${flag} ${messageId} ${checksum} ${opaque}\r\n`,
    body,
  );
}

/** A metaq extension command: `<verb> <args...> <opaque>\r\n[body]`. */
export function encodeExtension(
  verb: string,
  args: readonly (string | number)[],
  opaque: number,
  body?: Uint8Array,
): Uint8Array {
  const line = [verb, ...args.map(String), String(opaque)].join(" ");
  return frame(`${line}\r\n`, body ?? EMPTY);
}

/** Header then body in one buffer of exactly the right size (no over-allocation, no subarray). */
function frame(header: string, body: Uint8Array): Uint8Array {
  if (body.length === 0) return encoder.encode(header);
  const out = new Uint8Array(header.length + body.length);
  const { read, written } = encoder.encodeInto(header, out);
  if (read === header.length && written === header.length) {
    out.set(body, header.length); // an ASCII header: one byte per character
    return out;
  }
  const head = encoder.encode(header);
  const joined = new Uint8Array(head.length + body.length);
  joined.set(head, 0);
  joined.set(body, head.length);
  return joined;
}

/**
 * @module Records as the JSON API and the live stream show them (reads.ts reads them), and
 * strict base64 for payloads sent in JSON.
 */
import { Buffer } from "node:buffer";
import { BrokerError } from "../errors.ts";
import { RECORD_HEADER_BYTES } from "../limits.ts";
import { idTimestampMs } from "../protocol/message_id.ts";
import { decodeMessageMeta } from "../protocol/message_meta.ts";
import { type DecodedRecord, splitAttribute } from "../protocol/record.ts";

export type PayloadEncoding = "utf8" | "base64";

export interface RecordJson {
  readonly offset: number;
  readonly nextOffset: number;
  /** The 64-bit message id as decimal text (JSON numbers lose precision above 2^53). */
  readonly id: string;
  /** When the broker wrote it, from the id (ISO 8601 UTC); null for an uplink's forwarded id. */
  readonly timestamp: string | null;
  readonly flag: number;
  /** The key and headers the attribute carries (message_meta.ts). */
  readonly key: string | null;
  readonly headers: readonly { readonly key: string; readonly value: string }[];
  /** The attribute without key and headers. */
  readonly attribute: string | null;
  readonly payload: string;
  readonly encoding: PayloadEncoding;
  readonly bytes: number;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** A record as JSON; `auto` gives UTF-8 text when the payload is valid UTF-8, else base64. */
export function recordToJson(
  record: DecodedRecord,
  encoding: PayloadEncoding | "auto" = "auto",
): RecordJson {
  let attribute: string | null = null;
  let payload = record.data;
  try {
    const split = splitAttribute(record.flag, record.data);
    attribute = split.attribute ?? null;
    payload = split.payload;
  } catch {
    // flag bit 0 without a valid attribute block: show the data as it is
  }
  const meta = decodeMessageMeta(attribute ?? undefined);
  const timeMs = record.id > 0n ? idTimestampMs(record.id) : undefined;
  return {
    offset: record.offset,
    nextOffset: record.offset + RECORD_HEADER_BYTES + record.length,
    id: record.id.toString(),
    timestamp: timeMs === undefined ? null : new Date(timeMs).toISOString(),
    flag: record.flag,
    key: meta.key ?? null,
    headers: meta.headers.map(([key, value]) => ({ key, value })),
    attribute: meta.attribute ?? null,
    ...payloadJson(payload, encoding),
    bytes: payload.length,
  };
}

/** A payload as JSON text: UTF-8 when it is valid UTF-8 (or asked), else base64. */
export function payloadJson(
  payload: Uint8Array,
  encoding: PayloadEncoding | "auto" = "auto",
): { payload: string; encoding: PayloadEncoding } {
  if (encoding !== "base64") {
    try {
      return { payload: strictUtf8.decode(payload), encoding: "utf8" };
    } catch {
      // not UTF-8: base64 below
    }
  }
  return { payload: Buffer.from(payload).toString("base64"), encoding: "base64" };
}

/** Decodes strict base64 (standard alphabet, padded); anything else is a 400. */
export function decodeBase64(text: string, what: string): Uint8Array {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new BrokerError("badRequest", `Cannot decode ${what}: not valid base64`);
  }
  return new Uint8Array(Buffer.from(text, "base64"));
}

/**
 * @module How `metaq consume` prints a message: its payload's bytes (text), one JSON object
 * (json), or a format string (`-f '%t %p %o %T %k %s'`), each followed by the output delimiter
 * (a newline unless `--delimiter` says otherwise). Binary-safe: a payload's bytes are written
 * as they are in text and format-string output.
 */
import { Buffer } from "node:buffer";
import { payloadJson } from "../lib/http/records.ts";
import { decodeMessageMeta } from "../lib/protocol/message_meta.ts";
import type { ConsumedMessage } from "../lib/client/partition_reader.ts";
import { recordTimeMs } from "../lib/protocol/record_seek.ts";
import { CliError } from "./common.ts";

/** A message as every output needs it: what a consumer is handed, without its ack controls. */
export type PrintedMessage = Omit<ConsumedMessage, "ack" | "rollback">;

export type Format = "text" | "json";

/** The format-string fields; `%%` is a percent sign. */
export const FORMAT_FIELDS: Readonly<Record<string, string>> = {
  t: "topic",
  p: "partition",
  o: "offset (where the record starts)",
  n: "next offset (where the next record starts)",
  T: "time the broker wrote it (from the message id), ISO 8601 UTC",
  m: "the same time in milliseconds since 1970",
  i: "message id",
  k: "key (empty when none)",
  h: "headers as name=value,name=value",
  a: "attribute (without key and headers)",
  s: "payload bytes as they are",
  S: "payload size in bytes",
};

/** Turns `\n`, `\t`, `\r`, `\0` and `\\` in a flag's text into the characters they name. */
export function unescape(text: string): string {
  return text.replace(
    /\\([ntr0\\])/g,
    (_, code: string) => ({ n: "\n", t: "\t", r: "\r", "0": "\0", "\\": "\\" })[code]!,
  );
}

type Piece =
  | string
  | ((message: PrintedMessage, meta: ReturnType<typeof decodeMessageMeta>) => string | Uint8Array);

/** A printer for one output choice; throws a CliError for an unknown `%` field. */
export function messagePrinter(
  options: { format: Format; formatString?: string; delimiter?: string },
): (message: PrintedMessage) => Uint8Array {
  const delimiter = Buffer.from(unescape(options.delimiter ?? "\n"));
  if (options.formatString !== undefined) {
    if (options.format === "json") throw new CliError("Cannot combine --format json with -f");
    const pieces = compile(unescape(options.formatString));
    return (message) => {
      const meta = decodeMessageMeta(message.attribute);
      const parts = pieces.map((piece) =>
        typeof piece === "string" ? Buffer.from(piece) : toBytes(piece(message, meta))
      );
      parts.push(delimiter);
      return Buffer.concat(parts);
    };
  }
  if (options.format === "text") return (message) => Buffer.concat([message.payload, delimiter]);
  return (message) => Buffer.from(`${JSON.stringify(messageJson(message))}${unescape("\n")}`);
}

/** One message as JSON, the shape the HTTP API gives a record plus where it is. */
export function messageJson(message: PrintedMessage): Record<string, unknown> {
  const meta = decodeMessageMeta(message.attribute);
  const timeMs = recordTimeMs(message.id);
  return {
    topic: message.topic,
    partition: message.partition,
    ...(message.brokerId === undefined ? {} : { brokerId: message.brokerId }),
    offset: message.offset,
    nextOffset: message.nextOffset,
    id: message.id.toString(),
    timestamp: Number.isFinite(timeMs) ? new Date(timeMs).toISOString() : null,
    flag: message.flag,
    key: meta.key ?? null,
    headers: meta.headers.map(([key, value]) => ({ key, value })),
    attribute: meta.attribute ?? null,
    ...payloadJson(message.payload),
    bytes: message.payload.length,
  };
}

function toBytes(value: string | Uint8Array): Uint8Array {
  return typeof value === "string" ? Buffer.from(value) : value;
}

function compile(format: string): Piece[] {
  const pieces: Piece[] = [];
  let literal = "";
  for (let i = 0; i < format.length; i++) {
    if (format[i] !== "%") {
      literal += format[i];
      continue;
    }
    const code = format[i + 1];
    i += 1;
    if (code === "%") {
      literal += "%";
      continue;
    }
    const field = code === undefined ? undefined : fieldOf(code);
    if (!field) {
      throw new CliError(
        `Cannot use -f: unknown field %${code ?? ""} (fields: ${
          Object.keys(FORMAT_FIELDS).map((name) => `%${name}`).join(" ")
        } and %%)`,
      );
    }
    if (literal) pieces.push(literal);
    literal = "";
    pieces.push(field);
  }
  if (literal) pieces.push(literal);
  return pieces;
}

function fieldOf(code: string): Piece | undefined {
  switch (code) {
    case "t":
      return (message) => message.topic;
    case "p":
      return (message) =>
        message.brokerId === undefined
          ? String(message.partition)
          : `${message.brokerId}-${message.partition}`;
    case "o":
      return (message) => String(message.offset);
    case "n":
      return (message) => String(message.nextOffset);
    case "T":
      return (message) => {
        const ms = recordTimeMs(message.id);
        return Number.isFinite(ms) ? new Date(ms).toISOString() : "-";
      };
    case "m":
      return (message) => {
        const ms = recordTimeMs(message.id);
        return Number.isFinite(ms) ? String(ms) : "-";
      };
    case "i":
      return (message) => message.id.toString();
    case "k":
      return (_, meta) => meta.key ?? "";
    case "h":
      return (_, meta) => meta.headers.map(([name, value]) => `${name}=${value}`).join(",");
    case "a":
      return (_, meta) => meta.attribute ?? "";
    case "s":
      return (message) => message.payload;
    case "S":
      return (message) => String(message.payload.length);
  }
  return undefined;
}

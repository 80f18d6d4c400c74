/**
 * @module Positions in a partition, spelt the same way in every command: `earliest` (the
 * oldest stored message; alias `beginning`), `latest` (after the newest; alias `end`), a byte
 * offset where a record starts, `-N` (the last N messages), or a time (the first message
 * written at or after it, by its message id). Resolved to byte offsets per partition.
 */
import type { MetaqClient } from "../lib/client/client.ts";
import { partitionBounds, partitionBytes } from "../lib/client/partition_seek.ts";
import { type Bounds, offsetForTime, offsetOfLast } from "../lib/protocol/record_seek.ts";
import { parseTimeText, TIME_TEXT_HINT } from "../lib/time_text.ts";
import { CliError } from "./common.ts";

export type Position =
  | { readonly kind: "earliest" }
  | { readonly kind: "latest" }
  | { readonly kind: "offset"; readonly offset: number }
  | { readonly kind: "last"; readonly count: number }
  | { readonly kind: "time"; readonly timeMs: number };

/** `earliest`/`latest` and their aliases; undefined for anything else. */
export function namedPosition(text: string): "earliest" | "latest" | undefined {
  if (text === "earliest" || text === "beginning") return "earliest";
  if (text === "latest" || text === "end") return "latest";
  return undefined;
}

/** `--offset`'s value: earliest|latest (or beginning|end), a byte offset, or -N. */
export function offsetPosition(flag: string, text: string): Position {
  const named = namedPosition(text);
  if (named) return { kind: named };
  if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new CliError(
      `Cannot use --${flag} ${text}: expected earliest, latest, a byte offset or -N (the last N ` +
        "messages)",
    );
  }
  const value = Number(text);
  if (value < 0) return { kind: "last", count: -value };
  return { kind: "offset", offset: value };
}

/** A time as `parseTimeText` reads it (lib/time_text.ts), or a CLI error naming the flag. */
export function parseTime(flag: string, text: string): number {
  const ms = parseTimeText(text);
  if (ms === undefined) throw new CliError(`Cannot use --${flag} ${text}: ${TIME_TEXT_HINT}`);
  return ms;
}

/** Where `position` is in one partition, as a byte offset (a record start, or the end). */
export async function resolvePosition(
  client: MetaqClient,
  topic: string,
  partition: number,
  position: Position,
  known?: Bounds,
): Promise<number> {
  if (position.kind === "offset") return position.offset;
  const bounds = known ?? await partitionBounds(client, topic, partition);
  switch (position.kind) {
    case "earliest":
      return bounds.start;
    case "latest":
      return bounds.end;
    case "last":
      return await offsetOfLast(
        partitionBytes(client, topic, partition),
        bounds,
        position.count,
        Date.now(),
      );
    case "time":
      return await offsetForTime(
        partitionBytes(client, topic, partition),
        bounds,
        position.timeMs,
        Date.now(),
      );
  }
}

/** A position as words, for summaries. */
export function describePosition(position: Position): string {
  switch (position.kind) {
    case "earliest":
    case "latest":
      return position.kind;
    case "offset":
      return `offset ${position.offset}`;
    case "last":
      return `the last ${position.count} messages`;
    case "time":
      return `the first message at or after ${new Date(position.timeMs).toISOString()}`;
  }
}

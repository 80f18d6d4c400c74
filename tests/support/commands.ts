/** @module Command helpers for tests that compare decoded commands. */
import { expect } from "bun:test";
import { concatBytes } from "../../lib/bytes.ts";
import type { Command } from "../../lib/protocol/commands.ts";

/**
 * A decoded command as its meaning, for comparing decodings of the same bytes cut differently:
 * a `value` whose body arrived in pieces keeps them in `chunks`, which must join to its body
 * byte for byte; how the input was cut is not part of the meaning, so `chunks` is left out.
 */
export function withoutChunks(command: Command): Command {
  if (command.kind !== "value" || command.chunks === undefined) return command;
  expect([...concatBytes([...command.chunks])]).toEqual([...command.body]);
  return { kind: "value", opaque: command.opaque, body: command.body };
}

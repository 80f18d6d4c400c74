/**
 * @module The shape of the command table: what each part of the broker says about a command it
 * serves (where it must be served, and how). Parts build their entries with these types and the
 * server's Router (lib/server/router.ts) assembles them; the types sit here, with the commands,
 * because every layer that serves requests shares them and none may import the server.
 */
import type { Command, ExtensionCommand, PutCommand } from "./commands.ts";
import type { ExtensionSpec } from "./parser.ts";
import type { RequestContext, Respond } from "./reply.ts";

/** Where a command is served. */
export type Home =
  | { readonly kind: "here" }
  /** On the node leading the partition; `command` is the request to send (partition chosen). */
  | {
    readonly kind: "leader";
    readonly topic: string;
    readonly partition: number;
    readonly command?: Command;
  }
  /** On any node holding a copy of the partition (reads). */
  | { readonly kind: "holder"; readonly topic: string; readonly partition: number };

export const HERE: Home = { kind: "here" };

/**
 * How a command goes to another node: the request to send first, and what to send again when
 * the node it went to stops leading before it answered (`again`, by attempt number from 2).
 * Without `again` the command is not sent twice: its client hears at once that the outcome is
 * unknown. Only commands whose repetition cannot do anything twice have one (reads, or a put
 * that carries its message id, which the new leader looks for before appending).
 */
/**
 * Text a serving node puts in an answer whose outcome only the partition's next leader can
 * tell (it stopped leading with the request's effect on its way). A forwarding node that has
 * an `again` for the request sends it there rather than hand this answer to the client.
 */
export const OUTCOME_AT_NEXT_LEADER = "its outcome is known to the next leader";

export interface ForwardPlan {
  readonly command: Command;
  readonly again?: (attempt: number) => Command;
}

export interface CommandEntry<C extends Command = Command> {
  /** Framing of an extension verb (its argument count, whether a body follows). */
  readonly spec?: ExtensionSpec;
  /** Where the command must be served (default: here). */
  home?(command: C): Home;
  /**
   * Sent only by one node to another (`fput`, `commitagain`): a client's, wherever it arrives,
   * is refused with 403 before it could be forwarded and taken for a node's.
   */
  readonly nodesOnly?: boolean;
  /** How it is forwarded (default: as it is, never sent twice). */
  forward?(command: C): ForwardPlan;
  handle(command: C, context: RequestContext, respond: Respond): void;
}

/**
 * Keys of the table: MetaQ's commands by kind (`tx-put` is a put carrying a transaction key,
 * served by the transactions part), extension verbs as `ext:<verb>`.
 */
export type CommandKey =
  | "put"
  | "tx-put"
  | "get"
  | "offset"
  | "stats"
  | "version"
  | "sync"
  | "transaction"
  | `ext:${string}`;

export type CommandTable = Readonly<Partial<Record<CommandKey, CommandEntry<never>>>>;

/** The table key of `command`. */
export function keyOf(command: Command): CommandKey {
  switch (command.kind) {
    case "put":
      return isTransactional(command) ? "tx-put" : "put";
    case "extension":
      return `ext:${(command as ExtensionCommand).verb}`;
    default:
      return command.kind as CommandKey;
  }
}

/** A put carrying a transaction key (other than `null`) belongs to a transaction. */
export function isTransactional(command: PutCommand): boolean {
  return command.txKey !== undefined && command.txKey.kind !== "null";
}

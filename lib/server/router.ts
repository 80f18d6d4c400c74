/**
 * @module Router: the command table. Each part of the broker (the broker itself, transactions,
 * consumer groups, the cluster) contributes the commands it serves; the table is built once by
 * the assembly (lib/app/assemble.ts), and adding a command never touches the connection code.
 * Each entry says where its command is served (`home`: here, or on the node that leads or
 * holds a partition) and serves it here. Which node that is, and forwarding, are the edge's
 * job (edge.ts); the router only serves.
 */
import type { Command } from "../protocol/commands.ts";
import type { ExtensionSpec } from "../protocol/parser.ts";
import { BrokerError } from "../errors.ts";
import { errorReply, type RequestContext, type Respond } from "../protocol/reply.ts";
import {
  type CommandEntry,
  type CommandKey,
  type CommandTable,
  type ForwardPlan,
  HERE,
  type Home,
  keyOf,
} from "../protocol/command_table.ts";

export type { CommandEntry, CommandTable, Home };

export class Router {
  readonly #entries = new Map<CommandKey, CommandEntry>();
  readonly #closeListeners: readonly ((context: RequestContext) => void)[];

  /** Builds the table; a key served by two parts, or a verb MetaQ owns, is a wiring bug. */
  constructor(
    tables: readonly CommandTable[],
    closeListeners: readonly ((context: RequestContext) => void)[] = [],
  ) {
    for (const table of tables) {
      for (const [key, entry] of Object.entries(table) as [CommandKey, CommandEntry][]) {
        if (this.#entries.has(key)) throw new Error(`Cannot register '${key}' twice`);
        if (key.startsWith("ext:") && /^[pgtrvsoq]/.test(key.slice(4))) {
          throw new Error(`Cannot register '${key}': MetaQ's decoder owns its first letter`);
        }
        this.#entries.set(key, entry);
      }
    }
    this.#closeListeners = closeListeners;
  }

  /** Verbs and framing the parser must accept besides MetaQ's own. */
  get extensionSpecs(): ReadonlyMap<string, ExtensionSpec> {
    const specs = new Map<string, ExtensionSpec>();
    for (const [key, entry] of this.#entries) {
      if (key.startsWith("ext:")) specs.set(key.slice(4), entry.spec ?? { args: 0 });
    }
    return specs;
  }

  /** Where `command` must be served. */
  home(command: Command): Home {
    const entry = this.#entryOf(command);
    return entry?.home?.(command) ?? HERE;
  }

  /** How `command` is forwarded to the node that serves it (see ForwardPlan). */
  forwardPlan(command: Command): ForwardPlan {
    return this.#entryOf(command)?.forward?.(command) ?? { command };
  }

  /** Whether `command` is one only nodes send each other (CommandEntry.nodesOnly). */
  nodesOnly(command: Command): boolean {
    return this.#entryOf(command)?.nodesOnly === true;
  }

  /** Serves `command` on this node; `respond` may be called now, later, or (END) never. */
  handle(command: Command, context: RequestContext, respond: Respond): void {
    if (command.kind === "quit" || command.kind === "result" || command.kind === "value") {
      return; // replies arriving at the broker match no request of ours: dropped, as in MetaQ
    }
    const entry = this.#entryOf(command);
    if (entry) return entry.handle(command, context, respond);
    if (command.kind === "transaction" && command.type === "END") return;
    const what = command.kind === "extension" ? command.verb : command.kind;
    respond(errorReply(new BrokerError("notSupported", `no part of this broker serves ${what}`)));
  }

  /** A client connection ended: parts drop what they kept for it (local transactions). */
  connectionClosed(context: RequestContext): void {
    for (const listener of this.#closeListeners) listener(context);
  }

  #entryOf(command: Command): CommandEntry | undefined {
    return this.#entries.get(keyOf(command));
  }
}

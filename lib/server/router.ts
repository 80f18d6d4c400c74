/**
 * @module Router: sends each decoded command to the part of the broker that owns it (broker,
 * transactions, groups, cluster) and hands back a Reply. The parts register extension verbs
 * here, so adding a command never touches the connection code.
 */
import { type Broker } from "../broker/broker.ts";
import { type Reply, type RequestContext, result } from "../protocol/reply.ts";
import type { Command, ExtensionCommand, TransactionCommand } from "../protocol/commands.ts";
import type { ExtensionSpec } from "../protocol/parser.ts";

/** Called with the reply, or never (MetaQ sends none for END and quit). */
export type Respond = (reply: Reply) => void;

export interface ExtensionHandler {
  readonly spec: ExtensionSpec;
  handle(command: ExtensionCommand, context: RequestContext, respond: Respond): void;
}

export type TransactionHandler = (
  command: TransactionCommand,
  context: RequestContext,
  respond: Respond,
) => void;

export class Router {
  readonly broker: Broker;
  readonly #extensions = new Map<string, ExtensionHandler>();
  readonly #closeListeners: ((context: RequestContext) => void)[] = [];
  #transactions: TransactionHandler | undefined;

  constructor(broker: Broker) {
    this.broker = broker;
  }

  /** Verbs and framing the parser must accept besides MetaQ's own. */
  get extensionSpecs(): ReadonlyMap<string, ExtensionSpec> {
    return new Map([...this.#extensions].map(([verb, handler]) => [verb, handler.spec]));
  }

  addExtension(verb: string, handler: ExtensionHandler): void {
    if (/^[pgtrvsoq]/.test(verb)) {
      throw new Error(`Cannot register '${verb}': MetaQ's decoder owns its first letter`);
    }
    if (this.#extensions.has(verb)) throw new Error(`Cannot register '${verb}' twice`);
    this.#extensions.set(verb, handler);
  }

  setTransactionHandler(handler: TransactionHandler): void {
    this.#transactions = handler;
  }

  onConnectionClosed(listener: (context: RequestContext) => void): void {
    this.#closeListeners.push(listener);
  }

  connectionClosed(context: RequestContext): void {
    for (const listener of this.#closeListeners) listener(context);
  }

  /** Dispatches one request; `respond` may be called now, later, or (END) never. */
  /**
   * Called first with every request; returns true when it took the request (the cluster
   * forwards requests for partitions this node does not lead or host).
   */
  intercept: ((command: Command, context: RequestContext, respond: Respond) => boolean) | undefined;

  dispatch(command: Command, context: RequestContext, respond: Respond): void {
    if (this.intercept?.(command, context, respond)) return;
    this.dispatchHere(command, context, respond);
  }

  /** Serves `command` on this node, past the interceptor (it decided this node is right). */
  dispatchHere(command: Command, context: RequestContext, respond: Respond): void {
    const broker = this.broker;
    switch (command.kind) {
      case "put":
        return broker.put(command, context, respond);
      case "get":
        return respond(broker.get(command));
      case "offset":
        return respond(broker.offset(command));
      case "stats":
        return respond(broker.statsReply(command.item));
      case "version":
        return respond(broker.version());
      case "sync":
        return respond(broker.sync(command));
      case "transaction":
        if (this.#transactions) return this.#transactions(command, context, respond);
        if (command.type === "END") return;
        return respond(
          result(500, "Cannot run transaction command: transactions are not supported yet"),
        );
      case "extension": {
        const handler = this.#extensions.get(command.verb);
        if (!handler) return respond(result(503, `Cannot run ${command.verb}: no handler`));
        return handler.handle(command, context, respond);
      }
      case "quit":
      case "result":
      case "value":
        return; // replies arriving at the broker match no request of ours: dropped, as in MetaQ
    }
  }
}

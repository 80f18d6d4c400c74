/**
 * @module Gate: the authentication state of one client connection. The connection asks it about
 * every decoded request before the router sees it. Pure: it returns what to answer and whether
 * to close; the connection does the I/O, and the callbacks count and log.
 *
 * ```text
 * auth <user> <token> <opaque>     -> result 200 (authenticated) | result 401 (refused)
 * any request before a good auth   -> result 401 "Cannot authenticate: send auth ... first"
 * a request the user may not make  -> result 403 "Cannot allow this operation: user ..."
 * ```
 *
 * After `maxFailures` refused attempts or unauthenticated requests, the 401 closes the
 * connection. With authentication off, `auth` is answered 200 and nothing else is checked.
 */
import { errorReply, type Reply, result } from "../protocol/reply.ts";
import { BrokerError } from "../errors.ts";
import type { Command } from "../protocol/commands.ts";
import type { ExtensionSpec } from "../protocol/parser.ts";
import { type AccessControl, type Principal, refusal, requirementOf } from "./access.ts";

/** `auth <user> <token> <opaque>`: its verb starts with a letter MetaQ's decoder does not own. */
export const AUTH_VERB = "auth";
export const AUTH_SPEC: ExtensionSpec = { args: 2 };

export type GateVerdict =
  | { readonly kind: "pass" }
  | { readonly kind: "answer"; readonly reply: Reply | undefined; readonly close: boolean };

export interface GateEvents {
  /** A refused `auth` or an unauthenticated request (never given the token). */
  onUnauthorized(detail: { user?: string; reason: string; closing: boolean }): void;
  /** An authenticated user asked for something it may not do. */
  onForbidden(detail: { user: string; reason: string }): void;
  onAuthenticated?(user: string): void;
}

const PASS: GateVerdict = { kind: "pass" };
/** Topics whose permission one connection remembers; beyond it the memory starts over. */
const TOPICS_REMEMBERED_MAX = 1024;

export class Gate {
  readonly #access: AccessControl;
  readonly #events: GateEvents;
  readonly #maxFailures: number;
  #principal: Principal | undefined;
  #failures = 0;
  /** `p<topic>` / `c<topic>` -> whether the user may produce / consume it. */
  readonly #allowed = new Map<string, boolean>();

  constructor(access: AccessControl, events: GateEvents, maxFailures: number) {
    this.#access = access;
    this.#events = events;
    this.#maxFailures = maxFailures;
  }

  /** Who this connection authenticated as, if anyone. */
  get user(): string | undefined {
    return this.#principal?.name;
  }

  check(command: Command): GateVerdict {
    if (command.kind === "extension" && command.verb === AUTH_VERB) {
      return this.#authenticate(command.args[0], command.args[1]);
    }
    if (!this.#access.enabled) return PASS;
    if (this.#principal && this.#allowedFast(command)) return PASS;
    const requirement = requirementOf(command);
    if (requirement.kind === "none") return PASS;
    if (!this.#principal) {
      return this.#unauthorized(undefined, "send auth <user> <token> first");
    }
    const reason = refusal(this.#principal, requirement);
    if (reason === undefined) return PASS;
    this.#events.onForbidden({ user: this.#principal.name, reason });
    return {
      kind: "answer",
      reply: errorReply(new BrokerError("forbidden", reason)),
      close: false,
    };
  }

  /**
   * Puts, gets and offsets are most of the traffic: whether the user may use their topic is
   * remembered per connection, so the patterns are matched once per topic, not per message.
   */
  #allowedFast(command: Command): boolean {
    let key: string;
    if (command.kind === "put") key = `p${command.topic}`;
    else if (command.kind === "get" || command.kind === "offset") key = `c${command.topic}`;
    else return false;
    const known = this.#allowed.get(key);
    if (known !== undefined) return known;
    const allowed = refusal(this.#principal!, requirementOf(command)) === undefined;
    if (this.#allowed.size >= TOPICS_REMEMBERED_MAX) this.#allowed.clear();
    this.#allowed.set(key, allowed);
    return allowed;
  }

  #authenticate(user: string, token: string): GateVerdict {
    if (!this.#access.enabled) {
      return { kind: "answer", reply: result(200, "authentication is off"), close: false };
    }
    const principal = this.#access.authenticate(user, token);
    if (!principal) return this.#unauthorized(user, "unknown user or wrong token");
    this.#principal = principal;
    this.#allowed.clear();
    this.#failures = 0;
    this.#events.onAuthenticated?.(principal.name);
    return { kind: "answer", reply: result(200, principal.name), close: false };
  }

  #unauthorized(user: string | undefined, reason: string): GateVerdict {
    this.#failures += 1;
    const closing = this.#failures >= this.#maxFailures;
    this.#events.onUnauthorized({ user, reason, closing });
    return {
      kind: "answer",
      reply: errorReply(new BrokerError("unauthorized", reason)),
      close: closing,
    };
  }
}

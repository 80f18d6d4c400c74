/**
 * @module Access control: who may connect (users with shared tokens, from `[user=<name>]`
 * sections) and what each may do (produce and consume per topic pattern, admin). Pure: no
 * sockets, no logging. Tokens are compared as SHA-256 digests in constant time, and an unknown
 * user costs the same comparison as a known one, so timing tells nothing about either.
 *
 * | request                                          | needs                               |
 * | ------------------------------------------------ | ----------------------------------- |
 * | put (plain or in a transaction), uput (uplinks), | produce on its topic                |
 * | bput (a batch), delay (a delayed message)        |                                     |
 * | delayed status, delayed cancel                   | produce on some topic               |
 * | cron list (schedules)                            | any user                            |
 * | cron add, pause, resume, rm                      | admin                               |
 * | get, fetch (a long poll), offset                 | consume on its topic                |
 * | meta <topic>, figures <topic>                    | produce or consume on the topic     |
 * | transaction                                      | produce on some topic               |
 * | join (its topics), commit and committed (topic)  | consume on those topics             |
 * | heartbeat, assignment, leave, describe           | consume on some topic               |
 * | stats, version                                   | any user                            |
 * | stats reset, stats config, sync, adjust, forget, | admin                               |
 * | forgettopic, catalogue (topic create, delete),   |                                     |
 * | heuristic, cluster, any other extension verb     |                                     |
 *
 * An admin may do everything. Authentication is off when there are no users.
 */
import { topicMatches, type UserSection } from "../config/config.ts";
import type { Command } from "../protocol/commands.ts";
import { nodeCrypto } from "../runtime/node_crypto.ts";

/** An authenticated user. */
export interface Principal {
  readonly name: string;
  readonly produce: readonly string[];
  readonly consume: readonly string[];
  readonly admin: boolean;
}

/** What a request needs; `topic` undefined with produce/consume means "on some topic". */
export type Requirement =
  | { readonly kind: "none" }
  | { readonly kind: "any" }
  | { readonly kind: "admin"; readonly what: string }
  | { readonly kind: "produce"; readonly topics?: readonly string[] }
  | { readonly kind: "consume"; readonly topics?: readonly string[] }
  | { readonly kind: "produceOrConsume"; readonly topic: string };

/** The digest an unknown user's token is compared with, so the work is the same. */
const NOBODY_DIGEST = new Uint8Array(32);

export class AccessControl {
  readonly #users: ReadonlyMap<string, UserSection>;

  constructor(users: readonly UserSection[]) {
    this.#users = new Map(users.map((user) => [user.name, user]));
  }

  /** Whether requests must authenticate first. */
  get enabled(): boolean {
    return this.#users.size > 0;
  }

  /** The user whose token this is, or undefined (wrong user and wrong token look the same). */
  authenticate(name: string, token: string): Principal | undefined {
    const user = this.#users.get(name);
    const presented = nodeCrypto().createHash("sha256").update(token).digest();
    const expected = user?.tokenSha256 ?? NOBODY_DIGEST;
    const equal = nodeCrypto().timingSafeEqual(presented, expected);
    if (!user || !equal) return undefined;
    return { name: user.name, produce: user.produce, consume: user.consume, admin: user.admin };
  }

  /** The user of a bearer token (HTTP), whoever it belongs to; undefined when none. */
  authenticateToken(token: string): Principal | undefined {
    const presented = nodeCrypto().createHash("sha256").update(token).digest();
    let found: UserSection | undefined;
    // Every user is compared, so the time does not depend on which one (if any) matches.
    for (const user of this.#users.values()) {
      if (nodeCrypto().timingSafeEqual(presented, user.tokenSha256) && !found) found = user;
    }
    if (!found) return undefined;
    return { name: found.name, produce: found.produce, consume: found.consume, admin: found.admin };
  }
}

/** Undefined when `principal` may do what `requirement` asks; otherwise why not. */
export function refusal(principal: Principal, requirement: Requirement): string | undefined {
  if (requirement.kind === "none" || requirement.kind === "any" || principal.admin) {
    return undefined;
  }
  const who = `user '${principal.name}'`;
  switch (requirement.kind) {
    case "admin":
      return `${who} may not ${requirement.what}: it needs admin`;
    case "produce":
    case "consume": {
      const patterns = requirement.kind === "produce" ? principal.produce : principal.consume;
      if (requirement.topics === undefined) {
        return patterns.length > 0 ? undefined : `${who} may not ${requirement.kind} any topic`;
      }
      const topic = requirement.topics.find((name) => !matchesAny(patterns, name));
      return topic === undefined
        ? undefined
        : `${who} may not ${requirement.kind} topic '${topic.slice(0, 200)}'`;
    }
    case "produceOrConsume": {
      const { topic } = requirement;
      if (matchesAny(principal.produce, topic) || matchesAny(principal.consume, topic)) {
        return undefined;
      }
      return `${who} may not use topic '${topic.slice(0, 200)}'`;
    }
  }
}

/** What a decoded TCP request needs (the table at the top). */
export function requirementOf(command: Command): Requirement {
  switch (command.kind) {
    case "put":
      return { kind: "produce", topics: [command.topic] };
    case "get":
    case "offset":
      return { kind: "consume", topics: [command.topic] };
    case "transaction":
      return { kind: "produce" };
    case "stats":
      if (command.item === "reset") return { kind: "admin", what: "reset statistics" };
      if (command.item === "config") return { kind: "admin", what: "read the configuration" };
      return { kind: "any" };
    case "version":
      return { kind: "any" };
    case "sync":
      return { kind: "admin", what: "replicate with sync" };
    case "quit":
    case "result":
    case "value":
      return { kind: "none" };
    case "extension":
      return extensionRequirement(command.verb, command.args);
  }
}

function extensionRequirement(verb: string, args: readonly string[]): Requirement {
  switch (verb) {
    case "meta":
    case "figures":
      return { kind: "produceOrConsume", topic: args[0] };
    case "join":
      return { kind: "consume", topics: args[2].split(",") };
    case "commit":
      return { kind: "consume", topics: [args[3]] };
    case "committed":
      return { kind: "consume", topics: [args[1]] };
    case "fetch":
      return { kind: "consume", topics: [args[0]] };
    case "uput":
    case "bput":
    case "delay":
      return { kind: "produce", topics: [args[0]] };
    case "delayed":
      return { kind: "produce" };
    case "cron":
      return args[0] === "list" ? { kind: "any" } : { kind: "admin", what: "change schedules" };
    case "heartbeat":
    case "assignment":
    case "leave":
    case "describe":
      return { kind: "consume" };
    case "adjust":
      return { kind: "admin", what: "reset group offsets" };
    case "forget":
      return { kind: "admin", what: "delete consumer groups" };
    case "forgettopic":
      return { kind: "admin", what: "delete topics' group offsets" };
    case "heuristic":
      return { kind: "admin", what: "complete transactions heuristically" };
    case "cluster":
      return { kind: "admin", what: "run cluster commands" };
    default:
      return { kind: "admin", what: `run ${verb.slice(0, 32)}` };
  }
}

function matchesAny(patterns: readonly string[], topic: string): boolean {
  return patterns.some((pattern) => topicMatches(pattern, topic));
}

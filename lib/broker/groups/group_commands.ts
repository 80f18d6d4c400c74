/**
 * @module The consumer-group extension commands on the wire, as a command table. Each command
 * is one CRLF line with the opaque last and gets a `result` reply; no verb starts with a letter
 * MetaQ's decoder owns, so MetaQ clients never send one. Parsing and replies live here; what
 * they mean lives in group_service.ts.
 *
 * ```text
 * join <group> <memberId> <topic>[,<topic>...] <DEFAULT|CONSIST> <opaque>  -> "<generation> <sessionTimeoutMs>"
 * heartbeat <group> <memberId> <appliedGeneration> <opaque>                -> "<generation> <pending>"
 * assignment <group> <memberId> <opaque>     -> "<generation> <pending>" + CRLF "<topic> <partition> <grantedAt> <offset|-1>" per partition
 * leave <group> <memberId> <opaque>                                        -> ""
 * commit <group> <memberId> <generation> <topic> <partition> <offset> <opaque> -> "<offset>"
 * committed <group> <topic> <partition> <opaque>                           -> "<offset>" (404: none)
 * describe <group|*> <opaque>                                              -> JSON
 * adjust <group> <topic> <partition|*> <earliest|latest|offset> <safe|force> <opaque> -> JSON
 * forget <group> <opaque>              -> JSON {"group","offsets"} (deletes a group without members)
 * forgettopic <topic> <opaque>         -> JSON {"topic","offsets"} (every group's offsets of a deleted topic)
 * ```
 */
import { BrokerError, describeError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { ExtensionCommand } from "../../protocol/commands.ts";
import type { CommandTable, Home } from "../../protocol/command_table.ts";
import type { ResetTarget } from "../../protocol/group_wire.ts";
import {
  errorReply,
  type Reply,
  type RequestContext,
  type Respond,
  result,
} from "../../protocol/reply.ts";
import type { GroupService } from "./group_service.ts";

type Handler = (args: readonly string[]) => Promise<string> | string;

/** The verbs below, in the order of the table at the top. */
export const GROUP_VERBS = [
  "join",
  "heartbeat",
  "assignment",
  "leave",
  "commit",
  "committed",
  "describe",
  "adjust",
  "forget",
  "forgettopic",
] as const;

/**
 * The group verbs as a command table. `current` is the service that coordinates groups now
 * (undefined on a node that does not: the edge sends the commands to `home`, the writer of
 * `__meta-0`, before they get here); `ready` waits briefly for one on a node that has just
 * become that writer.
 */
export function groupCommands(
  current: () => GroupService | undefined,
  ready: () => Promise<unknown>,
  home: Home,
  logger: Logger,
): CommandTable {
  const live = current;
  // A proxy so the handlers below read `service.x` of whichever service coordinates now.
  const service = new Proxy({} as GroupService, {
    get(_target, property) {
      const now = live();
      if (!now) {
        throw new BrokerError(
          "unavailable",
          "this node does not coordinate consumer groups now; retry",
        );
      }
      const value = (now as unknown as Record<PropertyKey, unknown>)[property];
      return typeof value === "function" ? value.bind(now) : value;
    },
  });
  const handlers: Record<string, [number, Handler]> = {
    join: [
      4,
      ([group, memberId, topics, strategy]) =>
        service.join({ group, memberId, topics: topics.split(","), strategy }).then((reply) =>
          `${reply.generation} ${reply.sessionTimeoutMs}`
        ),
    ],
    heartbeat: [3, ([group, memberId, generation]) => {
      const reply = service.heartbeat({ group, memberId, generation: integer(generation) });
      return `${reply.generation} ${reply.pending}`;
    }],
    assignment: [2, async ([group, memberId]) => {
      const reply = await service.assignment({ group, memberId });
      const lines = reply.partitions.map((p) =>
        `${p.topic} ${p.partition} ${p.grantedAt} ${p.offset ?? -1}`
      );
      return [`${reply.generation} ${reply.pending}`, ...lines].join("\r\n");
    }],
    leave: [2, ([group, memberId]) => service.leave({ group, memberId }).then(() => "")],
    commit: [6, ([group, memberId, generation, topic, partition, offset]) =>
      service.commit({
        group,
        memberId,
        generation: integer(generation),
        topic,
        partition: integer(partition),
        offset: integer(offset),
      }).then(String)],
    committed: [
      3,
      async ([group, topic, partition]) =>
        String(await service.committed(group, topic, integer(partition))),
    ],
    describe: [
      1,
      ([group]) => JSON.stringify({ groups: service.describe(group === "*" ? undefined : group) }),
    ],
    adjust: [5, ([group, topic, partition, to, mode]) => {
      if (mode !== "safe" && mode !== "force") {
        throw new BrokerError("badRequest", `mode ${mode} is not safe or force`);
      }
      return service.reset({
        group,
        topic,
        partition: partition === "*" ? undefined : integer(partition),
        to: resetTarget(to),
        force: mode === "force",
      }).then((entries) => JSON.stringify({ offsets: entries }));
    }],
    forget: [
      1,
      ([group]) => service.deleteGroup(group).then((offsets) => JSON.stringify({ group, offsets })),
    ],
    forgettopic: [
      1,
      ([topic]) => service.forgetTopic(topic).then((offsets) => JSON.stringify({ topic, offsets })),
    ],
  };
  const table: Record<string, CommandTable[`ext:${string}`]> = {};
  for (const [verb, [args, handler]] of Object.entries(handlers)) {
    table[`ext:${verb}`] = {
      spec: { args },
      home: () => home,
      handle(command: ExtensionCommand, context: RequestContext, respond: Respond) {
        if (live()) return run(command, context, respond, { handler, logger });
        void ready().then(() => run(command, context, respond, { handler, logger }));
      },
    };
  }
  return table;
}

function run(
  command: ExtensionCommand,
  context: RequestContext,
  respond: Respond,
  parts: { handler: Handler; logger: Logger },
): void {
  const fail = (error: unknown) => respond(failureReply(error, command, context, parts.logger));
  try {
    const outcome = parts.handler(command.args);
    if (typeof outcome === "string") return respond(result(200, outcome));
    outcome.then((text) => respond(result(200, text)), fail);
  } catch (error) {
    fail(error);
  }
}

function failureReply(
  error: unknown,
  command: ExtensionCommand,
  context: RequestContext,
  logger: Logger,
): Reply {
  if (error instanceof BrokerError) return errorReply(error);
  logger.log("error", "Group command failed", {
    verb: command.verb,
    peer: context.peer,
    reason: describeError(error),
  });
  if (error instanceof Error && error.name === "AssertionError") throw error;
  return errorReply(new BrokerError("internal", describeError(error)));
}

function integer(text: string): number {
  if (!/^-?\d{1,16}$/.test(text)) {
    throw new BrokerError("badRequest", `'${text}' is not an integer`);
  }
  return Number(text);
}

function resetTarget(text: string): ResetTarget {
  if (text === "earliest" || text === "latest") return text;
  const offset = integer(text);
  if (offset < 0) throw new BrokerError("invalidOffset", `${offset} is not a byte offset`);
  return offset;
}

/**
 * @module The consumer-group extension commands on the wire, and the broker plugin that adds them
 * (with the offset store under `<dataPath>/_groups/` and the server-side group filters). Each
 * command is one CRLF line with the opaque last and gets a `result` reply; no verb starts with a
 * letter MetaQ's decoder owns, so MetaQ clients never send one. Parsing and replies live here;
 * what they mean lives in lib/groups.
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
 * ```
 */
import type { Reply, RequestContext } from "../protocol/reply.ts";
import { result } from "../protocol/reply.ts";
import { BrokerError, describeError } from "../errors.ts";
import { parseFilter, recordFilter } from "../broker/groups/filter.ts";
import { GroupService, type ResetTarget } from "../broker/groups/group_service.ts";
import type { OffsetStore } from "../broker/groups/offset_store.ts";
import { FileOffsetStore } from "../broker/groups/offset_store_file.ts";
import type { Config } from "../config/config.ts";
import type { Logger } from "../log.ts";
import type { ExtensionCommand } from "../protocol/commands.ts";
import { joinPath } from "../store/storage.ts";
import type { Respond, Router } from "./router.ts";
import type { BrokerPlugin, RunningBroker } from "./start_broker.ts";

/** The offsets directory under the data path; never of the form `<topic>-<number>`. */
export const GROUPS_DIR = "_groups";
export const OFFSETS_FILE = "offsets.log";

type Handler = (args: readonly string[]) => Promise<string> | string;

export interface GroupsPluginOptions {
  /** Cut a corrupt offsets journal at the damage instead of refusing to start (`--repair`). */
  readonly repair?: boolean;
}

/** Adds consumer groups to a broker: offsets store, coordinator, wire commands and filters. */
export function groupsPlugin(options: GroupsPluginOptions = {}): BrokerPlugin & {
  service?: GroupService;
} {
  const plugin: BrokerPlugin & { service?: GroupService } = {
    name: "groups",
    async start(running: RunningBroker) {
      const { config, logger } = running;
      const store = await FileOffsetStore.open({
        storage: running.store.options.storage,
        path: joinPath(config.system.dataPath, GROUPS_DIR, OFFSETS_FILE),
        logger,
        repair: options.repair,
      });
      const service = groupServiceOf(running, store);
      registerGroupCommands(running.router, service, logger);
      installGroupFilters(running, logger);
      service.start();
      plugin.service = service;
    },
    async stop() {
      await plugin.service?.stop();
    },
  };
  return plugin;
}

/**
 * Registers the verbs of the table at the top. `current` gives the service that coordinates
 * groups now: one fixed service on a single broker; in a cluster, the one on the `__meta`
 * leader (undefined elsewhere: requests are routed to the leader before they get here).
 */
/**
 * The group coordinator of `running` over `store`: partitions and log bounds come from the
 * broker (bounds up to what readers may see). A cluster passes a `generationBase` per term.
 */
export function groupServiceOf(
  running: RunningBroker,
  store: OffsetStore,
  generationBase?: number,
): GroupService {
  const { config, broker, logger, clock } = running;
  return new GroupService({
    brokerId: config.system.brokerId,
    sessionTimeoutMs: config.system.groupSessionTimeoutMs,
    store,
    clock,
    logger,
    partitionCount: (topic) => broker.topicSettings(topic)?.numPartitions,
    logBounds: (topic, partition) => {
      const log = broker.store.get(topic, partition);
      if (!log) return undefined;
      return { start: log.startOffset, end: broker.readLimit(topic, partition, log) };
    },
    generationBase,
  });
}

export function registerGroupCommands(
  router: Router,
  current: GroupService | (() => GroupService | undefined),
  logger: Logger,
): void {
  const live = typeof current === "function" ? current : () => current;
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
    assignment: [2, ([group, memberId]) => {
      const reply = service.assignment({ group, memberId });
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
      ([group, topic, partition]) => String(service.committed(group, topic, integer(partition))),
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
  };
  for (const [verb, [args, handler]] of Object.entries(handlers)) {
    router.addExtension(verb, {
      spec: { args },
      handle: (command, context, respond) => run(command, context, respond, { handler, logger }),
    });
  }
}

function run(
  command: ExtensionCommand,
  context: RequestContext,
  respond: Respond,
  parts: { handler: Handler; logger: Logger },
): void {
  const fail = (error: unknown) => respond(errorReply(error, command, context, parts.logger));
  try {
    const outcome = parts.handler(command.args);
    if (typeof outcome === "string") return respond(result(200, outcome));
    outcome.then((text) => respond(result(200, text)), fail);
  } catch (error) {
    fail(error);
  }
}

function errorReply(
  error: unknown,
  command: ExtensionCommand,
  context: RequestContext,
  logger: Logger,
): Reply {
  if (error instanceof BrokerError) return result(error.status, error.message);
  logger.log("error", "Group command failed", {
    verb: command.verb,
    peer: context.peer,
    reason: describeError(error),
  });
  if (error instanceof Error && error.name === "AssertionError") throw error;
  return result(500, `Internal error: ${describeError(error)}`);
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

/**
 * Installs MetaQ's `group.<name>=` entries as server-side filters. Java class names are logged
 * and ignored; a filter that does not parse was already refused at start-up (filterProblems).
 */
export function installGroupFilters(running: RunningBroker, logger: Logger): void {
  const { broker, config } = running;
  for (const section of config.topics) {
    for (const [group, source] of section.groupFilters) {
      const parsed = parseFilter(source);
      if (parsed.kind === "javaClass") {
        logger.log("warn", "Ignoring server-side filter: metaq cannot run Java classes", {
          topic: section.pattern,
          group,
          class: parsed.className,
          hint: "use the metaq filter syntax in docs/groups.md",
        });
      }
    }
  }
  const cache = new Map<string, ReturnType<typeof recordFilter> | undefined>();
  broker.filterFor = (topic, group) => {
    const source = broker.topicSettings(topic)?.groupFilters.get(group);
    if (source === undefined) return undefined;
    if (!cache.has(source)) {
      const parsed = parseFilter(source);
      cache.set(source, parsed.kind === "filter" ? recordFilter(parsed.filter) : undefined);
    }
    return cache.get(source);
  };
}

/** Filter entries that are neither a valid metaq filter nor a Java class name. */
export function filterProblems(config: Config): string[] {
  const problems: string[] = [];
  for (const section of config.topics) {
    for (const [group, source] of section.groupFilters) {
      const parsed = parseFilter(source);
      if (parsed.kind === "invalid") {
        problems.push(
          `Cannot use filter group.${group} in [topic=${section.pattern}]: ${parsed.reason}`,
        );
      }
    }
  }
  return problems;
}

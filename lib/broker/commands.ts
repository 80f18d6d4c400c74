/**
 * @module The broker's own commands as a command table: MetaQ's put, get, offset, stats,
 * version and sync, and metaq's `meta <topic> <opaque>` (what a client needs to route messages:
 * partition count, where this broker is, and in a cluster each partition's leader; MetaQ
 * clients learned this from ZooKeeper). Each entry says where its command is served: a put on
 * its partition's leader, a read on any node holding the partition, the rest here.
 */
import { BrokerError } from "../errors.ts";
import type {
  ExtensionCommand,
  GetCommand,
  OffsetCommand,
  PutCommand,
  StatsCommand,
  SyncCommand,
} from "../protocol/commands.ts";
import { type CommandTable, HERE, type Home } from "../protocol/command_table.ts";
import { errorReply, type RequestContext, type Respond, result } from "../protocol/reply.ts";
import type { Broker } from "./broker.ts";
import type { StatsItems } from "./stats_report.ts";

/** What a `meta` reply says about a topic. */
export interface TopicMetadata {
  readonly topic: string;
  readonly partitions: number;
  /**
   * Whether the topic is there: a partition holds messages, or the configuration names it
   * exactly. A topic a wildcard section accepts but nobody has written to yet is not.
   */
  readonly exists: boolean;
  readonly brokerId: number;
  readonly broker: string;
  /** Partition -> `host:port` of its leader, when replicated. */
  readonly leaders?: Record<string, string>;
}

export interface BrokerCommandsOptions {
  /** Extra `stats` items other parts contribute (`cluster`...). */
  readonly statsItems: () => StatsItems;
  /** Each partition's leader's client address, in a cluster. */
  readonly leaders?: (topic: string, partitions: number) => Record<string, string>;
}

export function brokerCommands(broker: Broker, options: BrokerCommandsOptions): CommandTable {
  // A read of a partition the topic does not have is answered here (never opens a copy).
  const holder = (command: { topic: string; partition: number }): Home => {
    const count = broker.topicSettings(command.topic)?.numPartitions ?? 0;
    if (command.partition < 0 || command.partition >= count) return HERE;
    return { kind: "holder", topic: command.topic, partition: command.partition };
  };
  return {
    put: {
      home(command: PutCommand): Home {
        const partition = broker.putPartition(command);
        if (partition === undefined) return HERE; // refused by its checks: answered here
        const resolved = partition === command.partition ? command : { ...command, partition };
        return { kind: "leader", topic: command.topic, partition, command: resolved };
      },
      handle: (command: PutCommand, context: RequestContext, respond: Respond) =>
        broker.put(command, context, respond),
    },
    get: {
      home: holder,
      handle: (command: GetCommand, _context: RequestContext, respond: Respond) =>
        broker.get(command, respond),
    },
    offset: {
      home: holder,
      handle: (command: OffsetCommand, _context: RequestContext, respond: Respond) =>
        respond(broker.offset(command)),
    },
    stats: {
      handle: (command: StatsCommand, _context: RequestContext, respond: Respond) =>
        respond(broker.statsReply(command.item, options.statsItems())),
    },
    version: {
      handle: (_command: never, _context: RequestContext, respond: Respond) =>
        respond(broker.version()),
    },
    sync: {
      handle: (command: SyncCommand, _context: RequestContext, respond: Respond) =>
        respond(broker.sync(command)),
    },
    "ext:meta": {
      spec: { args: 1 },
      handle(command: ExtensionCommand, _context: RequestContext, respond: Respond) {
        const topic = command.args[0];
        const settings = broker.topicSettings(topic);
        const refusal = broker.topicRefusal(topic);
        if (!settings || refusal) {
          return respond(errorReply(BrokerError.verbatim("topicNotAccepted", refusal ?? "")));
        }
        const leaders = options.leaders?.(topic, settings.numPartitions);
        const metadata: TopicMetadata = {
          topic,
          partitions: settings.numPartitions,
          exists: broker.topicExists(topic) || Object.keys(leaders ?? {}).length > 0,
          brokerId: broker.config.system.brokerId,
          broker: broker.brokerUrl.replace("meta://", ""),
          leaders,
        };
        respond(result(200, JSON.stringify(metadata)));
      },
    },
  };
}

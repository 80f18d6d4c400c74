/** @module `metaq topics`: the broker's topics with partitions, messages and bytes. */
import process from "node:process";
import { MetaqClient } from "../lib/client/client.ts";
import { partitionBounds } from "../lib/client/partition_seek.ts";
import type { PartitionInfo } from "../lib/broker/commands.ts";
import { BrokerError, describeError } from "../lib/errors.ts";
import { PARTITIONS_PER_TOPIC_MAX } from "../lib/limits.ts";
import {
  brokerList,
  checkTopicExists,
  clientSecurity,
  CliError,
  type CommandSpec,
  CONNECTION_USAGE,
  didYouMean,
  formatBytes,
  formatFlag,
  integerFlag,
  parseFlags,
  SECURITY_FLAGS,
  topicArgument,
  topicMetadata,
} from "./common.ts";
import { statsLines } from "./stats.ts";
import { TOPIC_VERB } from "../lib/broker/topic_admin.ts";

const USAGE = `Usage: metaq topics [--format text|json] [connection options]
       metaq topics describe TOPIC [--format text|json] [connection options]
       metaq topics create TOPIC [--partitions N] [--format text|json] [connection options]
       metaq topics delete TOPIC [--format text|json] [connection options]

Lists the broker's topics: those holding messages and those its configuration names, each with
its partition count (as configured, including partitions that hold nothing yet), message count
and size on disk.

'describe' shows one topic per partition: its first stored offset (start), its readable end,
the messages and bytes it holds, its segment files, and on a cluster the node leading it and
the nodes holding its copies (replicas). Message counts are the broker's (approximate across
restarts, as MetaQ counts them).

'create' creates TOPIC with N partitions (default: what server.ini gives it), or grows an
existing topic to N partitions; server.ini need not name it. The count is kept in the broker's
metadata (on a cluster, replicated to every node) and survives restarts. Partition counts only
grow: a smaller N is refused (partitions are addressed by number, and groups keep offsets per
partition). Creating a topic that has N partitions already changes nothing (exit 0).

'delete' deletes TOPIC: its partitions' files are removed at once (on a cluster, on every node),
and the topic is refused from then on, even if server.ini names it, until 'create' makes it
again. Consumer groups' committed offsets for it are removed too. Topics starting with '__' are
the broker's own and cannot be deleted. Both need admin rights when the broker has users.

Options:
  --format text|json        a table (default), or one JSON object:
                            {"topics": [{"name", "numPartitions", "messages", "bytes"}]};
                            describe: {"topic", "numPartitions", "partitions": [{"partition",
                            "startOffset", "endOffset", "messages", "bytes", "segments",
                            "leader", "replicas"}]};
                            create: {"topic", "partitions", "previous", "changed"};
                            delete: {"topic", "deleted", "partitionsRemoved"}
  --partitions N            create: the partition count (1 to ${PARTITIONS_PER_TOPIC_MAX})

${CONNECTION_USAGE}

Examples:
  metaq topics
  metaq topics describe orders
  metaq topics describe orders --format json
  metaq topics create clicks --partitions 8
  metaq topics delete clicks`;

/** One topic, named as the HTTP API names the same facts (GET /v1/topics). */
interface TopicRow {
  readonly name: string;
  readonly numPartitions: number;
  readonly messages: number;
  readonly bytes: number;
}

export const topics: CommandSpec = {
  name: "topics",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags("topics", args, {
      broker: { type: "string" },
      format: { type: "string" },
      partitions: { type: "string" },
      ...SECURITY_FLAGS,
    }, 2);
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const format = formatFlag(values.format);
    const security = clientSecurity(values);
    const client = new MetaqClient({
      brokers: brokerList(values.broker),
      reconnectAttemptsMax: 2,
      ...security,
    });
    const partitions = integerFlag("partitions", values.partitions, {
      min: 1,
      max: PARTITIONS_PER_TOPIC_MAX,
    });
    if (partitions !== undefined && positionals[0] !== "create") {
      client.close();
      throw new CliError("Cannot use --partitions: only 'topics create' takes it");
    }
    if (positionals[0] === "create" || positionals[0] === "delete") {
      const action = positionals[0];
      try {
        const topic = topicArgument(`topics ${action}`, positionals[1]);
        const text = await client.extension(TOPIC_VERB, [action, topic, partitions ?? "-"]);
        const outcome = JSON.parse(text) as Record<string, unknown>;
        if (format === "json") process.stdout.write(`${JSON.stringify(outcome)}\n`);
        else console.log(renderChange(outcome));
        return 0;
      } catch (error) {
        if (error instanceof CliError) throw error;
        // The broker's refusals say what could not be done and why.
        if (error instanceof BrokerError) throw new CliError(error.message, 1);
        throw new CliError(`Cannot ${action} topic: ${describeError(error)}`, 1);
      } finally {
        client.close();
      }
    }
    if (positionals[0] !== undefined) {
      if (positionals[0] !== "describe") {
        client.close();
        const suggestion = didYouMean(positionals[0], ["describe", "create", "delete"]);
        throw new CliError(
          `Cannot run 'topics': unknown action '${positionals[0]}'${
            suggestion ? ` (did you mean '${suggestion}'?)` : ""
          } (see 'metaq topics --help')`,
        );
      }
      const topic = topicArgument("topics describe", positionals[1]);
      try {
        const description = await describeTopic(client, topic, security);
        if (format === "json") process.stdout.write(`${JSON.stringify(description)}\n`);
        else console.log(renderDescription(description));
        return 0;
      } catch (error) {
        if (error instanceof CliError) throw error;
        throw new CliError(`Cannot describe ${topic}: ${describeError(error)}`, 1);
      } finally {
        client.close();
      }
    }
    let rows: TopicRow[];
    try {
      rows = await listTopics(client);
    } catch (error) {
      throw new CliError(`Cannot list topics: ${describeError(error)}`, 1);
    } finally {
      client.close();
    }
    if (format === "json") {
      process.stdout.write(`${JSON.stringify({ topics: rows })}\n`);
      return 0;
    }
    const table = [
      ["TOPIC", "PARTITIONS", "MESSAGES", "SIZE"],
      ...rows.map((row) => [
        row.name,
        String(row.numPartitions),
        String(row.messages),
        formatBytes(row.bytes),
      ]),
    ];
    const widths = table[0].map((_, column) =>
      Math.max(...table.map((line) => line[column].length))
    );
    for (const line of table) {
      console.log(line.map((cell, column) => cell.padEnd(widths[column])).join("  ").trimEnd());
    }
    return 0;
  },
};

interface PartitionDescription {
  readonly partition: number;
  readonly startOffset: number;
  readonly endOffset: number;
  readonly messages: number;
  readonly bytes: number;
  readonly segments: number;
  /** Node id leading it on a cluster; null on a broker that runs alone. */
  readonly leader: number | null;
  /** Node ids holding a copy (the leader first); null on a broker that runs alone. */
  readonly replicas: readonly number[] | null;
}

interface TopicDescription {
  readonly topic: string;
  readonly numPartitions: number;
  readonly partitions: readonly PartitionDescription[];
}

/**
 * Per partition: bounds as consumers see them (MetaQ's own answers, through any node), figures
 * from the node whose log it is (`figures`: the leader on a cluster), and on a cluster the
 * leader and its followers from the leader's `cluster status`.
 */
async function describeTopic(
  client: MetaqClient,
  topic: string,
  security: ReturnType<typeof clientSecurity>,
): Promise<TopicDescription> {
  const meta = await topicMetadata(client, topic, "describe");
  checkTopicExists(meta, "describe", "");
  const leaders = (meta.leaders ?? {}) as Record<string, string>;
  const clustered = Object.keys(leaders).length > 0;
  const byAddress = new Map<string, Promise<LeaderFacts>>();
  const factsAt = (address: string | undefined): Promise<LeaderFacts> => {
    const key = address ?? "";
    let facts = byAddress.get(key);
    if (!facts) {
      facts = leaderFacts(address === undefined ? client : undefined, {
        address,
        topic,
        security,
        clustered,
      });
      byAddress.set(key, facts);
    }
    return facts;
  };
  const partitions: PartitionDescription[] = [];
  for (let partition = 0; partition < meta.partitions; partition++) {
    const bounds = await partitionBounds(client, topic, partition);
    const address = leaders[String(partition)];
    const facts = await factsAt(clustered ? address : undefined);
    const info = facts.partitions.get(partition);
    const group = facts.groups.get(`${topic}-${partition}`);
    partitions.push({
      partition,
      startOffset: bounds.start,
      endOffset: bounds.end,
      messages: info?.messages ?? 0,
      bytes: info?.bytes ?? 0,
      segments: info?.segments ?? 0,
      leader: clustered ? (group?.leader ?? null) : null,
      replicas: clustered
        ? (group ? [group.leader, ...group.followers.filter((id) => id !== group.leader)] : [])
        : null,
    });
  }
  return { topic, numPartitions: meta.partitions, partitions };
}

interface LeaderFacts {
  readonly partitions: Map<number, PartitionInfo>;
  readonly groups: Map<string, { leader: number; followers: number[] }>;
}

/** What one node says of the topic's partitions it holds, and of its replica groups. */
async function leaderFacts(
  shared: MetaqClient | undefined,
  options: {
    address?: string;
    topic: string;
    security: ReturnType<typeof clientSecurity>;
    clustered: boolean;
  },
): Promise<LeaderFacts> {
  const client = shared ??
    new MetaqClient({ brokers: [options.address!], reconnectAttemptsMax: 2, ...options.security });
  try {
    const info = JSON.parse(await client.extension("figures", [options.topic])) as {
      partitions: PartitionInfo[];
    };
    const groups = new Map<string, { leader: number; followers: number[] }>();
    if (options.clustered) {
      const status = JSON.parse(await client.extension("cluster", ["status", "-"])) as {
        nodeId: number;
        groups: { group: string; role: string; matches?: Record<string, unknown> }[];
      };
      for (const group of status.groups) {
        if (group.role !== "leader") continue;
        groups.set(group.group, {
          leader: status.nodeId,
          followers: Object.keys(group.matches ?? {}).map(Number),
        });
      }
    }
    return {
      partitions: new Map(info.partitions.map((p) => [p.partition, p])),
      groups,
    };
  } finally {
    if (!shared) client.close();
  }
}

/** One line saying what `topics create` or `topics delete` did. */
function renderChange(outcome: Record<string, unknown>): string {
  const { topic, partitions, previous, changed } = outcome;
  if (outcome.deleted) {
    const offsets = outcome.offsetsRemoved === null
      ? "group offsets not removed: see the broker's log"
      : `${outcome.offsetsRemoved} group offset(s)`;
    const files = outcome.partitionsRemoved === null
      ? "every node removes its copies and their files"
      : `${outcome.partitionsRemoved} partition(s) and their files removed`;
    return `Deleted topic ${topic} (${files}, ${offsets})`;
  }
  if (!changed) return `Topic ${topic} has ${partitions} partitions already: nothing changed`;
  return previous === 0 || previous === partitions
    ? `Created topic ${topic} with ${partitions} partitions`
    : `Grew topic ${topic} from ${previous} to ${partitions} partitions`;
}

function renderDescription(description: TopicDescription): string {
  const clustered = description.partitions.some((p) => p.replicas !== null);
  const rows = [
    [
      "PARTITION",
      "START",
      "END",
      "MESSAGES",
      "SIZE",
      "SEGMENTS",
      ...(clustered ? ["LEADER", "REPLICAS"] : []),
    ],
    ...description.partitions.map((p) => [
      String(p.partition),
      String(p.startOffset),
      String(p.endOffset),
      String(p.messages),
      formatBytes(p.bytes),
      String(p.segments),
      ...(clustered ? [String(p.leader ?? "-"), p.replicas?.join(",") || "-"] : []),
    ]),
  ];
  const widths = rows[0].map((_, column) => Math.max(...rows.map((line) => line[column].length)));
  return [
    `${description.topic}: ${description.numPartitions} partitions`,
    ...rows.map((line) =>
      line.map((cell, column) => cell.padEnd(widths[column])).join("  ").trimEnd()
    ),
  ].join("\n");
}

/** `stats topics`; a configured topic with no messages yet is asked for its partition count. */
async function listTopics(client: MetaqClient): Promise<TopicRow[]> {
  const rows: TopicRow[] = [];
  for (const line of statsLines(await client.stats("topics"))) {
    const [name, ...rest] = line.split(" ");
    if (rest[0] === "*Empty*") {
      const meta = await client.topicMetadata(name);
      rows.push({ name, numPartitions: meta.partitions, messages: 0, bytes: 0 });
      continue;
    }
    const fields = new Map<string, string>();
    for (let i = 0; i + 1 < rest.length; i += 2) fields.set(rest[i], rest[i + 1]);
    rows.push({
      name,
      numPartitions: Number(fields.get("partitions") ?? 0),
      messages: Number(fields.get("message_count") ?? 0),
      bytes: Number(fields.get("message_bytes") ?? 0),
    });
  }
  return rows;
}

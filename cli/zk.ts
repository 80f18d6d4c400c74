/**
 * @module `metaq zk status|consume|produce`: a MetaQ fleet as ZooKeeper sees it, and metaq's
 * ZooKeeper-balanced consumer and ZooKeeper-routed producer, which work alongside MetaQ's original
 * clients (docs/zookeeper.md).
 */
import * as fs from "node:fs";
import process from "node:process";
import { MetaLayout, parseZkOffset } from "../lib/zk/meta_layout.ts";
import { describeError } from "../lib/errors.ts";
import { consoleLogger } from "../lib/log.ts";
import type { ConsumedMessage } from "../lib/client/partition_reader.ts";
import { ZkClient } from "../lib/zk/client.ts";
import { childrenOf, readText } from "../lib/zk/nodes.ts";
import { readBrokers } from "../lib/client/zk_fleet.ts";
import { ZkConsumer, type ZkConsumerEvent } from "../lib/client/zk_consumer.ts";
import { ZkProducer } from "../lib/client/zk_producer.ts";
import { normalizeRoot } from "../lib/config/zookeeper_config.ts";
import {
  clientSecurity,
  CliError,
  type CommandSpec,
  integerFlag,
  parseFlags,
  SECURITY_FLAGS,
  writeStdout,
} from "./common.ts";

const USAGE = `Usage: metaq zk status|consume|produce [options]

  status                 the fleet as ZooKeeper sees it: broker ids with their master and
                         slaves, topics and partitions per broker, groups with their consumers,
                         partition owners and offsets
  consume TOPIC --group G
                         consume as a member of a ZooKeeper-balanced group (MetaQ's own
                         balancing: original Java consumers and these share the group); offsets
                         are committed to ZooKeeper as <msgId>-<offset>
  produce TOPIC          send one message per line of stdin (or --message) round-robin over
                         every partition of every broker publishing TOPIC

Options:
  --zk-connect LIST      ZooKeeper servers host:port[,...][/chroot] (or $METAQ_ZK_CONNECT)
  --zk-root PATH         root of MetaQ's nodes (default /meta)
  --format text|json     status and consume output (default text)
  --group G              consume: the group
  --strategy S           consume: DEFAULT (default) or CONSIST
  --consumer-id ID       consume: MetaQ's consumerId (default <address>-<pid>-<uuid>)
  --from-latest          consume: start at the end where the group has no offset (default: start)
  --max N                consume: stop after N messages
  --commit-period MS     consume: commit offsets this often (default 5000)
  --zk-sync-time-ms MS   consume: pause between rebalance attempts (default 5000, zk.zkSyncTimeMs)
  --message TEXT         produce: send one message and exit

Examples:
  metaq zk status --zk-connect zk1:2181
  metaq zk consume orders --group billing --zk-connect zk1:2181
  seq 100 | metaq zk produce orders --zk-connect zk1:2181`;

const FLAGS = {
  "zk-connect": { type: "string" },
  "zk-root": { type: "string" },
  format: { type: "string" },
  group: { type: "string" },
  strategy: { type: "string" },
  "consumer-id": { type: "string" },
  "from-latest": { type: "boolean" },
  max: { type: "string" },
  "commit-period": { type: "string" },
  "zk-sync-time-ms": { type: "string" },
  message: { type: "string" },
  ...SECURITY_FLAGS,
} as const;

type Values = ReturnType<typeof parseFlags<typeof FLAGS>>["values"];

export const zk: CommandSpec = {
  name: "zk",
  summary: "the fleet in ZooKeeper; ZooKeeper-balanced consume and produce",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags("zk", args, FLAGS, 2);
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const action = positionals[0];
    if (!["status", "consume", "produce"].includes(action ?? "")) {
      throw new CliError("Cannot run zk: give status, consume or produce (see 'metaq zk --help')");
    }
    const format = values.format ?? "text";
    if (format !== "text" && format !== "json") {
      throw new CliError(`Cannot use --format ${format}: expected text or json`);
    }
    const connect = values["zk-connect"] ?? process.env.METAQ_ZK_CONNECT;
    if (!connect) throw new CliError("Cannot run zk: give --zk-connect (or set METAQ_ZK_CONNECT)");
    const layout = new MetaLayout(normalizeRoot(values["zk-root"] ?? "/meta"));
    if (action !== "status" && positionals[1] === undefined) {
      throw new CliError(`Cannot run zk ${action}: give a TOPIC`);
    }
    let client: ZkClient;
    try {
      client = await ZkClient.open({
        connect,
        sessionTimeoutMs: 30_000,
        connectionTimeoutMs: 10_000,
      });
    } catch (error) {
      throw new CliError(describeError(error), 1);
    }
    try {
      if (action === "status") return await status(client, layout, format);
      if (action === "produce") return await produce(client, layout, positionals[1], values);
      return await consume(client, layout, positionals[1], values, format);
    } finally {
      await client.close();
    }
  },
};

interface FleetReport {
  readonly root: string;
  readonly brokers: { id: number; master: string | null; slaves: Record<string, string> }[];
  readonly topics: {
    topic: string;
    publish: Record<string, number>;
    subscribe: Record<string, number>;
  }[];
  readonly groups: {
    group: string;
    consumers: Record<string, string[]>;
    topics: {
      topic: string;
      partitions: {
        partition: string;
        owner: string | null;
        offset: number | null;
        messageId: string | null;
      }[];
    }[];
  }[];
}

async function status(client: ZkClient, layout: MetaLayout, format: string): Promise<number> {
  const report = await fleetReport(client, layout);
  if (format === "json") {
    await writeStdout(JSON.stringify(report, null, 2) + "\n");
    return 0;
  }
  const lines: string[] = [`ZooKeeper root ${report.root}`, "", "brokers"];
  for (const broker of report.brokers) {
    const slaves = Object.entries(broker.slaves).map(([id, address]) => `slave${id} ${address}`);
    lines.push(
      `  ${broker.id}  master ${broker.master ?? "(none)"}${
        slaves.length ? `  ${slaves.join("  ")}` : ""
      }`,
    );
  }
  lines.push("", "topics (partitions per broker: publish / subscribe)");
  for (const topic of report.topics) {
    const names = [...new Set([...Object.keys(topic.publish), ...Object.keys(topic.subscribe)])]
      .sort();
    lines.push(
      `  ${topic.topic}  ${
        names.map((name) => `${name} ${topic.publish[name] ?? "-"}/${topic.subscribe[name] ?? "-"}`)
          .join("  ")
      }`,
    );
  }
  lines.push("", "groups");
  for (const group of report.groups) {
    lines.push(`  ${group.group}`);
    for (const [consumer, topics] of Object.entries(group.consumers)) {
      lines.push(`    consumer ${consumer}  topics ${topics.join(",")}`);
    }
    for (const topic of group.topics) {
      for (const partition of topic.partitions) {
        lines.push(
          `    ${topic.topic} ${partition.partition}  owner ${partition.owner ?? "-"}  offset ${
            partition.offset ?? "-"
          }` +
            (partition.messageId === null ? "" : `  msgId ${partition.messageId}`),
        );
      }
    }
  }
  await writeStdout(lines.join("\n") + "\n");
  return 0;
}

/** Reads everything `status` shows; bounded by what ZooKeeper holds under the root. */
export async function fleetReport(client: ZkClient, layout: MetaLayout): Promise<FleetReport> {
  const brokers = [...await readBrokers(client, layout)].sort(([a], [b]) => a - b).map((
    [id, entry],
  ) => ({
    id,
    master: entry.master ?? null,
    slaves: Object.fromEntries(
      [...entry.slaves].sort(([a], [b]) => a - b).map(([n, a]) => [String(n), a]),
    ),
  }));
  const topicNames = new Set([
    ...await childrenOf(client, layout.brokerTopicsPub),
    ...await childrenOf(client, layout.brokerTopicsSub),
  ]);
  const topics = [];
  for (const topic of [...topicNames].sort()) {
    topics.push({
      topic,
      publish: await partitionCounts(client, `${layout.brokerTopicsPub}/${topic}`),
      subscribe: await partitionCounts(client, `${layout.brokerTopicsSub}/${topic}`),
    });
  }
  const groups = [];
  for (const group of (await childrenOf(client, layout.consumers)).sort()) {
    const consumers: Record<string, string[]> = {};
    for (const id of (await childrenOf(client, layout.groupIdsPath(group))).sort()) {
      const text = await readText(client, `${layout.groupIdsPath(group)}/${id}`);
      if (text !== undefined) consumers[id] = text.split(",").filter(Boolean);
    }
    const groupTopics = new Set([
      ...await childrenOf(client, `${layout.consumers}/${group}/owners`),
      ...await childrenOf(client, `${layout.consumers}/${group}/offsets`),
    ]);
    const perTopic = [];
    for (const topic of [...groupTopics].sort()) {
      const owners = layout.groupOwnersPath(group, topic);
      const offsets = layout.groupOffsetsPath(group, topic);
      const names = new Set([
        ...await childrenOf(client, owners),
        ...await childrenOf(client, offsets),
      ]);
      const partitions = [];
      for (const name of [...names].sort()) {
        const text = await readText(client, `${offsets}/${name}`);
        const parsed = text === undefined ? undefined : parseZkOffset(text);
        partitions.push({
          partition: name,
          owner: (await readText(client, `${owners}/${name}`)) ?? null,
          offset: parsed?.offset ?? null,
          messageId: parsed && parsed.messageId !== -1n ? parsed.messageId.toString() : null,
        });
      }
      perTopic.push({ topic, partitions });
    }
    groups.push({ group, consumers, topics: perTopic });
  }
  return { root: layout.root, brokers, topics, groups };
}

async function partitionCounts(client: ZkClient, dir: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const name of (await childrenOf(client, dir)).sort()) {
    const text = await readText(client, `${dir}/${name}`);
    try {
      const parsed = JSON.parse(text ?? "") as { numParts?: number };
      if (typeof parsed.numParts === "number") counts[name] = parsed.numParts;
    } catch {
      // Not MetaQ's JSON: left out, as MetaQ's clients leave it out.
    }
  }
  return counts;
}

async function produce(
  client: ZkClient,
  layout: MetaLayout,
  topic: string,
  values: Values,
): Promise<number> {
  const producer = new ZkProducer({
    zk: client,
    root: layout.root,
    clientOptions: clientSecurity(values),
  });
  let sent = 0;
  let failed = 0;
  const send = async (line: string) => {
    try {
      await producer.put(topic, { payload: new TextEncoder().encode(line) });
      sent += 1;
    } catch (error) {
      failed += 1;
      if (failed <= 5) process.stderr.write(`metaq zk produce: ${describeError(error)}\n`);
    }
  };
  try {
    if (values.message !== undefined) await send(values.message);
    else {
      const text = fs.readFileSync(0, "utf8");
      for (const line of text.split("\n")) if (line !== "") await send(line);
    }
  } finally {
    producer.close();
  }
  process.stderr.write(
    `Produced ${sent} messages to ${topic}${failed ? `, ${failed} failed` : ""}\n`,
  );
  return failed === 0 ? 0 : 1;
}

async function consume(
  client: ZkClient,
  layout: MetaLayout,
  topic: string,
  values: Values,
  format: string,
): Promise<number> {
  if (values.group === undefined) throw new CliError("Cannot run zk consume: give --group");
  const strategy = (values.strategy ?? "DEFAULT").toUpperCase();
  if (strategy !== "DEFAULT" && strategy !== "CONSIST") {
    throw new CliError(`Cannot use --strategy ${values.strategy}: expected DEFAULT or CONSIST`);
  }
  const max = integerFlag("max", values.max, { min: 1, max: Number.MAX_SAFE_INTEGER });
  let printed = 0;
  let stopping: (() => void) | undefined;
  const stopped = new Promise<void>((resolve) => (stopping = resolve));
  const consumer = new ZkConsumer({
    zk: client,
    root: layout.root,
    group: values.group,
    consumerId: values["consumer-id"],
    strategy,
    start: values["from-latest"] ? "latest" : "earliest",
    commitOffsetPeriodMs:
      integerFlag("commit-period", values["commit-period"], { min: 10, max: 3_600_000 }) ?? 5000,
    syncTimeMs:
      integerFlag("zk-sync-time-ms", values["zk-sync-time-ms"], { min: 10, max: 600_000 }) ?? 5000,
    clientOptions: { ...clientSecurity(values), reconnectAttemptsMax: 1000 },
    logger: consoleLogger("warn"),
    onEvent: report,
  });
  let taken = 0;
  consumer.subscribe(topic, async (message) => {
    if (max !== undefined && taken >= max) return message.rollback();
    taken += 1;
    await writeStdout(formatMessage(message, format));
    message.ack();
    printed += 1;
    if (printed === max) stopping!();
  }, { autoAck: false });
  const onSignal = () => stopping!();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    await consumer.start();
    await stopped;
  } catch (error) {
    throw new CliError(`Cannot consume ${topic}: ${describeError(error)}`, 1);
  } finally {
    await consumer.close().catch((error) =>
      process.stderr.write(`metaq zk consume: Cannot close cleanly: ${describeError(error)}\n`)
    );
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  process.stderr.write(`Consumed ${printed} messages\n`);
  return 0;
}

function formatMessage(message: ConsumedMessage, format: string): string {
  const payload = new TextDecoder().decode(message.payload);
  if (format === "text") return payload + "\n";
  return JSON.stringify({
    topic: message.topic,
    partition: message.partition,
    offset: message.offset,
    id: message.id.toString(),
    payload,
  }) + "\n";
}

/** One stderr line per partition start and stop, so runs can be audited. */
function report(event: ZkConsumerEvent): void {
  const at = new Date().toISOString();
  if (event.kind === "started") {
    process.stderr.write(
      `${at} started ${event.topic} ${event.partition} at ${event.offset} from ${event.broker}\n`,
    );
  } else {
    process.stderr.write(
      `${at} stopped ${event.topic} ${event.partition} at ${event.offset ?? "unknown"}\n`,
    );
  }
}

/**
 * @module `metaq zk status`: a MetaQ fleet as ZooKeeper sees it (docs/zookeeper.md). Consuming
 * and producing in ZooKeeper mode are `metaq consume --group G --zk-connect ...` and
 * `metaq produce --zk-connect ...`.
 */
import { MetaLayout, parseZkOffset } from "../lib/zk/meta_layout.ts";
import type { ZkClient } from "../lib/zk/client.ts";
import { childrenOf, readText } from "../lib/zk/nodes.ts";
import { readBrokers } from "../lib/client/zk_fleet.ts";
import { CliError, type CommandSpec, formatFlag, parseFlags, writeStdout } from "./common.ts";
import { openZooKeeper, ZK_FLAGS, ZK_USAGE, zkTarget } from "./zk_connect.ts";

const USAGE = `Usage: metaq zk status --zk-connect LIST [options]

Shows a MetaQ fleet as ZooKeeper holds it: broker ids with their master and slaves, each
topic's partitions per broker (publish / subscribe), and each ZooKeeper-balanced group with its
consumers, partition owners and offsets (<msgId>-<offset>).

To consume or produce in ZooKeeper mode, alongside MetaQ's original clients:
  metaq consume TOPIC --group G --zk-connect LIST
  metaq produce TOPIC --zk-connect LIST

Options:
${ZK_USAGE}
  --format text|json        output format (default text)

Examples:
  metaq zk status --zk-connect zk1:2181,zk2:2181
  metaq zk status --zk-connect zk1:2181/chroot --zk-root /meta --format json`;

const FLAGS = {
  ...ZK_FLAGS,
  format: { type: "string" },
} as const;

/** Where the actions `metaq zk` once had went. */
const MOVED = new Map([
  ["consume", "metaq consume TOPIC --group G --zk-connect LIST"],
  ["produce", "metaq produce TOPIC --zk-connect LIST"],
]);

export const zk: CommandSpec = {
  name: "zk",
  usage: USAGE,
  async run(args) {
    // Before the flags: their flags are not ours.
    const moved = MOVED.get(args[0]);
    if (moved) throw new CliError(`Cannot run zk ${args[0]}: it is ${moved} now`);
    const { values, positionals } = parseFlags("zk", args, FLAGS, 1);
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const action = positionals[0];
    if (action !== "status") {
      throw new CliError("Cannot run zk: give status (see 'metaq zk --help')");
    }
    const format = formatFlag(values.format);
    const target = zkTarget(values);
    if (!target) throw new CliError("Cannot run zk status: give --zk-connect");
    const client = await openZooKeeper(target);
    try {
      return await status(client, target.layout, format);
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

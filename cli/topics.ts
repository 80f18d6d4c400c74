/** @module `metaq topics`: the broker's topics with partitions, messages and bytes. */
import process from "node:process";
import { MetaqClient } from "../lib/client/client.ts";
import { describeError } from "../lib/errors.ts";
import {
  brokerList,
  clientSecurity,
  CliError,
  type CommandSpec,
  CONNECTION_USAGE,
  formatBytes,
  formatFlag,
  parseFlags,
  SECURITY_FLAGS,
} from "./common.ts";
import { statsLines } from "./stats.ts";

const USAGE = `Usage: metaq topics [--format text|json] [connection options]

Lists the broker's topics: those holding messages and those its configuration names, each with
its partition count (as configured, including partitions that hold nothing yet), message count
and size on disk.

Options:
  --format text|json        a table (default), or one JSON object:
                            {"topics": [{"name", "numPartitions", "messages", "bytes"}]}

${CONNECTION_USAGE}`;

/** One topic, named as the HTTP API names the same facts (GET /v1/topics). */
interface TopicRow {
  readonly name: string;
  readonly numPartitions: number;
  readonly messages: number;
  readonly bytes: number;
}

export const topics: CommandSpec = {
  name: "topics",
  summary: "list topics",
  usage: USAGE,
  async run(args) {
    const { values } = parseFlags("topics", args, {
      broker: { type: "string" },
      format: { type: "string" },
      ...SECURITY_FLAGS,
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const format = formatFlag(values.format);
    const client = new MetaqClient({
      brokers: brokerList(values.broker),
      reconnectAttemptsMax: 2,
      ...clientSecurity(values),
    });
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

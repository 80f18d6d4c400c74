/** @module `metaq topics`: a table of the broker's topics, partitions, messages and bytes. */
import { MetaqClient } from "../lib/client/client.ts";
import { describeError } from "../lib/errors.ts";
import {
  brokerList,
  clientSecurity,
  CliError,
  type CommandSpec,
  formatBytes,
  parseFlags,
  SECURITY_FLAGS,
} from "./common.ts";
import { stripFraming } from "./stats.ts";

const USAGE = `Usage: metaq topics [--broker HOST:PORT]

Lists the broker's topics with partition count, message count and size on disk.`;

export const topics: CommandSpec = {
  name: "topics",
  summary: "list topics",
  usage: USAGE,
  async run(args) {
    const { values } = parseFlags("topics", args, {
      broker: { type: "string" },
      ...SECURITY_FLAGS,
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const client = new MetaqClient({
      brokers: brokerList(values.broker),
      reconnectAttemptsMax: 2,
      ...clientSecurity(values),
    });
    try {
      const rows = stripFraming(await client.stats("topics")).split("\n").filter(Boolean).map(
        parseTopicLine,
      );
      const header = ["TOPIC", "PARTITIONS", "MESSAGES", "SIZE"];
      const table = [
        header,
        ...rows.map((row) => [row.topic, row.partitions, row.messages, row.size]),
      ];
      const widths = header.map((_, column) =>
        Math.max(...table.map((line) => line[column].length))
      );
      for (const line of table) {
        console.log(line.map((cell, column) => cell.padEnd(widths[column])).join("  ").trimEnd());
      }
      return 0;
    } catch (error) {
      throw new CliError(`Cannot list topics: ${describeError(error)}`, 1);
    } finally {
      client.close();
    }
  },
};

function parseTopicLine(
  line: string,
): { topic: string; partitions: string; messages: string; size: string } {
  const [topic, ...rest] = line.split(" ");
  if (rest[0] === "*Empty*") return { topic, partitions: "0", messages: "0", size: "0 B" };
  const fields = new Map<string, string>();
  for (let i = 0; i + 1 < rest.length; i += 2) fields.set(rest[i], rest[i + 1]);
  return {
    topic,
    partitions: fields.get("partitions") ?? "?",
    messages: fields.get("message_count") ?? "?",
    size: formatBytes(Number(fields.get("message_bytes") ?? 0)),
  };
}

/** @module `metaq stats [ITEM]`: prints a broker's MetaQ stats item. */
import { MetaqClient } from "../lib/client/client.ts";
import { describeError } from "../lib/errors.ts";
import {
  brokerList,
  clientSecurity,
  CliError,
  type CommandSpec,
  parseFlags,
  SECURITY_FLAGS,
} from "./common.ts";

const USAGE = `Usage: metaq stats [ITEM] [--broker HOST:PORT]

Prints MetaQ's stats: no item for broker facts, or one of topics, offsets, realtime,
help, reset, config, or a topic name. 'metaq stats help' lists the items.

Examples:
  metaq stats
  metaq stats offsets
  metaq stats orders --broker 10.0.0.5:8123`;

export const stats: CommandSpec = {
  name: "stats",
  summary: "print broker statistics",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags("stats", args, {
      broker: { type: "string" },
      ...SECURITY_FLAGS,
    }, 1);
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
      const text = await client.stats(positionals[0]);
      process.stdout.write(stripFraming(text));
      return 0;
    } catch (error) {
      throw new CliError(`Cannot read stats: ${describeError(error)}`, 1);
    } finally {
      client.close();
    }
  },
};

/** Drops MetaQ's STATS/END framing lines; CRLF becomes LF for the terminal. */
export function stripFraming(text: string): string {
  const lines = text.split("\r\n").filter((line) => line !== "");
  if (lines[0] === "STATS") lines.shift();
  if (lines[lines.length - 1] === "END") lines.pop();
  return lines.length ? `${lines.join("\n")}\n` : "";
}

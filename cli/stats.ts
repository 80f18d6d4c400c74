/** @module `metaq stats [ITEM]`: prints a broker's MetaQ stats item, as text or JSON. */
import process from "node:process";
import { MetaqClient } from "../lib/client/client.ts";
import { describeError } from "../lib/errors.ts";
import {
  brokerList,
  clientSecurity,
  CliError,
  type CommandSpec,
  CONNECTION_USAGE,
  formatFlag,
  parseFlags,
  SECURITY_FLAGS,
} from "./common.ts";

const USAGE = `Usage: metaq stats [ITEM] [--format text|json] [connection options]

Prints MetaQ's stats: no item for broker facts, or one of topics, offsets, realtime,
security, help, reset, config, or a topic name. 'metaq stats help' lists the items.
A topic the broker does not have is an error (exit 1), not an empty answer.

With --format json the same facts are one JSON object (keys as MetaQ names them; numbers and
true/false as JSON values): topics and offsets as arrays of objects, config as its text.

Options:
  --format text|json        output format (default text)

${CONNECTION_USAGE}

Examples:
  metaq stats
  metaq stats offsets --format json
  metaq stats orders --broker 10.0.0.5:8123`;

/** Items with a meaning of their own; anything else names a topic. */
const ITEMS = ["topics", "offsets", "realtime", "security", "help", "reset", "config"];

export const stats: CommandSpec = {
  name: "stats",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags("stats", args, {
      broker: { type: "string" },
      format: { type: "string" },
      ...SECURITY_FLAGS,
    }, 1);
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const format = formatFlag(values.format);
    const item = positionals[0];
    const client = new MetaqClient({
      brokers: brokerList(values.broker),
      reconnectAttemptsMax: 2,
      ...clientSecurity(values),
    });
    let text: string;
    try {
      text = await client.stats(item);
    } catch (error) {
      throw new CliError(`Cannot read stats: ${describeError(error)}`, 1);
    } finally {
      client.close();
    }
    const lines = statsLines(text);
    if (item !== undefined && !ITEMS.includes(item) && lines[1] === "resultCode 1") {
      throw new CliError(
        `Cannot read stats of ${item}: no such topic or stats item (items: ${ITEMS.join(", ")})`,
        1,
      );
    }
    if (format === "json") {
      process.stdout.write(`${JSON.stringify(statsJson(item, lines, text))}\n`);
    } else {
      process.stdout.write(lines.length > 0 ? `${lines.join("\n")}\n` : "");
    }
    return 0;
  },
};

/** The lines of a stats reply without MetaQ's STATS/END framing. */
export function statsLines(text: string): string[] {
  const lines = text.split("\r\n").filter((line) => line !== "");
  if (lines[0] === "STATS") lines.shift();
  if (lines[lines.length - 1] === "END") lines.pop();
  return lines;
}

/** A stats item as JSON: see USAGE. */
export function statsJson(item: string | undefined, lines: string[], raw: string): unknown {
  if (item === "config") return { config: raw };
  if (item === "topics") {
    return {
      topics: lines.map((line) => {
        const [name, ...rest] = line.split(" ");
        return rest[0] === "*Empty*" ? { name, empty: true } : { name, ...pairs(rest) };
      }),
    };
  }
  if (item === "offsets") {
    return {
      offsets: lines.map((line) => {
        const [topic, , partition, ...rest] = line.split(" ");
        return { topic, partition: Number(partition), ...pairs(rest) };
      }),
    };
  }
  const object: Record<string, unknown> = {};
  const isTopic = item !== undefined && item.trim() !== "" && !ITEMS.includes(item) &&
    lines[0] !== undefined && !lines[0].includes(" ");
  if (isTopic) object.topic = lines.shift();
  for (const line of lines) {
    const space = line.indexOf(" ");
    if (space < 0) object[line] = null;
    else object[line.slice(0, space)] = value(line.slice(space + 1));
  }
  return object;
}

function pairs(words: string[]): Record<string, unknown> {
  const object: Record<string, unknown> = {};
  for (let i = 0; i + 1 < words.length; i += 2) object[words[i]] = value(words[i + 1]);
  return object;
}

function value(text: string): unknown {
  if (text === "true" || text === "false") return text === "true";
  if (text === "null") return null;
  if (/^-?\d+(\.\d+)?$/.test(text) && Number.isSafeInteger(Math.trunc(Number(text)))) {
    return Number(text);
  }
  return text;
}

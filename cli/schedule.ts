/**
 * @module `metaq schedule list|add|pause|resume|rm`: a running broker's cron schedules, each
 * publishing a given message to a topic at every occurrence (the `cron` extension command;
 * docs/delayed.md#scheduled-messages).
 */
import process from "node:process";
import { MetaqClient } from "../lib/client/client.ts";
import { describeError } from "../lib/errors.ts";
import type { ScheduleListing } from "../lib/protocol/delayed.ts";
import {
  brokerList,
  clientSecurity,
  CliError,
  type CommandSpec,
  CONNECTION_USAGE,
  integerFlag,
  parseFlags,
  SECURITY_FLAGS,
  topicArgument,
} from "./common.ts";

const USAGE = `Usage: metaq schedule list [--broker HOST:PORT] [--format text|json]
       metaq schedule add NAME --cron EXPR --topic TOPIC --message TEXT [options]
       metaq schedule pause|resume|rm NAME [--broker HOST:PORT]

Cron schedules run on the broker (on a cluster, on the node that holds delayed messages, and
on another after a failover): at every occurrence of EXPR the broker publishes the message to
TOPIC, once, carrying 'metaq-scheduled:<time>/<id>/<name>' in its attribute. EXPR is a Quartz
cron expression in the broker's local time: second minute hour day-of-month month day-of-week
[year], with '?' for one of the two day fields. A schedule added paused publishes nothing until
resumed; a resumed schedule does not publish what it missed while paused; after a broker was
down, what it missed by up to a minute is published late, each once, and of older occurrences
only the latest.

Options of add:
  --cron EXPR               when to publish (such as '0 0 9 * * ?': every day at 09:00)
  --topic TOPIC             where to publish
  --message TEXT            the message to publish
  --partition N             always this partition (default: one at random each time)
  --attribute TEXT          the message's attribute (after the scheduled one)
  --paused                  add it paused

Examples:
  metaq schedule add morning-report --cron '0 0 9 ? * MON-FRI' --topic reports --message run
  metaq schedule list
  metaq schedule pause morning-report

${CONNECTION_USAGE}`;

const FLAGS = {
  broker: { type: "string" },
  format: { type: "string" },
  cron: { type: "string" },
  topic: { type: "string" },
  message: { type: "string" },
  partition: { type: "string" },
  attribute: { type: "string" },
  paused: { type: "boolean" },
  ...SECURITY_FLAGS,
} as const;

const ACTIONS = ["list", "add", "pause", "resume", "rm"] as const;

export const schedule: CommandSpec = {
  name: "schedule",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags("schedule", args, FLAGS, 2);
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const [action, name] = positionals as [string | undefined, string | undefined];
    if (!ACTIONS.includes(action as typeof ACTIONS[number])) {
      throw new CliError(
        "Cannot run 'schedule': expected list, add, pause, resume or rm (see 'metaq schedule --help')",
      );
    }
    if (action !== "list" && name === undefined) {
      throw new CliError(`Cannot run 'schedule ${action}': give the schedule's name`);
    }
    const format = values.format ?? "text";
    if (format !== "text" && format !== "json") {
      throw new CliError(`Cannot use --format ${format}: expected text or json`);
    }
    const add = action === "add" ? addSpec(values) : undefined;
    const client = new MetaqClient({
      brokers: brokerList(values.broker),
      reconnectAttemptsMax: 2,
      ...clientSecurity(values),
    });
    try {
      if (action === "list") {
        process.stdout.write(renderList(await client.listSchedules(), format));
      } else if (add) {
        await client.addSchedule(name!, add);
        console.log(`added ${name}${add.paused ? " (paused)" : ""}`);
      } else {
        await client.changeSchedule(name!, action as "pause" | "resume" | "rm");
        console.log(`${action === "rm" ? "removed" : `${action}d`} ${name}`);
      }
      return 0;
    } catch (error) {
      throw new CliError(`Cannot ${action} schedules: ${describeError(error)}`, 1);
    } finally {
      client.close();
    }
  },
};

function addSpec(values: {
  cron?: string;
  topic?: string;
  message?: string;
  partition?: string;
  attribute?: string;
  paused?: boolean;
}) {
  if (values.cron === undefined) throw new CliError("Cannot add a schedule: give --cron");
  if (values.message === undefined) throw new CliError("Cannot add a schedule: give --message");
  if (values.topic === undefined) throw new CliError("Cannot add a schedule: give --topic");
  const topic = topicArgument("schedule add", values.topic);
  return {
    cron: values.cron,
    topic,
    partition: integerFlag("partition", values.partition, { min: 0, max: 1_000_000 }) ?? -1,
    payload: new TextEncoder().encode(values.message),
    attribute: values.attribute,
    paused: values.paused ?? false,
  };
}

function renderList(listing: readonly ScheduleListing[], format: "text" | "json"): string {
  if (format === "json") return `${JSON.stringify(listing)}\n`;
  if (listing.length === 0) return "no schedules\n";
  const when = (ms?: number) => ms === undefined ? "-" : new Date(ms).toISOString();
  return listing.map((entry) =>
    `${entry.name}  '${entry.cron}'  -> ${entry.topic}` +
    `${entry.partition >= 0 ? `-${entry.partition}` : ""}  ` +
    `${entry.paused ? "paused" : `next ${when(entry.nextAtMs)}`}  last ${when(entry.lastAtMs)}\n`
  ).join("");
}

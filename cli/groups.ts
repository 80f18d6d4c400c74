/**
 * @module `metaq groups`: lists consumer groups (members, per-partition committed offset, log end
 * and lag) and resets a group's committed offsets (`metaq groups reset`).
 */
import { MetaqClient } from "../lib/client/client.ts";
import { GroupClient } from "../lib/client/group_client.ts";
import { BrokerError, describeError } from "../lib/errors.ts";
import type { GroupReport, ResetTarget } from "../lib/protocol/group_wire.ts";
import {
  brokerList,
  checkPartition,
  checkTopicExists,
  clientSecurity,
  CliError,
  type CommandSpec,
  CONNECTION_USAGE,
  formatFlag,
  groupArgument,
  integerFlag,
  parseFlags,
  SECURITY_FLAGS,
  topicArgument,
  topicMetadata,
} from "./common.ts";

const USAGE = `Usage: metaq groups [GROUP] [--format text|json] [connection options]
       metaq groups reset GROUP TOPIC --to earliest|latest|OFFSET [--partition N] [--force]
                                      [--create] [--format text|json]

Lists consumer groups: members with the partitions they own, and for each partition the
committed offset, the log end and the lag (bytes between them). A GROUP that does not exist
(no members, no committed offsets) is an error (exit 1).

'reset' moves a group's committed offsets for TOPIC (every partition, or --partition N) to the
log start (earliest), the log end (latest) or a byte offset, which must be where a record
starts. It is refused while the group has members, unless --force: then the members restart
those partitions from the new offsets. A group that does not exist yet is refused too (a typo
would start a new group), unless --create.

Options:
  --format text|json        output format (default text)
  --to WHERE                reset: earliest, latest or a byte offset
  --partition N             reset: only partition N
  --force                   reset: even while the group has members
  --create                  reset: start a group that does not exist yet at these offsets

${CONNECTION_USAGE}

Examples:
  metaq groups
  metaq groups billing --format json
  metaq groups reset billing orders --to earliest
  metaq groups reset billing orders --to 4096 --partition 2 --force`;

const FLAGS = {
  broker: { type: "string" },
  format: { type: "string" },
  to: { type: "string" },
  partition: { type: "string" },
  force: { type: "boolean" },
  create: { type: "boolean" },
  ...SECURITY_FLAGS,
} as const;

export const groups: CommandSpec = {
  name: "groups",
  summary: "list consumer groups; reset their offsets",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags("groups", args, FLAGS, 3);
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
    try {
      if (positionals[0] === "reset") {
        return await reset(client, positionals, { ...values, format });
      }
      if (positionals.length > 1) {
        throw new CliError(`Cannot run 'groups': unexpected argument '${positionals[1]}'`);
      }
      const group = positionals[0] === undefined ? undefined : groupArgument(positionals[0]);
      const reports = await new GroupClient(client).describe(group);
      if (group !== undefined && !reports.some(exists)) {
        throw new CliError(`Cannot describe group ${group}: no such consumer group`, 1);
      }
      if (format === "json") console.log(JSON.stringify(reports, null, 2));
      else console.log(renderReports(reports));
      return 0;
    } catch (error) {
      if (error instanceof CliError) throw error;
      // The broker's refusals already say what could not be done; others need the context.
      if (error instanceof BrokerError) throw new CliError(error.message, 1);
      const action = positionals[0] === "reset" ? "reset offsets" : "list groups";
      throw new CliError(`Cannot ${action}: ${describeError(error)}`, 1);
    } finally {
      client.close();
    }
  },
};

/** A group exists while it has members or committed offsets. */
function exists(report: GroupReport): boolean {
  return report.members.length > 0 ||
    report.partitions.some((partition) => partition.committed !== null);
}

async function reset(
  client: MetaqClient,
  positionals: string[],
  values: {
    to?: string;
    partition?: string;
    force?: boolean;
    create?: boolean;
    format: "text" | "json";
  },
): Promise<number> {
  const [, groupText, topicText, extra] = positionals;
  if (!groupText || !topicText) {
    throw new CliError("Cannot reset: give GROUP and TOPIC (see 'metaq groups --help')");
  }
  if (extra !== undefined) throw new CliError(`Cannot reset: unexpected argument '${extra}'`);
  const group = groupArgument(groupText);
  const topic = topicArgument("groups reset", topicText);
  if (values.to === undefined) {
    throw new CliError("Cannot reset: give --to earliest, latest or an offset");
  }
  let to: ResetTarget;
  if (values.to === "earliest" || values.to === "latest") to = values.to;
  else to = integerFlag("to", values.to, { min: 0, max: Number.MAX_SAFE_INTEGER })!;
  const partition = integerFlag("partition", values.partition, { min: 0, max: 1_000_000 });
  const meta = await topicMetadata(client, topic, "reset offsets of");
  checkTopicExists(meta, "reset offsets of", "");
  if (partition !== undefined) checkPartition(meta, partition, "reset offsets of");
  const groups = new GroupClient(client);
  if (!values.create && !(await groups.describe(group)).some(exists)) {
    throw new CliError(
      `Cannot reset group ${group}: no such consumer group (give --create to start it at ` +
        "these offsets)",
      1,
    );
  }
  const entries = await groups.reset({ group, topic, partition, to, force: values.force ?? false });
  if (values.format === "json") {
    console.log(JSON.stringify({ offsets: entries }));
    return 0;
  }
  for (const entry of entries) {
    console.log(`${entry.group} ${entry.topic}-${entry.partition} -> ${entry.offset}`);
  }
  return 0;
}

/** Two tables: groups with their members, then partitions with offsets, end and lag. */
export function renderReports(reports: readonly GroupReport[]): string {
  if (reports.length === 0) return "No consumer groups.";
  const members = [["GROUP", "GENERATION", "STRATEGY", "MEMBER", "PARTITIONS"]];
  for (const report of reports) {
    if (report.members.length === 0) {
      members.push([report.group, String(report.generation), report.strategy ?? "-", "-", "-"]);
    }
    for (const member of report.members) {
      members.push([
        report.group,
        String(report.generation),
        report.strategy ?? "-",
        member.id,
        member.partitions.join(",") || "-",
      ]);
    }
  }
  const partitions = [["GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "OWNER"]];
  for (const report of reports) {
    for (const p of report.partitions) {
      partitions.push([
        report.group,
        p.topic,
        String(p.partition),
        p.committed === null ? "-" : String(p.committed),
        String(p.end),
        String(p.lag),
        p.owner ?? "-",
      ]);
    }
  }
  return `${table(members)}\n\n${table(partitions)}`;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows.map((row) =>
    row.map((cell, column) => cell.padEnd(widths[column])).join("  ").trimEnd()
  )
    .join("\n");
}

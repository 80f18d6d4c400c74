/**
 * @module `metaq groups`: lists consumer groups (members, per-partition committed offset, log end
 * and lag) and resets a group's committed offsets (`metaq groups reset`).
 */
import { MetaqClient } from "../lib/client/client.ts";
import { GroupClient } from "../lib/client/group_client.ts";
import { BrokerError, describeError } from "../lib/errors.ts";
import { partitionBounds, partitionBytes } from "../lib/client/partition_seek.ts";
import { countRecords, recordTimeMs } from "../lib/protocol/record_seek.ts";
import type { GroupReport } from "../lib/protocol/group_wire.ts";
import {
  brokerList,
  checkPartition,
  checkTopicExists,
  clientSecurity,
  CliError,
  type CommandSpec,
  CONNECTION_USAGE,
  formatBytes,
  formatFlag,
  groupArgument,
  integerFlag,
  parseFlags,
  SECURITY_FLAGS,
  topicArgument,
  topicMetadata,
} from "./common.ts";
import { offsetPosition, parseTime, type Position, resolvePosition } from "./positions.ts";

const USAGE = `Usage: metaq groups [GROUP] [--format text|json] [connection options]
       metaq groups reset GROUP TOPIC --to earliest|latest|OFFSET|-N | --to-time TIME
                                      [--partition N] [--force] [--create] [--dry-run]
                                      [--format text|json]
       metaq groups delete GROUP [--format text|json]

Lists consumer groups: members with the partitions they own, and for each partition the
committed offset, the log end and the lag: bytes between them, and messages (counted, or
estimated with a ~ beyond 8 MiB of lag; JSON: "lagMessages", "lagMessagesExact"). A GROUP that does not exist
(no members, no committed offsets) is an error (exit 1).

'reset' moves a group's committed offsets for TOPIC (every partition, or --partition N) to the
log start (earliest, alias beginning), the log end (latest, alias end), a byte offset, which
must be where a record starts, the last N messages (-N), or the first message written at or
after a time (--to-time; the time is in every message id). --dry-run prints where each
partition would go, and from where, without changing anything. It is refused while the group has members, unless --force: then the members restart
those partitions from the new offsets. A group that does not exist yet is refused too (a typo
would start a new group), unless --create.

'delete' removes a group that has no members: its committed offsets and its name. A group with
members is refused (stop them first); so is one that does not exist.

Options:
  --format text|json        output format (default text)
  --to WHERE                reset: earliest, latest, a byte offset, or -N (the last N messages)
  --to-time TIME            reset: the first message at or after TIME (2026-12-06T10:00:00Z,
                            2026-12-06 for midnight UTC, or milliseconds since 1970)
  --dry-run                 reset: show the offsets it would set; change nothing
  --partition N             reset: only partition N
  --force                   reset: even while the group has members
  --create                  reset: start a group that does not exist yet at these offsets

${CONNECTION_USAGE}

Examples:
  metaq groups
  metaq groups billing --format json
  metaq groups reset billing orders --to earliest
  metaq groups reset billing orders --to 4096 --partition 2 --force
  metaq groups reset billing orders --to-time 2026-12-06T10:00:00Z --dry-run
  metaq groups reset billing orders --to -100
  metaq groups delete old-billing`;

const FLAGS = {
  broker: { type: "string" },
  format: { type: "string" },
  to: { type: "string" },
  "to-time": { type: "string" },
  "dry-run": { type: "boolean" },
  partition: { type: "string" },
  force: { type: "boolean" },
  create: { type: "boolean" },
  ...SECURITY_FLAGS,
} as const;

export const groups: CommandSpec = {
  name: "groups",
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
      if (positionals[0] === "delete") {
        return await deleteGroup(client, positionals, format);
      }
      if (positionals.length > 1) {
        throw new CliError(`Cannot run 'groups': unexpected argument '${positionals[1]}'`);
      }
      const group = positionals[0] === undefined ? undefined : groupArgument(positionals[0]);
      const reports = await withLagMessages(
        client,
        await new GroupClient(client).describe(group),
      );
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
      const action = positionals[0] === "reset"
        ? "reset offsets"
        : positionals[0] === "delete"
        ? "delete the group"
        : "list groups";
      throw new CliError(`Cannot ${action}: ${describeError(error)}`, 1);
    } finally {
      client.close();
    }
  },
};

type LagReport = GroupReport & {
  partitions: (GroupReport["partitions"][number] & {
    lagMessages: number;
    lagMessagesExact: boolean;
  })[];
};

/**
 * Lag in messages as well as bytes: the records between the committed offset (or the log
 * start) and the end, counted over `get` (estimated beyond 8 MiB of lag, and said so).
 */
async function withLagMessages(
  client: MetaqClient,
  reports: readonly GroupReport[],
): Promise<LagReport[]> {
  const out: LagReport[] = [];
  for (const report of reports) {
    const partitions = [];
    for (const p of report.partitions) {
      let lag = { count: 0, exact: true };
      if (p.lag > 0) {
        const from = p.end - p.lag; // the committed offset, or the log start
        lag = await countRecords(partitionBytes(client, p.topic, p.partition), from, p.end);
      }
      partitions.push({ ...p, lagMessages: lag.count, lagMessagesExact: lag.exact });
    }
    out.push({ ...report, partitions });
  }
  return out;
}

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
    "to-time"?: string;
    "dry-run"?: boolean;
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
  if ((values.to === undefined) === (values["to-time"] === undefined)) {
    throw new CliError(
      "Cannot reset: give one of --to earliest|latest|OFFSET|-N or --to-time TIME",
    );
  }
  const position: Position = values.to !== undefined
    ? offsetPosition("to", values.to)
    : { kind: "time", timeMs: parseTime("to-time", values["to-time"]!) };
  const partition = integerFlag("partition", values.partition, { min: 0, max: 1_000_000 });
  const meta = await topicMetadata(client, topic, "reset offsets of");
  checkTopicExists(meta, "reset offsets of", "");
  if (partition !== undefined) checkPartition(meta, partition, "reset offsets of");
  const groups = new GroupClient(client);
  const reports = await groups.describe(group);
  if (!values.create && !reports.some(exists)) {
    throw new CliError(
      `Cannot reset group ${group}: no such consumer group (give --create to start it at ` +
        "these offsets)",
      1,
    );
  }
  const partitions = partition !== undefined
    ? [partition]
    : Array.from({ length: meta.partitions }, (_, i) => i);
  const committed = new Map(
    reports.flatMap((report) => report.partitions)
      .filter((report) => report.topic === topic)
      .map((report) => [report.partition, report.committed]),
  );
  // Where each partition goes; a byte offset the broker checks (a record start, in the log).
  const plan: { partition: number; from: number | null; to: number; timeMs: number | null }[] = [];
  for (const p of partitions) {
    const bounds = await partitionBounds(client, topic, p);
    const to = await resolvePosition(client, topic, p, position, bounds);
    plan.push({ partition: p, from: committed.get(p) ?? null, to, timeMs: null });
  }
  for (const entry of plan) {
    entry.timeMs = await messageTime(client, topic, entry.partition, entry.to);
  }
  if (values["dry-run"]) {
    const rows = plan.map((entry) => ({
      group,
      topic,
      partition: entry.partition,
      from: entry.from,
      offset: entry.to,
      timestamp: entry.timeMs === null ? null : new Date(entry.timeMs).toISOString(),
    }));
    if (values.format === "json") console.log(JSON.stringify({ dryRun: true, offsets: rows }));
    else {
      for (const row of rows) {
        console.log(
          `${group} ${topic}-${row.partition} ${row.from ?? "-"} -> ${row.offset}${
            row.timestamp ? ` (message of ${row.timestamp})` : " (end)"
          } (dry run: nothing changed)`,
        );
      }
    }
    return 0;
  }
  const entries = [];
  const force = values.force ?? false;
  if (position.kind === "earliest" || position.kind === "latest") {
    // The broker picks the bounds itself at the moment it resets (the log may move meanwhile).
    entries.push(...await groups.reset({ group, topic, partition, to: position.kind, force }));
  } else {
    for (const entry of plan) {
      entries.push(
        ...await groups.reset({ group, topic, partition: entry.partition, to: entry.to, force }),
      );
    }
  }
  const times = new Map(plan.map((entry) => [entry.partition, entry.timeMs]));
  if (values.format === "json") {
    console.log(JSON.stringify({
      offsets: entries.map((entry) => {
        const timeMs = times.get(entry.partition);
        return { ...entry, timestamp: timeMs ? new Date(timeMs).toISOString() : null };
      }),
    }));
    return 0;
  }
  for (const entry of entries) {
    const timeMs = times.get(entry.partition);
    console.log(
      `${entry.group} ${entry.topic}-${entry.partition} -> ${entry.offset}${
        timeMs ? ` (message of ${new Date(timeMs).toISOString()})` : ""
      }`,
    );
  }
  return 0;
}

async function deleteGroup(
  client: MetaqClient,
  positionals: string[],
  format: "text" | "json",
): Promise<number> {
  const [, groupText, extra] = positionals;
  if (!groupText) throw new CliError("Cannot delete: give GROUP (see 'metaq groups --help')");
  if (extra !== undefined) throw new CliError(`Cannot delete: unexpected argument '${extra}'`);
  const group = groupArgument(groupText);
  const offsets = await new GroupClient(client).delete(group);
  if (format === "json") console.log(JSON.stringify({ group, deleted: true, offsets }));
  else {
    console.log(
      `Deleted group ${group} (${offsets.length} committed offset${
        offsets.length === 1 ? "" : "s"
      } removed)`,
    );
  }
  return 0;
}

/** The write time of the record at `offset`, or null at the end (or without a time). */
async function messageTime(
  client: MetaqClient,
  topic: string,
  partition: number,
  offset: number,
): Promise<number | null> {
  const bytes = await partitionBytes(client, topic, partition).read(offset, 20);
  if (bytes.length < 20) return null;
  const timeMs = recordTimeMs(new DataView(bytes.buffer, bytes.byteOffset).getBigInt64(8));
  return Number.isFinite(timeMs) ? timeMs : null;
}

/** Two tables: groups with their members, then partitions with offsets, end and lag. */
export function renderReports(reports: readonly LagReport[]): string {
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
  const partitions = [[
    "GROUP",
    "TOPIC",
    "PARTITION",
    "COMMITTED",
    "END",
    "LAG",
    "LAG MESSAGES",
    "OWNER",
  ]];
  for (const report of reports) {
    for (const p of report.partitions) {
      partitions.push([
        report.group,
        p.topic,
        String(p.partition),
        p.committed === null ? "-" : String(p.committed),
        String(p.end),
        formatBytes(p.lag),
        `${p.lagMessagesExact ? "" : "~"}${p.lagMessages}`,
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

/** @module `metaq consume`: prints a topic's messages, from a chosen position, once or following. */
import { Buffer } from "node:buffer";
import process from "node:process";
import { MetaqClient } from "../lib/client/client.ts";
import { describeError } from "../lib/errors.ts";
import { FETCH_BYTES_MAX, RECORD_HEADER_BYTES } from "../lib/limits.ts";
import { type DecodedRecord, decodeRecordChunks, splitAttribute } from "../lib/protocol/record.ts";
import { FORMAT_FIELDS, messagePrinter, type PrintedMessage } from "./message_format.ts";
import { offsetPosition, parseTime, type Position, resolvePosition } from "./positions.ts";
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
  writeStdout,
} from "./common.ts";
import { consumeAsGroup, consumeAsZkGroup } from "./consume_group.ts";
import { ZK_FLAGS, ZK_USAGE, zkTarget } from "./zk_connect.ts";

const USAGE = `Usage: metaq consume TOPIC [options]

Prints messages to stdout: each payload's bytes as they are, one per line (text), or one JSON
object per line (json). Without --group it reads partitions directly and, without --follow,
stops once every partition is read to its end.

With --group G it joins consumer group G: the broker shares the topic's partitions among the
group's members (start several processes to split them), offsets are committed to the broker,
and it runs until Ctrl-C (or --max), then commits and leaves. With --broadcast every consumer
of the group reads every message and keeps its offsets locally. Partition starts and stops are
reported on stderr.

With --group G --zk-connect LIST it joins G as MetaQ's Java consumers do: the members balance
the partitions of every broker registered in ZooKeeper among themselves (MetaQ's ids and owners
nodes), so metaq and original consumers can share the group, and offsets are committed to
ZooKeeper as <msgId>-<offset>. Partitions are named <brokerId>-<partition>; json output adds
"brokerId".

A topic that does not exist (no partition holds a message, and no [topic=...] section names it)
or a partition it does not have is an error (exit 1); give --follow to wait for a topic's first
message.

Positions (per partition; the same words as 'groups reset --to'):
  --offset earliest         start at the oldest stored message (default; alias: beginning,
                            --from-beginning)
  --offset latest           start after the newest message (alias: end, --from-end)
  --offset N                start at byte offset N, where a record starts (with --partition)
  --offset -N, --last N     start at the last N messages of each partition
  --from-time TIME          start at the first message written at or after TIME:
                            2026-12-06T10:00:00Z (ISO 8601 with a zone), 2026-12-06 (UTC),
                            or milliseconds since 1970 (the time is in every message id)

Options:
  --partition N             read only partition N (default: every partition)
  --follow                  keep waiting for new messages (and for a topic not there yet)
  --max N                   stop after N messages
  --format text|json        output format (default text); json: {"topic", "partition",
                            "offset", "nextOffset", "id", "timestamp", "flag", "key",
                            "headers", "attribute", "payload", "encoding", "bytes"}, the payload
                            as UTF-8 text when it is valid UTF-8 (encoding "utf8"), else
                            base64 (encoding "base64")
  -f, --format-string FMT   print each message as FMT (\\n, \\t, \\\\ escapes) with fields
${
  Object.entries(FORMAT_FIELDS).map(([code, meaning]) =>
    `                              %${code}  ${meaning}`
  ).join("\n")
}
  --delimiter TEXT          written after each message (default \\n; \\0, \\t... escapes)
  --max-size BYTES          bytes asked per fetch (default 1048576)

Group options:
  --group G                 consume as a member of group G (partitions shared, offsets committed)
  --broadcast               with --group: read every partition, offsets kept locally
  --strategy NAME           DEFAULT (contiguous slices) or CONSIST (consistent hashing)
  --offsets WHERE           broker (group default), file (broadcast default) or memory
  --instance NAME           broadcast: names this consumer's local offsets (default: host name)
  --consumer-id ID          member id (default <host>-<pid>-<random>)
  --commit-period MS        commit offsets this often (default 5000)

ZooKeeper mode (with --group; see docs/zookeeper.md):
${ZK_USAGE}
  --zk-sync-time-ms MS      pause between rebalance attempts (zk.zkSyncTimeMs, default 5000)

${CONNECTION_USAGE}

Examples:
  metaq consume orders
  metaq consume orders --last 10
  metaq consume orders --from-time 2026-12-06T10:00:00Z --max 100 -f '%t %p %o %T %k %s'
  metaq consume orders --partition 2 --offset 1024 --max 10 --format json
  metaq consume orders --follow --format json
  metaq consume orders --group billing            # run it two or three times
  metaq consume orders --group audit --broadcast --instance audit-1
  metaq consume orders --group billing --zk-connect zk1:2181,zk2:2181   # with Java consumers`;

const FLAGS = {
  broker: { type: "string" },
  partition: { type: "string" },
  "from-beginning": { type: "boolean" },
  "from-end": { type: "boolean" },
  offset: { type: "string" },
  last: { type: "string" },
  "from-time": { type: "string" },
  group: { type: "string" },
  follow: { type: "boolean" },
  max: { type: "string" },
  format: { type: "string" },
  "format-string": { type: "string", short: "f" },
  delimiter: { type: "string" },
  "max-size": { type: "string" },
  broadcast: { type: "boolean" },
  strategy: { type: "string" },
  offsets: { type: "string" },
  instance: { type: "string" },
  "consumer-id": { type: "string" },
  "commit-period": { type: "string" },
  ...ZK_FLAGS,
  "zk-sync-time-ms": { type: "string" },
  ...SECURITY_FLAGS,
} as const;

/** Flags that only make sense for a group member. */
const GROUP_ONLY = [
  "broadcast",
  "strategy",
  "offsets",
  "instance",
  "consumer-id",
  "commit-period",
  "zk-connect",
];
/** Flags a ZooKeeper group member has no use for, and why. */
const NOT_WITH_ZK = new Map([
  ["broker", "ZooKeeper names the brokers"],
  ["broadcast", "broadcast consumers read one broker or cluster, found with --broker"],
  ["offsets", "a ZooKeeper group keeps its offsets in ZooKeeper"],
  ["instance", "a ZooKeeper group keeps its offsets in ZooKeeper"],
]);

const JAVA_LONG_MAX = 9223372036854775807n;
const IDLE_DELAYS_MS = [50, 100, 200, 400, 800, 1000];

export const consume: CommandSpec = {
  name: "consume",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags("consume", args, FLAGS, 1);
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const topic = topicArgument("consume", positionals[0]);
    const print = messagePrinter({
      format: formatFlag(values.format),
      formatString: values["format-string"],
      delimiter: values.delimiter,
    });
    const { partition, position, max, maxSize, grouped } = checkFlags(values);
    const groupStart = position.kind === "latest" ? "latest" : "earliest";
    const zk = zkTarget(values);
    const security = clientSecurity(values);
    stopOnBrokenPipe();
    if (zk) {
      const printed = await consumeAsZkGroup({
        zk,
        security,
        topic,
        group: values.group,
        strategy: values.strategy,
        commitPeriod: values["commit-period"],
        consumerId: values["consumer-id"],
        syncTime: values["zk-sync-time-ms"],
        follow: values.follow ?? false,
        start: groupStart,
        max,
        maxSize,
        format: print,
      });
      process.stderr.write(`Consumed ${printed.toLocaleString("en-US")} messages\n`);
      return 0;
    }
    const brokers = brokerList(values.broker);
    // The first contact fails fast (a broker that is not there is an error at once, after a
    // dial of each one listed); a follower then rides out restarts of the broker.
    const client = new MetaqClient({
      brokers,
      reconnectAttemptsMax: Math.max(3, brokers.length),
      ...security,
    });
    const reader = values.follow || grouped
      ? new MetaqClient({ brokers, reconnectAttemptsMax: 1000, ...security })
      : client;
    let printed: number;
    try {
      const meta = await topicMetadata(client, topic, "consume");
      if (!values.follow) {
        checkTopicExists(meta, "consume", " (give --follow to wait for its first message)");
      }
      if (partition !== undefined) checkPartition(meta, partition, "consume");
      if (reader !== client) client.close();
      if (grouped) {
        reader.close();
        printed = await consumeAsGroup({
          brokers,
          security,
          topic,
          group: values.group,
          broadcast: values.broadcast ?? false,
          strategy: values.strategy,
          instance: values.instance,
          offsets: values.offsets,
          commitPeriod: values["commit-period"],
          consumerId: values["consumer-id"],
          start: groupStart,
          max,
          maxSize,
          format: print,
        });
      } else {
        const partitions = partition !== undefined
          ? [partition]
          : Array.from({ length: meta.partitions }, (_, i) => i);
        printed = await readPartitions(reader, {
          topic,
          group: "metaq-cli",
          partitions,
          position,
          follow: values.follow ?? false,
          max,
          print,
          maxSize,
        });
      }
    } catch (error) {
      if (error instanceof CliError) throw error;
      throw new CliError(`Cannot consume ${topic}: ${describeError(error)}`, 1);
    } finally {
      client.close();
      reader.close();
    }
    process.stderr.write(`Consumed ${printed.toLocaleString("en-US")} messages\n`);
    return 0;
  },
};

/** The reading flags, checked together; a usage error names the combination at fault. */
function checkFlags(values: {
  "from-beginning"?: boolean;
  "from-end"?: boolean;
  offset?: string;
  last?: string;
  "from-time"?: string;
  partition?: string;
  max?: string;
  "max-size"?: string;
  group?: string;
  broadcast?: boolean;
  broker?: string;
  "zk-connect"?: string;
  "zk-sync-time-ms"?: string;
}) {
  const positions: [string, Position][] = [];
  if (values["from-beginning"]) positions.push(["--from-beginning", { kind: "earliest" }]);
  if (values["from-end"]) positions.push(["--from-end", { kind: "latest" }]);
  if (values.offset !== undefined) {
    positions.push(["--offset", offsetPosition("offset", values.offset)]);
  }
  if (values.last !== undefined) {
    const count = integerFlag("last", values.last, { min: 1, max: Number.MAX_SAFE_INTEGER })!;
    positions.push(["--last", { kind: "last", count }]);
  }
  if (values["from-time"] !== undefined) {
    positions.push(["--from-time", {
      kind: "time",
      timeMs: parseTime("from-time", values["from-time"]),
    }]);
  }
  if (positions.length > 1) {
    throw new CliError(
      `Cannot combine ${positions.map(([flag]) => flag).join(" and ")}: give one position`,
    );
  }
  const position: Position = positions[0]?.[1] ?? { kind: "earliest" };
  const partition = integerFlag("partition", values.partition, { min: 0, max: 1_000_000 });
  if (position.kind === "offset" && partition === undefined) {
    throw new CliError(
      "Cannot use --offset N without --partition (byte offsets differ per partition; -N, " +
        "earliest and latest apply to each)",
    );
  }
  const max = integerFlag("max", values.max, { min: 1, max: Number.MAX_SAFE_INTEGER });
  const maxSize = integerFlag("max-size", values["max-size"], { min: 64, max: FETCH_BYTES_MAX }) ??
    1024 * 1024;
  const grouped = values.group !== undefined || values.broadcast === true;
  if (grouped && position.kind !== "earliest" && position.kind !== "latest") {
    throw new CliError(
      `Cannot start a group at ${positions[0][0]}: a group starts at earliest or latest, or ` +
        "where 'metaq groups reset --to-time/--to' put its offsets",
    );
  }
  if (grouped && partition !== undefined) {
    throw new CliError("Cannot combine --group with --partition: the group assigns partitions");
  }
  const usedGroupOnly = GROUP_ONLY.find((flag) =>
    (values as Record<string, unknown>)[flag] !== undefined
  );
  if (!grouped && usedGroupOnly) {
    throw new CliError(`Cannot use --${usedGroupOnly} without --group`);
  }
  if (values["zk-connect"] !== undefined) {
    for (const [flag, why] of NOT_WITH_ZK) {
      if ((values as Record<string, unknown>)[flag] !== undefined) {
        throw new CliError(`Cannot combine --${flag} with --zk-connect: ${why}`);
      }
    }
  } else if (values["zk-sync-time-ms"] !== undefined) {
    throw new CliError("Cannot use --zk-sync-time-ms without --zk-connect");
  }
  if (values.group !== undefined) groupArgument(values.group);
  return { partition, position, max, maxSize, grouped };
}

interface ReadOptions {
  readonly topic: string;
  readonly group: string;
  readonly partitions: number[];
  readonly position: Position;
  readonly follow: boolean;
  readonly max?: number;
  readonly print: (message: PrintedMessage) => Uint8Array;
  readonly maxSize: number;
}

/** Reads partitions in turn until each is at its end (or forever with follow). */
async function readPartitions(client: MetaqClient, options: ReadOptions): Promise<number> {
  const { position } = options;
  const cursors = [];
  for (const partition of options.partitions) {
    // earliest and latest are MetaQ's own moves (a 301 from 0, or from Long.MAX_VALUE).
    const offset = position.kind === "earliest"
      ? 0
      : position.kind === "latest"
      ? -1
      : await resolvePosition(client, options.topic, partition, position);
    cursors.push({ partition, offset, maxSize: options.maxSize, done: false });
  }
  let printed = 0;
  let idleRounds = 0;
  // Following one partition, a fetch waits at its end for the next message (a long poll on a
  // metaq broker); several partitions are polled in turn, so none waits behind another.
  const waitMs = options.follow && cursors.length === 1 ? FOLLOW_WAIT_MS : undefined;
  while (true) {
    let progressed = false;
    let waited = false;
    for (const cursor of cursors) {
      if (cursor.done) continue;
      const askedAtMs = performance.now();
      const reply = await client.get({
        topic: options.topic,
        group: options.group,
        partition: cursor.partition,
        offset: cursor.offset < 0 ? JAVA_LONG_MAX : cursor.offset,
        maxSize: cursor.maxSize,
        waitMs,
      });
      waited = waitMs !== undefined && performance.now() - askedAtMs >= waitMs / 2;
      if (reply.kind === "moved") {
        cursor.offset = reply.offset;
        progressed = true;
        continue;
      }
      if (reply.kind === "none") {
        if (cursor.offset < 0) cursor.offset = 0; // empty partition asked "from the end"
        if (!options.follow) cursor.done = true;
        continue;
      }
      const records = decodeRecordChunks(reply.chunks, cursor.offset, FETCH_BYTES_MAX);
      if (records.length === 0) {
        // A record larger than maxSize: grow the fetch, as MetaQ's consumer does.
        if (cursor.maxSize >= FETCH_BYTES_MAX) {
          throw new CliError(
            `Cannot read ${options.topic}-${cursor.partition} at ${cursor.offset}: record larger than ${FETCH_BYTES_MAX} bytes`,
            1,
          );
        }
        cursor.maxSize = Math.min(cursor.maxSize * 2, FETCH_BYTES_MAX);
        continue;
      }
      const take = options.max === undefined ? records : records.slice(0, options.max - printed);
      await writeStdout(
        Buffer.concat(
          take.map((record) =>
            options.print(printedRecord(options.topic, cursor.partition, record))
          ),
        ),
      );
      printed += take.length;
      const last = take[take.length - 1];
      cursor.offset = last.offset + 20 + last.length;
      progressed = true;
      if (options.max !== undefined && printed >= options.max) return printed;
    }
    if (cursors.every((cursor) => cursor.done)) return printed;
    idleRounds = progressed ? 0 : idleRounds + 1;
    if (!progressed && !waited) {
      await new Promise((resolve) =>
        setTimeout(resolve, IDLE_DELAYS_MS[Math.min(idleRounds, IDLE_DELAYS_MS.length - 1)])
      );
    }
  }
}

/** How long a followed partition's fetch waits at its end (the broker's long poll). */
const FOLLOW_WAIT_MS = 1000;

/** A record as the printers take it: its attribute split from its payload. */
function printedRecord(topic: string, partition: number, record: DecodedRecord): PrintedMessage {
  let attribute: string | undefined;
  let payload = record.data;
  try {
    ({ attribute, payload } = splitAttribute(record.flag, record.data));
  } catch {
    // A flag claiming an attribute that is not there: show the data as it is.
  }
  return {
    topic,
    partition,
    offset: record.offset,
    nextOffset: record.offset + RECORD_HEADER_BYTES + record.length,
    id: record.id,
    flag: record.flag,
    attribute,
    payload,
  };
}

/** `metaq consume ... | head` closes stdout early: exit quietly instead of with an error. */
function stopOnBrokenPipe(): void {
  process.stdout.on("error", (error: { code?: string }) => {
    if (error.code === "EPIPE") process.exit(0);
  });
}

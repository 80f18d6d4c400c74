/** @module `metaq consume`: prints a topic's messages, from a chosen position, once or following. */
import { Buffer } from "node:buffer";
import process from "node:process";
import { MetaqClient } from "../lib/client/client.ts";
import type { ConsumedMessage } from "../lib/client/consumer.ts";
import { describeError } from "../lib/errors.ts";
import { payloadJson } from "../lib/http/records.ts";
import { FETCH_BYTES_MAX, RECORD_HEADER_BYTES } from "../lib/limits.ts";
import { type DecodedRecord, decodeRecords, splitAttribute } from "../lib/protocol/record.ts";
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

Options:
  --partition N             read only partition N (default: every partition)
  --from-beginning          start at the oldest stored message (default)
  --from-end                start after the newest message
  --offset N                start at byte offset N (with --partition)
  --follow                  keep waiting for new messages (and for a topic not there yet)
  --max N                   stop after N messages
  --format text|json        output format (default text); json: {"topic", "partition",
                            "offset", "nextOffset", "id", "flag", "attribute", "payload",
                            "encoding", "bytes"}, the payload as UTF-8 text when it is valid
                            UTF-8 (encoding "utf8"), else base64 (encoding "base64")
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
  metaq consume orders --from-beginning
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
  group: { type: "string" },
  follow: { type: "boolean" },
  max: { type: "string" },
  format: { type: "string" },
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

export type Format = "text" | "json";

export const consume: CommandSpec = {
  name: "consume",
  summary: "print messages of a topic",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags("consume", args, FLAGS, 1);
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const topic = topicArgument("consume", positionals[0]);
    const format = formatFlag(values.format);
    const { partition, offset, max, maxSize, grouped } = checkFlags(values);
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
        start: values["from-end"] ? "latest" : "earliest",
        max,
        maxSize,
        format: (message) => formatMessage(message, format),
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
          start: values["from-end"] ? "latest" : "earliest",
          max,
          maxSize,
          format: (message) => formatMessage(message, format),
        });
      } else {
        const partitions = partition !== undefined
          ? [partition]
          : Array.from({ length: meta.partitions }, (_, i) => i);
        printed = await readPartitions(reader, {
          topic,
          group: "metaq-cli",
          partitions,
          start: values["from-end"] ? "end" : offset !== undefined ? offset : "beginning",
          follow: values.follow ?? false,
          max,
          format,
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
  partition?: string;
  max?: string;
  "max-size"?: string;
  group?: string;
  broadcast?: boolean;
  broker?: string;
  "zk-connect"?: string;
  "zk-sync-time-ms"?: string;
}) {
  const starts =
    [values["from-beginning"], values["from-end"], values.offset !== undefined].filter(Boolean)
      .length;
  if (starts > 1) throw new CliError("Cannot combine --from-beginning, --from-end and --offset");
  const partition = integerFlag("partition", values.partition, { min: 0, max: 1_000_000 });
  const offset = integerFlag("offset", values.offset, { min: 0, max: Number.MAX_SAFE_INTEGER });
  if (offset !== undefined && partition === undefined) {
    throw new CliError("Cannot use --offset without --partition");
  }
  const max = integerFlag("max", values.max, { min: 1, max: Number.MAX_SAFE_INTEGER });
  const maxSize = integerFlag("max-size", values["max-size"], { min: 64, max: FETCH_BYTES_MAX }) ??
    1024 * 1024;
  const grouped = values.group !== undefined || values.broadcast === true;
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
  return { partition, offset, max, maxSize, grouped };
}

type Start = "beginning" | "end" | number;

interface ReadOptions {
  readonly topic: string;
  readonly group: string;
  readonly partitions: number[];
  readonly start: Start;
  readonly follow: boolean;
  readonly max?: number;
  readonly format: Format;
  readonly maxSize: number;
}

/** Reads partitions in turn until each is at its end (or forever with follow). */
async function readPartitions(client: MetaqClient, options: ReadOptions): Promise<number> {
  const cursors = options.partitions.map((partition) => ({
    partition,
    offset: options.start === "beginning" ? 0 : options.start === "end" ? -1 : options.start,
    maxSize: options.maxSize,
    done: false,
  }));
  let printed = 0;
  let idleRounds = 0;
  while (true) {
    let progressed = false;
    for (const cursor of cursors) {
      if (cursor.done) continue;
      const reply = await client.get({
        topic: options.topic,
        group: options.group,
        partition: cursor.partition,
        offset: cursor.offset < 0 ? JAVA_LONG_MAX : cursor.offset,
        maxSize: cursor.maxSize,
      });
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
      const records = decodeRecords(reply.bytes, cursor.offset, FETCH_BYTES_MAX);
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
            formatRecord(options.topic, cursor.partition, record, options.format)
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
    if (!progressed) {
      await new Promise((resolve) =>
        setTimeout(resolve, IDLE_DELAYS_MS[Math.min(idleRounds, IDLE_DELAYS_MS.length - 1)])
      );
    }
  }
}

const encoder = new TextEncoder();
const NEWLINE = new Uint8Array([10]);

/** A record as printed: its payload's bytes and a newline (text), or a JSON line (json). */
export function formatRecord(
  topic: string,
  partition: number,
  record: DecodedRecord,
  format: Format,
): Uint8Array {
  let attribute: string | undefined;
  let payload = record.data;
  try {
    ({ attribute, payload } = splitAttribute(record.flag, record.data));
  } catch {
    // A flag claiming an attribute that is not there: show the data as it is.
  }
  return formatFields({
    topic,
    partition,
    offset: record.offset,
    nextOffset: record.offset + RECORD_HEADER_BYTES + record.length,
    id: record.id,
    flag: record.flag,
    attribute,
    payload,
  }, format);
}

/** A consumed message in the same formats as a record read directly. */
function formatMessage(message: ConsumedMessage, format: Format): Uint8Array {
  return formatFields(message, format);
}

function formatFields(
  message: {
    topic: string;
    partition: number;
    brokerId?: number;
    offset: number;
    nextOffset: number;
    id: bigint;
    flag: number;
    attribute?: string;
    payload: Uint8Array;
  },
  format: Format,
): Uint8Array {
  if (format === "text") return Buffer.concat([message.payload, NEWLINE]);
  return encoder.encode(`${
    JSON.stringify({
      topic: message.topic,
      partition: message.partition,
      ...(message.brokerId === undefined ? {} : { brokerId: message.brokerId }),
      offset: message.offset,
      nextOffset: message.nextOffset,
      id: message.id.toString(),
      flag: message.flag,
      attribute: message.attribute ?? null,
      ...payloadJson(message.payload),
      bytes: message.payload.length,
    })
  }\n`);
}

/** `metaq consume ... | head` closes stdout early: exit quietly instead of with an error. */
function stopOnBrokenPipe(): void {
  process.stdout.on("error", (error: { code?: string }) => {
    if (error.code === "EPIPE") process.exit(0);
  });
}

/**
 * @module The broker's own commands as a command table: MetaQ's put, get, offset, stats,
 * version and sync, and metaq's `meta <topic> <opaque>` (what a client needs to route messages:
 * partition count, where this broker is, and in a cluster each partition's leader; MetaQ
 * clients learned this from ZooKeeper). Each entry says where its command is served: a put on
 * its partition's leader, a read on any node holding the partition, the rest here.
 */
import { BrokerError } from "../errors.ts";
import {
  type ExtensionCommand,
  FETCH_VERB,
  type GetCommand,
  LONG_MAX_TEXT,
  type OffsetCommand,
  type PutCommand,
  type StatsCommand,
  type SyncCommand,
} from "../protocol/commands.ts";
import { type CommandTable, type ForwardPlan, HERE, type Home } from "../protocol/command_table.ts";
import { errorReply, type RequestContext, type Respond, result } from "../protocol/reply.ts";
import { BATCH_PUT_VERB } from "../protocol/batch_put.ts";
import { BATCH_PUT_BYTES_MAX, BATCH_PUT_RECORDS_MAX, FETCH_WAIT_MS_MAX } from "../limits.ts";
import type { BatchPut, Broker, PutOnce } from "./broker.ts";
import type { StatsItems } from "./stats_report.ts";
import { isInternalTopic } from "../store/log.ts";

/** One partition held on the answering node, as `figures` reports it. */
export interface PartitionInfo {
  readonly partition: number;
  readonly startOffset: number;
  readonly endOffset: number;
  /** Records appended (approximate across restarts, as MetaQ's count). */
  readonly messages: number;
  readonly bytes: number;
  readonly segments: number;
}

/** What a `meta` reply says about a topic. */
export interface TopicMetadata {
  readonly topic: string;
  readonly partitions: number;
  /**
   * Whether the topic is there: a partition holds messages, or the configuration names it
   * exactly. A topic a wildcard section accepts but nobody has written to yet is not.
   */
  readonly exists: boolean;
  readonly brokerId: number;
  readonly broker: string;
  /** Partition -> `host:port` of its leader, when replicated. */
  readonly leaders?: Record<string, string>;
}

/**
 * The verb a node sends to a partition's leader in place of a client's put: the put with the
 * message id this node chose for it, a log offset the message cannot lie before, the attempt,
 * and the term in which this node saw the leader lead. Sent again to a new leader when the
 * first stops leading before it answered, it is appended only if no record with that id is in
 * the log since that offset: never twice. A first attempt is looked for in the same way when
 * it arrives in another term than the one it was sent in: a stalled link can hand it over long
 * after a retry was appended elsewhere (T09 over netns, CI campaign seed 4233699396). Nodes of
 * one cluster speak the same version of it (9 arguments since the term was added).
 */
export const FORWARDED_PUT_VERB = "fput";

/**
 * How a put goes to its leader: as `fput` when this node can bound where a first attempt may
 * have landed (it holds a copy of the partition: its committed end), so that a retry can look
 * for it; as the plain put otherwise, which is never sent twice.
 */
function forwardedPut(broker: Broker, command: PutCommand): ForwardPlan {
  const copy = broker.logs.get(command.topic, command.partition);
  if (copy === undefined || command.oversizedBytes !== undefined) return { command };
  const since = copy.endOffset;
  // The term this node's copy is in: the one in which it saw the leader it forwards to lead.
  const epoch = copy.writer.epoch;
  const id = broker.ids.nextId();
  const fput = (attempt: number): ExtensionCommand => ({
    kind: "extension",
    verb: FORWARDED_PUT_VERB,
    args: [
      command.topic,
      String(command.partition),
      String(command.flag),
      String(command.checksum),
      String(id),
      String(since),
      String(attempt),
      String(epoch),
      String(command.body.length),
    ],
    opaque: command.opaque,
    body: command.body,
  });
  return { command: fput(1), again: fput };
}

/** The put an `fput` carries, and how to append it once; undefined when malformed. */
function parseForwardedPut(
  command: ExtensionCommand,
): { command: PutCommand; once: PutOnce } | undefined {
  const [topic, partitionText, flagText, checksumText, idText, sinceText, attemptText, epochText] =
    command.args;
  const numbers = [partitionText, flagText, checksumText, sinceText, attemptText, epochText].map(
    Number,
  );
  if (!numbers.every(Number.isSafeInteger) || !/^-?\d{1,20}$/.test(idText)) return undefined;
  const [partition, flag, checksum, since, attempt, epoch] = numbers;
  if (partition < 0 || since < 0 || attempt < 1 || epoch < 0) return undefined;
  return {
    command: {
      kind: "put",
      topic,
      partition,
      flag,
      checksum,
      opaque: command.opaque,
      body: command.body,
    },
    once: { id: BigInt.asIntN(64, BigInt(idText)), since, retry: attempt > 1, epoch },
  };
}

/** A `bput`'s request; undefined when its arguments are malformed. */
function parseBatchPut(command: ExtensionCommand): BatchPut | undefined {
  const [topic, partitionText, countText] = command.args;
  const partition = Number(partitionText);
  const count = Number(countText);
  if (!Number.isSafeInteger(partition) || partition < -1) return undefined;
  if (!Number.isSafeInteger(count) || count < 1 || count > BATCH_PUT_RECORDS_MAX) return undefined;
  return { topic, partition, count, body: command.body, opaque: command.opaque };
}

const EMPTY = new Uint8Array(0);

/** A `fetch` as the `get` it extends and its wait; undefined when malformed. */
function parseFetch(command: ExtensionCommand): { get: GetCommand; waitMs: number } | undefined {
  const [topic, group, partitionText, offsetText, maxSizeText, waitText] = command.args;
  const partition = Number(partitionText);
  const maxSize = Number(maxSizeText);
  const waitMs = Number(waitText);
  if (!/^\d{1,19}$/.test(offsetText)) return undefined;
  if (![partition, maxSize, waitMs].every(Number.isSafeInteger) || waitMs < 0) return undefined;
  if (partition < 0 || maxSize > 2147483647) return undefined;
  const get: GetCommand = {
    kind: "get",
    topic,
    group,
    partition,
    offset: Number(offsetText),
    offsetIsLongMax: offsetText === LONG_MAX_TEXT,
    maxSize,
    opaque: command.opaque,
  };
  return { get, waitMs: Math.min(waitMs, FETCH_WAIT_MS_MAX) };
}

export interface BrokerCommandsOptions {
  /** Extra `stats` items other parts contribute (`cluster`...). */
  readonly statsItems: () => StatsItems;
  /** Each partition's leader's client address, in a cluster. */
  readonly leaders?: (topic: string, partitions: number) => Record<string, string>;
}

export function brokerCommands(broker: Broker, options: BrokerCommandsOptions): CommandTable {
  // A read of a partition the topic does not have is answered here (never opens a copy).
  const holder = (command: { topic: string; partition: number }): Home => {
    const count = broker.topicSettings(command.topic)?.numPartitions ?? 0;
    if (command.partition < 0 || command.partition >= count) return HERE;
    return { kind: "holder", topic: command.topic, partition: command.partition };
  };
  return {
    put: {
      home(command: PutCommand): Home {
        const partition = broker.putPartition(command);
        if (partition === undefined) return HERE; // refused by its checks: answered here
        const resolved = partition === command.partition ? command : { ...command, partition };
        return { kind: "leader", topic: command.topic, partition, command: resolved };
      },
      forward: (command: PutCommand) => forwardedPut(broker, command),
      handle: (command: PutCommand, context: RequestContext, respond: Respond) =>
        broker.put(command, context, respond),
    },
    [`ext:${FORWARDED_PUT_VERB}`]: {
      spec: { args: 9, bodyLengthArg: 8 },
      nodesOnly: true,
      home(command: ExtensionCommand): Home {
        const put = parseForwardedPut(command);
        if (!put) return HERE;
        return { kind: "leader", topic: put.command.topic, partition: put.command.partition };
      },
      handle(command: ExtensionCommand, context: RequestContext, respond: Respond) {
        if (context.originNode === undefined) {
          const detail = `${FORWARDED_PUT_VERB} is sent between cluster nodes only`;
          return respond(errorReply(new BrokerError("forbidden", detail)));
        }
        const put = parseForwardedPut(command);
        if (!put) {
          const detail = `bad ${FORWARDED_PUT_VERB} arguments: ${command.args.join(" ")}`;
          return respond(errorReply(new BrokerError("badRequest", detail)));
        }
        broker.put(put.command, context, respond, put.once);
      },
    },
    [`ext:${BATCH_PUT_VERB}`]: {
      spec: { args: 4, bodyLengthArg: 3, bodyBytesMax: BATCH_PUT_BYTES_MAX },
      home(command: ExtensionCommand): Home {
        const batch = parseBatchPut(command);
        if (!batch) return HERE;
        const asPut = { kind: "put", ...batch, flag: 0, checksum: -1, body: EMPTY } as const;
        const partition = broker.putPartition(asPut);
        if (partition === undefined) return HERE; // refused by its checks: answered here
        const resolved = partition === batch.partition
          ? command
          : { ...command, args: [batch.topic, String(partition), ...command.args.slice(2)] };
        return { kind: "leader", topic: batch.topic, partition, command: resolved };
      },
      handle(command: ExtensionCommand, _context: RequestContext, respond: Respond) {
        const batch = parseBatchPut(command);
        if (!batch) {
          const detail = `bad ${BATCH_PUT_VERB} arguments: ${command.args.join(" ")} (expected ` +
            `topic, partition, a record count from 1 to ${BATCH_PUT_RECORDS_MAX}, body length)`;
          return respond(errorReply(new BrokerError("badRequest", detail)));
        }
        broker.putBatch(batch, respond);
      },
    },
    get: {
      home: holder,
      handle: (command: GetCommand, context: RequestContext, respond: Respond) =>
        broker.get(command, respond, 0, context.sendsFromFiles === true),
    },
    [`ext:${FETCH_VERB}`]: {
      spec: { args: 6 },
      home(command: ExtensionCommand): Home {
        const fetch = parseFetch(command);
        return fetch ? holder(fetch.get) : HERE;
      },
      handle(command: ExtensionCommand, context: RequestContext, respond: Respond) {
        const fetch = parseFetch(command);
        if (!fetch) {
          const detail = `bad ${FETCH_VERB} arguments: ${command.args.join(" ")} (expected ` +
            "topic, group, partition, offset, maxSize, waitMs)";
          return respond(errorReply(new BrokerError("badRequest", detail)));
        }
        broker.get(fetch.get, respond, fetch.waitMs, context.sendsFromFiles === true);
      },
    },
    offset: {
      home: holder,
      handle: (command: OffsetCommand, _context: RequestContext, respond: Respond) =>
        respond(broker.offset(command)),
    },
    stats: {
      handle: (command: StatsCommand, _context: RequestContext, respond: Respond) =>
        respond(broker.statsReply(command.item, options.statsItems())),
    },
    version: {
      handle: (_command: never, _context: RequestContext, respond: Respond) =>
        respond(broker.version()),
    },
    sync: {
      handle: (command: SyncCommand, _context: RequestContext, respond: Respond) =>
        respond(broker.sync(command)),
    },
    "ext:meta": {
      spec: { args: 1 },
      handle(command: ExtensionCommand, _context: RequestContext, respond: Respond) {
        const topic = command.args[0];
        const settings = broker.topicSettings(topic);
        const refusal = broker.topicRefusal(topic);
        if (!settings || refusal) {
          return respond(errorReply(BrokerError.verbatim("topicNotAccepted", refusal ?? "")));
        }
        const leaders = options.leaders?.(topic, settings.numPartitions);
        const metadata: TopicMetadata = {
          topic,
          partitions: settings.numPartitions,
          exists: broker.topicExists(topic) || Object.keys(leaders ?? {}).length > 0,
          brokerId: broker.config.system.brokerId,
          broker: broker.brokerUrl.replace("meta://", ""),
          leaders,
        };
        respond(result(200, JSON.stringify(metadata)));
      },
    },
    // `figures <topic>`: figures of the topic's partitions whose logs are open on this node
    // (`metaq topics describe` asks each partition's leader).
    "ext:figures": {
      spec: { args: 1 },
      handle(command: ExtensionCommand, _context: RequestContext, respond: Respond) {
        const topic = command.args[0];
        const settings = broker.topicSettings(topic);
        if (!settings || isInternalTopic(topic)) {
          return respond(errorReply(BrokerError.verbatim("topicNotAccepted", "")));
        }
        const partitions: PartitionInfo[] = [];
        for (let partition = 0; partition < settings.numPartitions; partition++) {
          const log = broker.logs.get(topic, partition);
          if (!log) continue;
          const facts = log.facts();
          partitions.push({
            partition,
            startOffset: log.startOffset,
            endOffset: log.endOffset,
            messages: facts.messages,
            bytes: facts.bytes,
            segments: facts.segments,
          });
        }
        respond(result(200, JSON.stringify({ topic, partitions })));
      },
    },
  };
}

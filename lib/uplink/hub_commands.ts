/**
 * @module The hub's side of an uplink: the `uput` verb, which every broker serves (any metaq
 * broker or cluster can be a hub; it needs no configuration beyond a user allowed to produce the
 * topics). An edge sends a partition's messages in source order as whole MetaQ records, each
 * with its origin in the attribute and the id computed from that origin
 * (lib/protocol/uplink_origin.ts):
 *
 * ```text
 * uput <topic> <partition> <since> <length> <opaque>\r\n<records>
 *   -> result 200 <offset> <end> <maxBatchBytes> <maxMessageSize>
 * ```
 *
 * The partition's leader appends, in one piece, the records whose ids are not already in the
 * partition at or after offset `since`, and answers once all of them are readable, with the
 * offset of the batch's first record, the partition's readable end then, the largest batch it
 * takes (`length` above it ends the connection, as any frame over a limit does) and the largest
 * message data (origin included) it accepts. The edge sends one batch at a time, in source
 * order, so any earlier landing of its next batch lies after this batch's first record: that
 * offset is the next `since`, and a batch sent again after a lost reply, a cut link or an edge
 * crash is looked for from there and lands once. An empty body appends nothing and answers
 * the end twice (where a fresh edge starts looking).
 *
 * Not here: the edge's reading and forwarding (uplink_part.ts). The origin attribute is
 * checked for its prefix only; its meaning is the edge's.
 */
import { metaqChecksum } from "../crc32.ts";
import { BrokerError, describeError } from "../errors.ts";
import {
  RECORD_DATA_BYTES_MAX,
  RECORD_HEADER_BYTES,
  UPLINK_BATCH_BYTES_MAX,
  UPLINK_RECORD_OVERHEAD_BYTES,
} from "../limits.ts";
import type { ExtensionCommand } from "../protocol/commands.ts";
import { type CommandTable, HERE, type Home } from "../protocol/command_table.ts";
import { FLAG_HAS_ATTRIBUTE, walkRecords } from "../protocol/record.ts";
import { errorReply, type RequestContext, type Respond, result } from "../protocol/reply.ts";
import { ORIGIN_PREFIX } from "../protocol/uplink_origin.ts";
import type { Log } from "../store/log.ts";
import type { Broker } from "../broker/broker.ts";

export const UPLINK_PUT_VERB = "uput";

const ORIGIN_PREFIX_BYTES = new TextEncoder().encode(ORIGIN_PREFIX);

interface UplinkPut {
  readonly topic: string;
  readonly partition: number;
  readonly since: number;
}

/** The request's topic, partition and `since`; undefined when they are not numbers. */
export function parseUplinkPut(command: ExtensionCommand): UplinkPut | undefined {
  const [topic, partitionText, sinceText] = command.args;
  const partition = Number(partitionText);
  const since = Number(sinceText);
  if (!/^\d{1,10}$/.test(partitionText) || !/^\d{1,16}$/.test(sinceText)) return undefined;
  if (!Number.isSafeInteger(partition) || !Number.isSafeInteger(since)) return undefined;
  return { topic, partition, since };
}

/** The largest `uput` body a hub whose messages are at most `maxMessageSize` takes. */
export function uplinkBatchBytesMax(maxMessageSize: number): number {
  return Math.max(UPLINK_BATCH_BYTES_MAX, maxMessageSize + UPLINK_RECORD_OVERHEAD_BYTES);
}

export function uplinkHubCommands(broker: Broker): CommandTable {
  const batchBytesMax = uplinkBatchBytesMax(broker.config.system.maxMessageSize);
  return {
    [`ext:${UPLINK_PUT_VERB}`]: {
      spec: { args: 4, bodyLengthArg: 3, bodyBytesMax: batchBytesMax },
      home(command: ExtensionCommand): Home {
        const put = parseUplinkPut(command);
        if (!put || broker.topicRefusal(put.topic) || !inRange(broker, put)) return HERE;
        return { kind: "leader", topic: put.topic, partition: put.partition };
      },
      // Sent again to a new leader, the batch is still appended once: it is looked for first.
      forward: (command: ExtensionCommand) => ({ command, again: () => command }),
      handle: (command: ExtensionCommand, _context: RequestContext, respond: Respond) =>
        serveUplinkPut(broker, command, respond, batchBytesMax),
    },
  };
}

function serveUplinkPut(
  broker: Broker,
  command: ExtensionCommand,
  respond: Respond,
  batchBytesMax: number,
): void {
  const refuse = (error: BrokerError) => {
    broker.stats.counters.putFailed += 1;
    respond(errorReply(error));
  };
  broker.stats.counters.cmdPut += 1;
  const put = parseUplinkPut(command);
  if (!put) {
    const detail = `bad ${UPLINK_PUT_VERB} arguments: ${command.args.join(" ").slice(0, 200)}`;
    return refuse(new BrokerError("badRequest", detail));
  }
  const { topic, partition } = put;
  const refusal = broker.topicRefusal(topic);
  if (refusal) return refuse(BrokerError.verbatim("topicNotAccepted", refusal));
  const settings = broker.topicSettings(topic)!;
  if (!inRange(broker, put)) {
    const detail = `wrong partition ${partition}: topic ${topic} has ${settings.numPartitions}`;
    return refuse(new BrokerError("wrongPartition", detail));
  }
  if (broker.closedPartitions.has(`${topic}-${partition}`)) {
    return refuse(new BrokerError("partitionClosed", `${topic}-${partition}`));
  }
  const maxBytes = broker.config.system.maxMessageSize;
  const checked = checkBatch(command.body, maxBytes);
  if (typeof checked === "string") return refuse(new BrokerError("badRequest", checked));
  const append = (log: Log) => {
    const reply = (offset: number) =>
      respond(result(200, `${offset} ${log.endOffset} ${batchBytesMax} ${maxBytes}`));
    if (checked.records === 0) return reply(log.endOffset);
    log.appendMissing(command.body, put.since, (outcome) => {
      if (!outcome.ok) return refuse(outcome.error);
      broker.stats.counters.putBytes += checked.dataBytes;
      reply(outcome.offset);
    });
  };
  const log = broker.logs.get(topic, partition);
  if (log) return append(log);
  const damaged = broker.logs.failure(topic, partition);
  if (damaged) return refuse(new BrokerError("corruption", describeError(damaged)));
  broker.logs.open(topic, partition).then(append, (error) => {
    refuse(
      error instanceof BrokerError ? error : new BrokerError("storageFailed", describeError(error)),
    );
  });
}

function inRange(broker: Broker, put: UplinkPut): boolean {
  const count = broker.topicSettings(put.topic)?.numPartitions ?? 0;
  return put.partition < count;
}

/**
 * Why `body` is not a batch an uplink may send, or its record count and data bytes: whole
 * records, each with a valid checksum, data no longer than the hub's message limit, an id in
 * the origin range (negative) and an attribute that starts with the origin prefix.
 */
export function checkBatch(
  body: Uint8Array,
  maxDataBytes: number,
): { records: number; dataBytes: number } | string {
  let problem: string | undefined;
  let dataBytes = 0;
  let walk;
  try {
    walk = walkRecords(body, RECORD_DATA_BYTES_MAX, (position, length) => {
      problem = recordProblem(body, position, length, maxDataBytes);
      dataBytes += length;
      return problem === undefined;
    });
  } catch (error) {
    return `Cannot read the batch: ${describeError(error)}`;
  }
  if (problem) return problem;
  if (walk.bytes !== body.length) return "Cannot read the batch: it is not whole records";
  return { records: walk.records, dataBytes };
}

function recordProblem(
  body: Uint8Array,
  position: number,
  length: number,
  maxDataBytes: number,
): string | undefined {
  const where = `record at byte ${position} of the batch`;
  if (length > maxDataBytes) {
    return `Cannot accept the ${where}: its ${length} bytes exceed maxMessageSize ${maxDataBytes}`;
  }
  const view = new DataView(body.buffer, body.byteOffset + position, RECORD_HEADER_BYTES);
  const data = body.subarray(
    position + RECORD_HEADER_BYTES,
    position + RECORD_HEADER_BYTES + length,
  );
  if (metaqChecksum(data) !== view.getInt32(4)) return `Cannot accept the ${where}: bad checksum`;
  if (view.getInt32(8) >= 0) return `Cannot accept the ${where}: its id is not an origin id`;
  if ((view.getInt32(16) & FLAG_HAS_ATTRIBUTE) === 0 || !startsWithOrigin(data)) {
    return `Cannot accept the ${where}: its attribute does not start with ${ORIGIN_PREFIX}`;
  }
  return undefined;
}

/** Whether message data starts with an attribute block whose text starts with the prefix. */
function startsWithOrigin(data: Uint8Array): boolean {
  const prefix = ORIGIN_PREFIX_BYTES;
  if (data.length < 4 + prefix.length) return false;
  const attributeBytes = new DataView(data.buffer, data.byteOffset, 4).getInt32(0);
  if (attributeBytes < prefix.length || 4 + attributeBytes > data.length) return false;
  for (let i = 0; i < prefix.length; i++) if (data[4 + i] !== prefix[i]) return false;
  return true;
}

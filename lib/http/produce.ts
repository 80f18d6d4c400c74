/**
 * @module `POST /v1/topics/:topic/messages`: one message or a batch, as JSON (UTF-8 or base64
 * payloads) or as a raw body (one message, options in the query string). Every message is
 * checked first (name, partition, size, attribute, closed partition), so an invalid request
 * changes nothing; then all are put through the edge (to each partition's leader, in a cluster),
 * which replies after the append is acknowledged, exactly as for a TCP put.
 *
 * A message with `delayMs` (ms, or a duration such as "30s") or `deliverAt` (epoch ms, or an ISO
 * 8601 time with a zone) is sent as a `delay` instead (docs/delayed.md): held by the broker and
 * appended at that time; its result has offset -1 and `deliverAt` (epoch ms).
 *
 * Partition choice: `partition` if given; else `key` routes by CRC-32 of the key modulo the
 * partition count (as the metaq client does); else the broker picks one at random (partition -1,
 * as in MetaQ).
 */
import type { Broker } from "../broker/broker.ts";
import type { TopicSettings } from "../config/config.ts";
import { crc32 } from "../crc32.ts";
import { BrokerError } from "../errors.ts";
import { HTTP_BATCH_MESSAGES_MAX, HTTP_BODY_BYTES_MAX } from "../limits.ts";
import { encodeMessageMeta } from "../protocol/message_meta.ts";
import { FLAG_HAS_ATTRIBUTE, joinAttribute } from "../protocol/record.ts";
import {
  DELAY_VERB,
  type DeliveryTime,
  formatWhen,
  parseDurationMs,
  parseInstantMs,
} from "../protocol/delayed.ts";
import { ask, type Dispatch } from "./wire_reply.ts";
import { decodeBase64 } from "./records.ts";
import {
  describe,
  errorBody,
  isJsonRequest,
  kindForStatus,
  partitionParam,
  readBody,
  readJson,
} from "./respond.ts";

export interface Outgoing {
  /** -1: let the broker pick. */
  readonly partition: number;
  readonly flag: number;
  readonly data: Uint8Array;
  /** Held until then (`delay`) instead of appended at once. */
  readonly when?: DeliveryTime;
}

export type PutResult =
  | {
    readonly partition: number;
    readonly offset: number;
    readonly id: string;
    readonly deliverAt?: number;
  }
  | ReturnType<typeof errorBody>;

const MESSAGE_FIELDS = [
  "payload",
  "encoding",
  "partition",
  "key",
  "headers",
  "attribute",
  "flag",
  "delayMs",
  "deliverAt",
];

/** Reads and checks the request's messages; throws a BrokerError when any is invalid. */
export async function readMessages(
  broker: Broker,
  settings: TopicSettings,
  request: Request,
): Promise<Outgoing[]> {
  const url = new URL(request.url);
  const query = Object.fromEntries(url.searchParams);
  let inputs: unknown[];
  if (isJsonRequest(request)) {
    const body = await readJson(request, HTTP_BODY_BYTES_MAX);
    inputs = isRecord(body) && "messages" in body ? asArray(body.messages) : [body];
  } else {
    const payload = await readBody(request, broker.config.system.maxMessageSize);
    inputs = [{ ...query, payload }];
  }
  if (inputs.length === 0 || inputs.length > HTTP_BATCH_MESSAGES_MAX) {
    throw new BrokerError(
      "badRequest",
      `Cannot produce ${inputs.length} messages: give 1 to ${HTTP_BATCH_MESSAGES_MAX}`,
    );
  }
  return inputs.map((input, index) => outgoing(broker, settings, input, index));
}

/** Puts every message (all in flight at once) and reports each outcome in order. */
export async function putAll(
  dispatch: Dispatch,
  topic: string,
  messages: readonly Outgoing[],
): Promise<PutResult[]> {
  return await Promise.all(messages.map(async (message): Promise<PutResult> => {
    const { partition, flag, data, when } = message;
    const reply = await ask(
      dispatch,
      when
        ? {
          kind: "extension",
          verb: DELAY_VERB,
          args: [
            topic,
            String(partition),
            String(data.length),
            String(flag),
            "-1",
            formatWhen(when),
          ],
          opaque: 0,
          body: data,
        }
        : { kind: "put", topic, partition, flag, checksum: -1, opaque: 0, body: data },
    );
    if (reply.kind === "result" && reply.code === 200) {
      const [id, partition, offset, deliverAt] = reply.text.split(" ");
      const result = { partition: Number(partition), offset: Number(offset), id };
      return when ? { ...result, deliverAt: Number(deliverAt) } : result;
    }
    const code = reply.kind === "result" ? reply.code : 500;
    const text = reply.kind === "result" ? reply.text : "";
    return errorBody(BrokerError.verbatim(kindForStatus(code), text || `status ${code}`));
  }));
}

function outgoing(
  broker: Broker,
  settings: TopicSettings,
  input: unknown,
  index: number,
): Outgoing {
  const where = `message ${index}`;
  if (!isRecord(input)) throw new BrokerError("badRequest", `${where} must be an object`);
  for (const key of Object.keys(input)) {
    if (!MESSAGE_FIELDS.includes(key)) {
      throw new BrokerError(
        "badRequest",
        `${where} has unknown field ${describe(key)} (known: ${MESSAGE_FIELDS.join(", ")})`,
      );
    }
  }
  const payload = payloadBytes(input, where);
  // A key (which also routes) and headers are stored in the attribute, as `metaq produce`
  // stores them (message_meta.ts), so readers get them back as `key` and `headers`.
  const attribute = encodeMessageMeta({
    attribute: optionalString(input.attribute, `${where} attribute`),
    key: optionalString(input.key, `${where} key`),
    headers: headersField(input.headers, where),
  });
  let flag = input.flag === undefined ? 0 : int32Field(input.flag, `${where} flag`);
  if (attribute !== undefined) flag |= FLAG_HAS_ATTRIBUTE;
  else if (flag & FLAG_HAS_ATTRIBUTE) {
    throw new BrokerError(
      "badRequest",
      `${where} sets flag bit 0 (attribute block) but gives no attribute`,
    );
  }
  const data = attribute === undefined ? payload : joinAttribute(attribute, payload);
  const limit = broker.config.system.maxMessageSize;
  if (data.length > limit) {
    throw new BrokerError("messageTooLarge", `${where} has ${data.length} bytes, limit ${limit}`);
  }
  const when = deliveryTime(input, where);
  return { partition: choosePartition(broker, settings, input, where), flag, data, when };
}

/** `headers`: `[{"key", "value"}...]`, the shape reads give them in. */
function headersField(value: unknown, where: string): [string, string][] {
  if (value === undefined) return [];
  const problem = `${where} headers must be an array of {"key", "value"} strings`;
  if (!Array.isArray(value)) throw new BrokerError("badRequest", problem);
  return value.map((header) => {
    if (
      !isRecord(header) || typeof header.key !== "string" || header.key === "" ||
      typeof header.value !== "string" || Object.keys(header).length !== 2
    ) {
      throw new BrokerError("badRequest", problem);
    }
    return [header.key, header.value];
  });
}

/** `delayMs` or `deliverAt` of a message, or undefined for an ordinary put. */
function deliveryTime(input: Record<string, unknown>, where: string): DeliveryTime | undefined {
  const { delayMs, deliverAt } = input;
  if (delayMs !== undefined && deliverAt !== undefined) {
    throw new BrokerError("badRequest", `${where} gives both delayMs and deliverAt; give one`);
  }
  if (delayMs !== undefined) {
    const ms = typeof delayMs === "number"
      ? delayMs
      : typeof delayMs === "string"
      ? parseDurationMs(delayMs)
      : undefined;
    if (ms === undefined || !Number.isSafeInteger(ms) || ms < 0) {
      throw new BrokerError(
        "badRequest",
        `${where} delayMs ${describe(delayMs)}: expected milliseconds or a duration such as 30s`,
      );
    }
    return { delayMs: ms };
  }
  if (deliverAt === undefined) return undefined;
  const atMs = typeof deliverAt === "number"
    ? deliverAt
    : typeof deliverAt === "string"
    ? (/^\d{1,15}$/.test(deliverAt) ? Number(deliverAt) : parseInstantMs(deliverAt))
    : undefined;
  if (atMs === undefined || !Number.isSafeInteger(atMs) || atMs < 0) {
    throw new BrokerError(
      "badRequest",
      `${where} deliverAt ${
        describe(deliverAt)
      }: expected epoch ms or an ISO 8601 time with a zone`,
    );
  }
  return { deliverAtMs: atMs };
}

function choosePartition(
  broker: Broker,
  settings: TopicSettings,
  input: Record<string, unknown>,
  where: string,
): number {
  const key = optionalString(input.key, `${where} key`);
  const explicit = input.partition !== undefined && input.partition !== "";
  if (explicit && key !== undefined) {
    throw new BrokerError("badRequest", `${where} gives both partition and key; give one`);
  }
  const partition = explicit
    ? partitionParam(input.partition)
    : key === undefined
    ? -1
    : crc32(new TextEncoder().encode(key)) % settings.numPartitions;
  if (partition >= settings.numPartitions) {
    throw new BrokerError(
      "wrongPartition",
      `${where}: partition ${partition} of topic ${settings.topic} (it has ${settings.numPartitions})`,
    );
  }
  if (broker.closedPartitions.has(`${settings.topic}-${partition}`)) {
    throw new BrokerError("partitionClosed", `${settings.topic}-${partition}`);
  }
  return partition;
}

function payloadBytes(input: Record<string, unknown>, where: string): Uint8Array {
  const { payload, encoding } = input;
  if (payload instanceof Uint8Array) return payload;
  if (typeof payload !== "string") {
    throw new BrokerError("badRequest", `${where} needs a payload string`);
  }
  if (encoding === undefined || encoding === "utf8") return new TextEncoder().encode(payload);
  if (encoding === "base64") return decodeBase64(payload, `${where} payload`);
  throw new BrokerError(
    "badRequest",
    `${where} has encoding ${describe(encoding)}: expected utf8 or base64`,
  );
}

function optionalString(value: unknown, what: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string") throw new BrokerError("badRequest", `${what} must be a string`);
  return value;
}

function int32Field(value: unknown, what: string): number {
  const number = typeof value === "string" && /^-?\d{1,10}$/.test(value) ? Number(value) : value;
  if (
    typeof number !== "number" || !Number.isInteger(number) || number < -(2 ** 31) ||
    number >= 2 ** 31
  ) {
    throw new BrokerError("badRequest", `${what} ${describe(value)} is not a 32-bit integer`);
  }
  return number;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function asArray(value: unknown): unknown[] {
  if (!Array.isArray(value)) throw new BrokerError("badRequest", "messages must be an array");
  return value;
}

/**
 * @module Delayed and scheduled messages on the wire: the extension verbs, how a delivery time
 * is written, and the attribute a delivered message carries. Pure: shared by the broker
 * (lib/broker/delayed), the TypeScript client and the CLI.
 *
 * ```text
 * delay <topic> <partition> <length> <flag> <checksum> <when> <opaque>\r\n<body>
 *   -> result 200 <id> <partition> -1 <deliverAtMs>
 * delayed cancel <id> <opaque>        -> result 200 <id>   (404 not pending, 409 being delivered)
 * delayed status - <opaque>           -> result 200 <JSON status>
 * cron list - 0 <opaque>              -> result 200 <JSON array of ScheduleListing>
 * cron add <name> <length> <opaque>\r\n<JSON ScheduleSpec without name>   -> result 200 <name>
 * cron pause|resume|rm <name> 0 <opaque>                               -> result 200 <name>
 *
 * when      = "+" delayMs | deliverAtMs        (decimal milliseconds; deliverAt since the epoch)
 * attribute = "metaq-scheduled:" scheduledAtMs "/" id [ "/" schedule ] [ ";" original-attribute ]
 * ```
 *
 * `delay` is a put (same argument order, the delivery time last) whose record is held by the
 * broker until its delivery time; its body, flag and checksum are a put's. A relative `when` is resolved by the broker that accepts the message.
 * Once delivered, the message is an ordinary record of its partition with the id the `delay`
 * reply gave, and an attribute that says when it was due (`scheduledAt`), its id, the schedule
 * that made it (for a cron schedule's message) and, after `;`, the attribute its producer gave.
 * MetaQ's decoder dispatches on `p g t r v s o q`; these verbs start with other letters, so no
 * MetaQ client sends one by accident, and a MetaQ broker closes a connection that sends one
 * rather than delivering the message early.
 */

export const DELAY_VERB = "delay";
export const DELAYED_VERB = "delayed";
export const CRON_VERB = "cron";

/** The first characters of a delivered delayed message's attribute. */
export const SCHEDULED_PREFIX = "metaq-scheduled:";

/** Longest delay any configuration allows (and the default largest): 400 days. */
export const DELAY_MS_LIMIT_MAX = 400 * 24 * 3600 * 1000;

/** A schedule's name: letters, digits, `_ . -`, up to 64 characters. */
export const SCHEDULE_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$/;

/** When a message is due, as a producer gives it. */
export type DeliveryTime =
  | { readonly delayMs: number }
  | { readonly deliverAtMs: number };

/**
 * Milliseconds in a duration such as `500ms`, `30s`, `15m`, `2h`, `40d` (or a plain number of
 * ms); undefined when `text` is not one. For the CLI and HTTP.
 */
export function parseDurationMs(text: string): number | undefined {
  const match = /^(\d{1,12})(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] ?? "ms"]!;
  const value = Number(match[1]) * unit;
  return Number.isSafeInteger(value) ? value : undefined;
}

/**
 * Epoch ms of an ISO 8601 time with a zone (`2026-12-24T09:00:00Z`, `...+01:00`); undefined
 * when `text` is not one (a time without a zone is ambiguous, so refused).
 */
export function parseInstantMs(text: string): number | undefined {
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d{1,9})?)?(Z|[+-]\d\d:\d\d)$/.test(text.trim())) {
    return undefined;
  }
  const ms = Date.parse(text.trim());
  return Number.isFinite(ms) ? ms : undefined;
}

/** The `<when>` token of a `delay` command. */
export function formatWhen(when: DeliveryTime): string {
  return "delayMs" in when ? `+${when.delayMs}` : String(when.deliverAtMs);
}

/**
 * The delivery time a `<when>` token names, resolved against `nowMs` (the accepting broker's
 * wall clock); undefined when it is not `+<ms>` or `<ms>` (decimal, at most 15 digits).
 */
export function parseWhen(text: string, nowMs: number): number | undefined {
  const match = /^(\+?)(\d{1,15})$/.exec(text);
  if (!match) return undefined;
  const value = Number(match[2]);
  return match[1] === "+" ? nowMs + value : value;
}

export interface Scheduled {
  /** When the message was due, in milliseconds since the epoch. */
  readonly scheduledAtMs: number;
  /** Its message id (the id the `delay` reply gave). */
  readonly id: bigint;
  /** The cron schedule that published it, if one did. */
  readonly schedule?: string;
}

/** The attribute of a delivered message: its schedule facts, then the producer's attribute. */
export function scheduledAttribute(scheduled: Scheduled, attribute?: string): string {
  const schedule = scheduled.schedule === undefined ? "" : `/${scheduled.schedule}`;
  const text = `${SCHEDULED_PREFIX}${scheduled.scheduledAtMs}/${scheduled.id}${schedule}`;
  return attribute === undefined ? text : `${text};${attribute}`;
}

const SCHEDULED_PATTERN =
  /^metaq-scheduled:(\d{1,15})\/(-?\d{1,20})(?:\/([A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}))?(;[\s\S]*)?$/;

/**
 * The schedule facts and the producer's attribute in a delivered message's attribute;
 * undefined when the attribute is not one a delayed delivery wrote.
 */
export function parseScheduledAttribute(
  attribute: string,
): { scheduled: Scheduled; attribute?: string } | undefined {
  const match = SCHEDULED_PATTERN.exec(attribute);
  if (!match) return undefined;
  const [, at, idText, schedule, rest] = match;
  const id = BigInt(idText);
  if (id !== BigInt.asIntN(64, id)) return undefined;
  const scheduled: Scheduled = schedule === undefined
    ? { scheduledAtMs: Number(at), id }
    : { scheduledAtMs: Number(at), id, schedule };
  return rest === undefined ? { scheduled } : { scheduled, attribute: rest.slice(1) };
}

/** Bytes the scheduled attribute adds to a message's data at most (prefix, numbers, name). */
export const SCHEDULED_ATTRIBUTE_BYTES_MAX = 4 + SCHEDULED_PREFIX.length + 15 + 1 + 20 + 1 + 64 +
  1;

/** What a `cron add` body says: the schedule and the message it publishes. */
export interface ScheduleSpec {
  readonly name: string;
  /** Quartz cron: second minute hour day-of-month month day-of-week [year], local time. */
  readonly cron: string;
  readonly topic: string;
  /** -1: a random partition for each message. */
  readonly partition: number;
  readonly payload: Uint8Array;
  readonly attribute?: string;
  readonly flag?: number;
  /** Added paused: it publishes nothing until resumed. */
  readonly paused?: boolean;
}

/** A schedule as `cron list` shows it. */
export interface ScheduleListing {
  readonly name: string;
  readonly cron: string;
  readonly topic: string;
  readonly partition: number;
  readonly paused: boolean;
  readonly payloadBytes: number;
  readonly attribute?: string;
  /** When it publishes next (ms since the epoch), unless paused or never again. */
  readonly nextAtMs?: number;
  /** The last occurrence queued for publication, if any. */
  readonly lastAtMs?: number;
  readonly createdAtMs: number;
}

/** The body of `cron add`: JSON, with the payload in base64. */
export function encodeScheduleSpec(spec: Omit<ScheduleSpec, "name">): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({
    cron: spec.cron,
    topic: spec.topic,
    partition: spec.partition,
    payload: base64Of(spec.payload),
    attribute: spec.attribute,
    flag: spec.flag,
    paused: spec.paused,
  }));
}

/** Reads a `cron add` body; throws an Error naming the first problem. */
export function decodeScheduleSpec(name: string, body: Uint8Array): ScheduleSpec {
  let input: unknown;
  try {
    input = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch (error) {
    throw new Error(`Cannot read schedule ${name}: the body is not JSON (${String(error)})`);
  }
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new Error(`Cannot read schedule ${name}: the body is not a JSON object`);
  }
  const fields = input as Record<string, unknown>;
  const known = ["cron", "topic", "partition", "payload", "attribute", "flag", "paused"];
  const unknown = Object.keys(fields).find((key) => !known.includes(key));
  if (unknown) throw new Error(`Cannot read schedule ${name}: unknown field '${unknown}'`);
  const text = (key: string) => {
    const value = fields[key];
    if (typeof value !== "string") {
      throw new Error(`Cannot read schedule ${name}: ${key} must be a string`);
    }
    return value;
  };
  const integer = (key: string, fallback: number) => {
    const value = fields[key] ?? fallback;
    if (typeof value !== "number" || !Number.isInteger(value) || Math.abs(value) >= 2 ** 31) {
      throw new Error(`Cannot read schedule ${name}: ${key} must be a 32-bit integer`);
    }
    return value;
  };
  const payload = fromBase64(text("payload"));
  if (payload === undefined) throw new Error(`Cannot read schedule ${name}: payload is not base64`);
  const attribute = fields.attribute === undefined ? undefined : text("attribute");
  const paused = fields.paused ?? false;
  if (typeof paused !== "boolean") {
    throw new Error(`Cannot read schedule ${name}: paused must be true or false`);
  }
  return {
    name,
    cron: text("cron"),
    topic: text("topic"),
    partition: integer("partition", -1),
    payload,
    attribute,
    flag: integer("flag", 0),
    paused,
  };
}

function base64Of(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function fromBase64(text: string): Uint8Array | undefined {
  try {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  } catch {
    return undefined;
  }
}

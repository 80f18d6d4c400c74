/**
 * @module The records of the delayed-messages log `__delay-0` (a StateLog: MetaQ records,
 * replicated like any partition in a cluster). Each record's data is a type byte, a version
 * byte and a big-endian body (../tx/fields.ts).
 *
 * ```text
 * type  record      body
 * 1     message     i64 id, u64 deliverAt, str topic, i32 partition, i32 flag, str schedule,
 *                   u32 length, data          a message held until deliverAt (schedule: the cron
 *                                             schedule that made it, "" for a producer's)
 * 2     firing      u64 fireAt, u64 since, str topic, i32 partition, u32 n × i64 id
 *                                             these messages go to topic-partition, in this
 *                                             order, at or after fireAt; they land at or after
 *                                             `since` in the partition
 * 3     fired       u64 firing offset         that firing's messages are durable in their partition
 * 4     cancel      i64 id                    a pending message is dropped
 * 5     schedule    str name, str cron, str topic, i32 partition, i32 flag, u8 paused,
 *                   u64 createdAt, u64 lastAt (0: none), u32 length, data
 *                                             a cron schedule as it is now (add, pause, resume)
 * 6     unschedule  str name                  a schedule is removed
 * ```
 *
 * Times are wall-clock milliseconds since the epoch. A message record written again with the
 * same id (the writer moves a live record forward so the log's front can be dropped) replaces
 * where the message lives; the same goes for a schedule's record. Nothing here is a snapshot:
 * what is live is always a record in the log (delay_state.ts says which).
 */
import { FieldReader, FieldWriter } from "../tx/fields.ts";

export const DELAY_RECORD_VERSION = 1;

export interface DelayedMessage {
  readonly id: bigint;
  readonly deliverAtMs: number;
  readonly topic: string;
  readonly partition: number;
  readonly flag: number;
  /** The cron schedule that made it; "" for a producer's message. */
  readonly schedule: string;
  /** The put's body as the producer sent it (attribute block included when flag bit 0 is set). */
  readonly data: Uint8Array;
}

export interface Firing {
  readonly fireAtMs: number;
  readonly since: number;
  readonly topic: string;
  readonly partition: number;
  readonly ids: readonly bigint[];
}

export interface ScheduleRecord {
  readonly name: string;
  readonly cron: string;
  readonly topic: string;
  /** -1: a random partition for each message. */
  readonly partition: number;
  readonly flag: number;
  readonly paused: boolean;
  readonly createdAtMs: number;
  /** The last occurrence queued (0: none yet). */
  readonly lastAtMs: number;
  readonly data: Uint8Array;
}

export type DelayRecord =
  | ({ readonly type: "message" } & DelayedMessage)
  | ({ readonly type: "firing" } & Firing)
  | { readonly type: "fired"; readonly firing: number }
  | { readonly type: "cancel"; readonly id: bigint }
  | ({ readonly type: "schedule" } & ScheduleRecord)
  | { readonly type: "unschedule"; readonly name: string };

const CODES = {
  message: 1,
  firing: 2,
  fired: 3,
  cancel: 4,
  schedule: 5,
  unschedule: 6,
} as const satisfies Record<DelayRecord["type"], number>;
const NAMES = Object.fromEntries(
  Object.entries(CODES).map(([name, code]) => [code, name]),
) as Record<number, DelayRecord["type"]>;

export function encodeDelayRecord(record: DelayRecord): Uint8Array {
  const out = new FieldWriter();
  out.u8(CODES[record.type]).u8(DELAY_RECORD_VERSION);
  switch (record.type) {
    case "message":
      out.i64(record.id).u64(record.deliverAtMs).str(record.topic).i32(record.partition);
      out.i32(record.flag).str(record.schedule).u32(record.data.length).bytes(record.data);
      break;
    case "firing":
      out.u64(record.fireAtMs).u64(record.since).str(record.topic).i32(record.partition);
      out.u32(record.ids.length);
      for (const id of record.ids) out.i64(id);
      break;
    case "fired":
      out.u64(record.firing);
      break;
    case "cancel":
      out.i64(record.id);
      break;
    case "schedule":
      out.str(record.name).str(record.cron).str(record.topic).i32(record.partition);
      out.i32(record.flag).u8(record.paused ? 1 : 0).u64(record.createdAtMs).u64(record.lastAtMs);
      out.u32(record.data.length).bytes(record.data);
      break;
    case "unschedule":
      out.str(record.name);
      break;
  }
  return out.finish();
}

/**
 * Decodes one record's data; throws on an unknown type or version and on a damaged body. The
 * `data` of a message or schedule is a view into `bytes` (callers that keep it copy it).
 */
export function decodeDelayRecord(bytes: Uint8Array): DelayRecord {
  const input = new FieldReader(bytes);
  const type = NAMES[input.u8()];
  if (type === undefined) throw new Error(`Cannot decode delay record: unknown type ${bytes[0]}`);
  const version = input.u8();
  if (version !== DELAY_RECORD_VERSION) {
    throw new Error(`Cannot decode delay record: unknown version ${version}`);
  }
  const record = decodeBody(type, input);
  input.expectEnd();
  return record;
}

function decodeBody(type: DelayRecord["type"], input: FieldReader): DelayRecord {
  switch (type) {
    case "message": {
      const id = input.i64();
      const deliverAtMs = input.u64();
      const topic = input.str();
      const partition = input.i32();
      const flag = input.i32();
      const schedule = input.str();
      const data = input.view(input.u32());
      return { type, id, deliverAtMs, topic, partition, flag, schedule, data };
    }
    case "firing": {
      const fireAtMs = input.u64();
      const since = input.u64();
      const topic = input.str();
      const partition = input.i32();
      const count = input.u32();
      const ids: bigint[] = [];
      for (let i = 0; i < count; i++) ids.push(input.i64());
      return { type, fireAtMs, since, topic, partition, ids };
    }
    case "fired":
      return { type, firing: input.u64() };
    case "cancel":
      return { type, id: input.i64() };
    case "schedule": {
      const name = input.str();
      const cron = input.str();
      const topic = input.str();
      const partition = input.i32();
      const flag = input.i32();
      const paused = input.u8() === 1;
      const createdAtMs = input.u64();
      const lastAtMs = input.u64();
      const data = input.view(input.u32());
      return { type, name, cron, topic, partition, flag, paused, createdAtMs, lastAtMs, data };
    }
    case "unschedule":
      return { type, name: input.str() };
  }
}

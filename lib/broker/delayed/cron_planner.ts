/**
 * @module CronPlanner: runs beside the DelayFirer on the node that writes `__delay-0` and turns
 * each occurrence of a cron schedule into a delayed message, written up to PLAN_AHEAD_MS before
 * its time; from there the message is delivered as any delayed message is (exactly once, at its
 * time, failover included).
 *
 * An occurrence is planned once: the message record names its schedule, and applying it moves
 * the schedule's `lastAt` to the occurrence (DelayState), so the next occurrence is the first
 * one strictly after it. The schedule's record is then written again with that `lastAt`, so it
 * survives the message record being compacted away once delivered. A writer that dies between
 * the two records leaves `lastAt` in the message record: still planned once.
 *
 * Occurrences missed while no node could plan (the broker was down, a failover) are published
 * late, each once, when missed by up to a minute (Quartz's misfire threshold); of those missed
 * by longer only the latest is published (Quartz's "fire once now"). Resuming a paused schedule
 * starts from the moment of the resume, so nothing missed while paused is published.
 */
import type { Clock } from "../../clock.ts";
import { type CronSchedule, nextFireMs, parseCron } from "../../config/cron.ts";
import { describeError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { MessageIdGenerator } from "../../protocol/message_id.ts";
import { RECORD_HEADER_BYTES } from "../../protocol/record.ts";
import type { StateLog } from "../../store/state_log.ts";
import type { CancelTimer, Timers } from "../../timers.ts";
import { decodeDelayRecord, encodeDelayRecord, type ScheduleRecord } from "./delay_record.ts";
import type { DelayState, ScheduleState } from "./delay_state.ts";

/** Occurrences due this soon are planned (written as delayed messages) now. */
export const PLAN_AHEAD_MS = 1000;
/** How often schedules are looked at. */
const PLAN_EVERY_MS = 250;
/** Occurrences missed by longer than this are not all published (Quartz's misfire threshold). */
export const MISFIRE_THRESHOLD_MS = 60_000;
/** Missed occurrences stepped over at most, looking for the latest one (then it gives up). */
const MISSED_STEPS_MAX = 100_000;

export interface CronPlannerOptions {
  readonly journal: StateLog;
  readonly state: DelayState;
  readonly ids: MessageIdGenerator;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly logger: Logger;
  /** The partition a message of a schedule with partition -1 goes to. */
  readonly pickPartition: (topic: string) => number;
}

export class CronPlanner {
  readonly #options: CronPlannerOptions;
  readonly #planning = new Set<string>();
  /** Parsed expressions by source (schedules are few; a bad one is logged once). */
  readonly #parsed = new Map<string, CronSchedule | undefined>();
  /** Each schedule's next occurrence, for the record and lastAt it was computed from. */
  readonly #next = new Map<string, { key: string; at: number | undefined }>();
  #stop: CancelTimer | undefined;
  #closed = false;

  constructor(options: CronPlannerOptions) {
    this.#options = options;
  }

  start(): void {
    this.#stop = this.#options.timers.every(PLAN_EVERY_MS, () => this.plan());
    this.plan();
  }

  close(): void {
    this.#closed = true;
    this.#stop?.();
  }

  /** Plans every schedule whose next occurrence is due within PLAN_AHEAD_MS. */
  plan(): void {
    if (this.#closed) return;
    const now = this.#options.clock.wallMs();
    for (const schedule of this.#options.state.schedules.values()) {
      if (schedule.paused || this.#planning.has(schedule.name)) continue;
      const at = this.#nextOf(schedule, now);
      if (at === undefined || at > now + PLAN_AHEAD_MS) continue;
      this.#planning.add(schedule.name);
      this.#publish(schedule, at).catch((error) =>
        this.#options.logger.log("warn", "Cannot plan a scheduled message yet", {
          schedule: schedule.name,
          reason: describeError(error),
        })
      ).finally(() => this.#planning.delete(schedule.name));
    }
  }

  /** The occurrence `at` as a delayed message, then the schedule's record with it as lastAt. */
  async #publish(schedule: ScheduleState, at: number): Promise<void> {
    const { journal, state, ids } = this.#options;
    const record = readSchedule(journal, schedule);
    await journal.append(encodeDelayRecord({
      type: "message",
      id: ids.nextId().toBigInt(),
      deliverAtMs: at,
      topic: record.topic,
      partition: record.partition >= 0
        ? record.partition
        : this.#options.pickPartition(record.topic),
      flag: record.flag,
      schedule: record.name,
      data: record.data,
    }));
    const now = state.schedules.get(schedule.name);
    if (!now || now.offset !== schedule.offset) return; // changed or removed meanwhile
    await journal.append(encodeDelayRecord({ type: "schedule", ...record, lastAtMs: at }));
  }

  /** nextOccurrence, computed again only when the schedule moved on (a rare cron is slow). */
  #nextOf(schedule: ScheduleState, nowMs: number): number | undefined {
    const key = `${schedule.offset}/${schedule.lastAtMs}`;
    const cached = this.#next.get(schedule.name);
    if (cached?.key === key && (cached.at === undefined || cached.at > nowMs)) return cached.at;
    const cron = this.#cron(schedule.cron);
    const at = cron && nextOccurrence(cron, schedule, nowMs);
    this.#next.set(schedule.name, { key, at });
    return at;
  }

  #cron(source: string): CronSchedule | undefined {
    if (!this.#parsed.has(source)) {
      try {
        this.#parsed.set(source, parseCron(source));
      } catch (error) {
        this.#parsed.set(source, undefined);
        this.#options.logger.log("error", "Cannot plan a schedule: its cron does not parse", {
          cron: source,
          reason: describeError(error),
        });
      }
    }
    return this.#parsed.get(source);
  }
}

/**
 * The next occurrence to publish: the first after `lastAt` (or after the schedule was made).
 * Occurrences missed by up to MISFIRE_THRESHOLD_MS are each published, late; of those missed
 * by more, only the latest is.
 */
export function nextOccurrence(
  cron: CronSchedule,
  schedule: Pick<ScheduleState, "lastAtMs" | "createdAtMs">,
  nowMs: number,
): number | undefined {
  let at = nextFireMs(cron, Math.max(schedule.lastAtMs, schedule.createdAtMs - 1));
  const oldest = nowMs - MISFIRE_THRESHOLD_MS;
  if (at === undefined || at > oldest) return at;
  for (let step = 0; step < MISSED_STEPS_MAX; step++) {
    const later = nextFireMs(cron, at);
    if (later === undefined || later > oldest) break;
    at = later;
  }
  return at;
}

/** A schedule's newest record, read back from the log (the state keeps no payloads). */
export function readSchedule(journal: StateLog, schedule: ScheduleState): ScheduleRecord {
  const bytes = new Uint8Array(schedule.length);
  journal.log.readInto(bytes, 0, schedule.offset, schedule.length);
  const record = decodeDelayRecord(bytes.subarray(RECORD_HEADER_BYTES));
  if (record.type !== "schedule" || record.name !== schedule.name) {
    throw new Error(`schedule ${schedule.name} is not where the state says (${schedule.offset})`);
  }
  return { ...record, data: record.data.slice() };
}

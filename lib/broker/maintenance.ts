/**
 * @module Background upkeep of the store: retention when each topic's `deleteWhen` schedule
 * fires, and timed syncs for topics that flush by threshold. One timer, checked every second,
 * so clock steps and topics created later are picked up without rescheduling.
 */
import type { Clock } from "../clock.ts";
import { type CronSchedule, nextFireMs } from "../config/cron.ts";
import { describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { isInternalTopic, type Logs } from "../store/log.ts";
import type { Broker } from "./broker.ts";

/** The segment files' own upkeep: timed syncs of logs that flush by threshold. */
export interface TimedSyncs {
  syncIfDue(): Promise<void>;
}

export interface MaintenanceOptions {
  readonly broker: Broker;
  readonly logs: Logs;
  readonly syncs: TimedSyncs;
  readonly clock: Clock;
  readonly logger: Logger;
  /**
   * How far retention may delete a partition (an edge's uplink: not past what its hub
   * acknowledged); undefined means as far as the policy says.
   */
  readonly retentionFloor?: (topic: string, partition: number) => number | undefined;
}

const CHECK_INTERVAL_MS = 1000;
/** A wall-clock move this much beyond the monotonic clock between two rounds is a jump. */
export const CLOCK_JUMP_STEP_MS = 2_000;
/**
 * Time-based retention waits while the jumps add up to more than this: a clock stepped a week
 * ahead would otherwise delete a week early (T11), and deleting cannot be undone. NTP slewing
 * (under 1 ms per second) never counts as a jump.
 */
export const CLOCK_JUMP_TOLERANCE_MS = 60_000;

export class Maintenance {
  readonly #options: MaintenanceOptions;
  readonly #broker: Broker;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #nextFire = new Map<string, number | undefined>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #running = false;
  /** Wall minus monotonic time at the last round, and the jumps seen since start, in ms. */
  #lastGapMs: number | undefined;
  #jumpedMs = 0;

  constructor(options: MaintenanceOptions) {
    this.#options = options;
    this.#broker = options.broker;
    this.#clock = options.clock;
    this.#logger = options.logger;
  }

  start(): void {
    this.#timer = setInterval(() => void this.tick(), CHECK_INTERVAL_MS);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One round: timed syncs, then retention for topics whose schedule came due. */
  async tick(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      const now = this.#clock.wallMs();
      const trusted = this.#clockTrusted(now);
      await this.#options.syncs.syncIfDue();
      const due = new Set<string>();
      for (const schedule of this.#schedules()) {
        const next = this.#nextFire.get(schedule.source);
        if (next === undefined && !this.#nextFire.has(schedule.source)) {
          this.#nextFire.set(schedule.source, nextFireMs(schedule, now));
        } else if (next !== undefined && next <= now) {
          due.add(schedule.source);
          this.#nextFire.set(schedule.source, nextFireMs(schedule, now));
        }
      }
      if (due.size > 0 && trusted) await this.runRetention((source) => due.has(source));
    } finally {
      this.#running = false;
    }
  }

  /**
   * Applies retention to every user partition whose topic's schedule `isDue` accepts. The
   * broker's own `__` logs are compacted behind their snapshots instead (lib/store/state_log.ts).
   */
  async runRetention(isDue: (scheduleSource: string) => boolean = () => true): Promise<void> {
    for (const { topic, partition, log } of this.#options.logs.list()) {
      if (isInternalTopic(topic)) continue;
      const settings = this.#broker.topicSettings(topic);
      if (!settings || !isDue(settings.deleteWhen.source)) continue;
      const keepFrom = this.#options.retentionFloor?.(topic, partition);
      try {
        await log.applyRetention(settings.deletePolicy, this.#clock.wallMs(), keepFrom);
      } catch (error) {
        this.#logger.log("error", "Cannot apply retention", {
          partition: log.name,
          reason: describeError(error),
        });
      }
    }
  }

  /** Whether the wall clock can be trusted with deletions (no net jump beyond the tolerance). */
  get clockTrusted(): boolean {
    return Math.abs(this.#jumpedMs) <= CLOCK_JUMP_TOLERANCE_MS;
  }

  #clockTrusted(nowMs: number): boolean {
    const gap = nowMs - this.#clock.monotonicMs();
    const step = this.#lastGapMs === undefined ? 0 : gap - this.#lastGapMs;
    this.#lastGapMs = gap;
    if (Math.abs(step) <= CLOCK_JUMP_STEP_MS) return this.clockTrusted;
    const before = this.clockTrusted;
    this.#jumpedMs += step;
    // Schedules computed before the jump would fire early or a week late: compute them again.
    this.#nextFire.clear();
    if (before && !this.clockTrusted) {
      this.#logger.log("warn", "Wall clock jumped: time-based retention waits until it is back", {
        jumpedMs: this.#jumpedMs,
      });
    } else if (!before && this.clockTrusted) {
      this.#logger.log("info", "Wall clock is back: time-based retention resumes", {
        jumpedMs: this.#jumpedMs,
      });
    }
    return this.clockTrusted;
  }

  #schedules(): CronSchedule[] {
    const schedules = new Map<string, CronSchedule>();
    const topics = new Set(this.#options.logs.list().map((entry) => entry.topic));
    for (const topic of topics) {
      const schedule = this.#broker.topicSettings(topic)?.deleteWhen;
      if (schedule) schedules.set(schedule.source, schedule);
    }
    return [...schedules.values()];
  }
}

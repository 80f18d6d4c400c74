/**
 * @module Background upkeep of the store: retention when each topic's `deleteWhen` schedule
 * fires, and timed syncs for topics that flush by threshold. One timer, checked every second,
 * so clock steps and topics created later are picked up without rescheduling.
 */
import type { Clock } from "../clock.ts";
import { type CronSchedule, nextFireMs } from "../config/cron.ts";
import { describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { applyRetention } from "../store/retention.ts";
import type { Broker } from "./broker.ts";

const CHECK_INTERVAL_MS = 1000;

export class Maintenance {
  readonly #broker: Broker;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #nextFire = new Map<string, number | undefined>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #running = false;
  /**
   * Set by the cluster: for a replicated partition, says whether its log may start at an offset
   * (undefined: never compact it, e.g. `__meta`); for other partitions returns `() => true`.
   */
  retentionGuard: (
    topic: string,
    partition: number,
  ) => ((newStartOffset: number) => boolean) | undefined = () => () => true;

  constructor(broker: Broker, clock: Clock, logger: Logger) {
    this.#broker = broker;
    this.#clock = clock;
    this.#logger = logger;
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
      for (const log of this.#broker.store.logs()) {
        await log.syncIfDue().catch((error) =>
          this.#logger.log("error", "Cannot sync partition", {
            partition: log.name,
            reason: describeError(error),
          })
        );
      }
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
      if (due.size > 0) await this.runRetention((source) => due.has(source));
    } finally {
      this.#running = false;
    }
  }

  /** Applies retention to every partition whose topic's schedule `isDue` accepts. */
  async runRetention(isDue: (scheduleSource: string) => boolean = () => true): Promise<void> {
    const broker = this.#broker;
    for (const [topic, partitions] of broker.store.topics()) {
      const settings = broker.topicSettings(topic);
      if (!settings || !isDue(settings.deleteWhen.source)) continue;
      for (const { partition, log } of partitions) {
        const mayStartAt = this.retentionGuard(topic, partition);
        if (!mayStartAt) continue;
        try {
          await applyRetention(log, {
            policy: settings.deletePolicy,
            nowMs: this.#clock.wallMs(),
            storage: broker.store.options.storage,
            logger: this.#logger,
            mayStartAt,
          });
        } catch (error) {
          this.#logger.log("error", "Cannot apply retention", {
            partition: log.name,
            reason: describeError(error),
          });
        }
      }
    }
  }

  #schedules(): CronSchedule[] {
    const schedules = new Map<string, CronSchedule>();
    for (const topic of this.#broker.store.topics().keys()) {
      const schedule = this.#broker.topicSettings(topic)?.deleteWhen;
      if (schedule) schedules.set(schedule.source, schedule);
    }
    return [...schedules.values()];
  }
}

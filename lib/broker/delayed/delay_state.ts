/**
 * @module What `__delay-0` says is pending, applied from its records in order on every node (a
 * StateMachine): the messages waiting for their time (DelayIndex, no payloads), the firings on
 * their way to a partition, and the cron schedules. The writer acts on it (DelayFirer delivers,
 * CronPlanner plans occurrences, delay_mover.ts moves old records forward); a node that becomes
 * the writer after a failover finds the same state here.
 *
 * | last record about a message     | a new writer                                           |
 * |---------------------------------|--------------------------------------------------------|
 * | message                         | delivers it at its time                                |
 * | firing (no fired yet)           | completes it: appends the records its partition lacks  |
 * |                                 | since `since` (Log.appendMissing), exactly once        |
 * | fired, cancel                   | nothing: it is gone                                    |
 *
 * Nothing is snapshotted: whatever is live is a record in the log (a pending message, the
 * newest record of a schedule, a firing not yet fired), so the log may be compacted up to the
 * lowest live record (`liveFloor`). That holds for any start at or below it because the writer
 * never writes a record about a message (firing, cancel, a copy moved forward) that would revive
 * one the log already ended: a copy is written only for a message that is pending and that
 * nothing else is acting on.
 */
import type { StateMachine } from "../../store/state_log.ts";
import { DelayIndex } from "./delay_index.ts";
import { decodeDelayRecord, type Firing, type ScheduleRecord } from "./delay_record.ts";

/** A firing record not yet followed by its `fired`; `ids` are the messages it owns. */
export interface FiringState extends Firing {
  /** Where the firing record lies in the log (its identity), and its bytes. */
  readonly offset: number;
  readonly length: number;
}

/** A schedule as its newest record says, without its payload (read from the log on use). */
export interface ScheduleState extends Omit<ScheduleRecord, "data"> {
  readonly offset: number;
  readonly length: number;
  readonly payloadBytes: number;
}

export interface Target {
  readonly topic: string;
  readonly partition: number;
}

export interface DelayStateOptions {
  /** Called for each message record applied (the writer re-arms its timer). */
  readonly onMessage?: (deliverAtMs: number) => void;
}

export class DelayState implements StateMachine {
  readonly index = new DelayIndex();
  /** Unfinished firings by record offset (a Map keeps them in log order). */
  readonly firings = new Map<number, FiringState>();
  readonly schedules = new Map<string, ScheduleState>();
  readonly #targets: Target[] = [];
  readonly #targetNumbers = new Map<string, number>();
  readonly #options: DelayStateOptions;
  #highestId: bigint | undefined;
  #firingBytes = 0;
  #scheduleBytes = 0;

  constructor(options: DelayStateOptions = {}) {
    this.#options = options;
  }

  /** Highest message id applied, so a new writer's ids stay above it. */
  get highestId(): bigint | undefined {
    return this.#highestId;
  }

  /** Messages waiting for their time (not yet named by a firing). */
  get pendingCount(): number {
    return this.index.size - this.index.firingCount;
  }

  /** Bytes of the live records: what the log must keep. */
  get liveBytes(): number {
    return this.index.bytes + this.#firingBytes + this.#scheduleBytes;
  }

  apply(data: Uint8Array, offset: number, end: number): boolean {
    const record = decodeDelayRecord(data);
    const length = end - offset;
    switch (record.type) {
      case "message": {
        const target = this.targetNumber(record.topic, record.partition);
        this.index.add({ id: record.id, deliverAtMs: record.deliverAtMs, offset, length, target });
        this.#seen(record.id);
        if (record.schedule !== "") this.#queued(record.schedule, record.deliverAtMs);
        this.#options.onMessage?.(record.deliverAtMs);
        break;
      }
      case "firing": {
        // A firing owns the messages still pending when it is applied; one that an earlier
        // firing owns already is not its own (a writer that could not tell whether its firing
        // record landed may name the same messages again): each message has one firing.
        const owned: bigint[] = [];
        for (const id of record.ids) {
          const slot = this.index.find(id);
          if (slot < 0 || !this.index.isPending(slot)) continue;
          this.index.startFiring(slot);
          owned.push(id);
        }
        const { type: _type, ids: _ids, ...firing } = record;
        this.firings.set(offset, { ...firing, ids: owned, offset, length });
        this.#firingBytes += length;
        break;
      }
      case "fired": {
        const firing = this.firings.get(record.firing);
        if (!firing) break;
        for (const id of firing.ids) {
          const slot = this.index.find(id);
          if (slot >= 0 && this.index.isFiring(slot)) this.index.remove(slot);
        }
        this.firings.delete(record.firing);
        this.#firingBytes -= firing.length;
        break;
      }
      case "cancel": {
        const slot = this.index.find(record.id);
        if (slot >= 0 && this.index.isPending(slot)) this.index.remove(slot);
        break;
      }
      case "schedule": {
        const { type: _type, data: payload, ...fields } = record;
        const previous = this.schedules.get(record.name);
        this.#scheduleBytes += length - (previous?.length ?? 0);
        this.schedules.set(record.name, {
          ...fields,
          lastAtMs: Math.max(previous?.lastAtMs ?? 0, record.lastAtMs),
          offset,
          length,
          payloadBytes: payload.length,
        });
        break;
      }
      case "unschedule": {
        const previous = this.schedules.get(record.name);
        if (previous) this.#scheduleBytes -= previous.length;
        this.schedules.delete(record.name);
        break;
      }
    }
    return false;
  }

  /** Never called: this log has no snapshots (the StateLog is given no snapshot interval). */
  snapshot(): Uint8Array {
    throw new Error("the delayed-messages log keeps no snapshots");
  }

  /** The number for a target partition (stable for this state's life). */
  targetNumber(topic: string, partition: number): number {
    const key = `${topic}\u0000${partition}`;
    let number = this.#targetNumbers.get(key);
    if (number === undefined) {
      number = this.#targets.length;
      this.#targets.push({ topic, partition });
      this.#targetNumbers.set(key, number);
    }
    return number;
  }

  target(number: number): Target {
    return this.#targets[number];
  }

  /**
   * The lowest offset of any live record, or undefined when nothing is live: the log may drop
   * every segment that ends at or below it.
   */
  liveFloor(): number | undefined {
    let floor = this.index.lowestOffset() ?? Infinity;
    for (const firing of this.firings.values()) floor = Math.min(floor, firing.offset);
    for (const schedule of this.schedules.values()) floor = Math.min(floor, schedule.offset);
    return floor === Infinity ? undefined : floor;
  }

  #queued(name: string, atMs: number): void {
    const schedule = this.schedules.get(name);
    if (schedule && atMs > schedule.lastAtMs) {
      this.schedules.set(name, { ...schedule, lastAtMs: atMs });
    }
  }

  #seen(id: bigint): void {
    if (this.#highestId === undefined || id > this.#highestId) this.#highestId = id;
  }
}

/**
 * @module DelayFirer: runs on the node that writes `__delay-0` and delivers each held message
 * into its partition at (never before) its delivery time, exactly once. It does not decide
 * what is pending (DelayState does, from the log); it only acts on it.
 *
 * Delivery of one batch, per target partition, batches in order so that a partition gets its
 * messages in delivery-time order:
 *
 * 1. `firing` record, written up to LOOKAHEAD_MS before the batch's first message is due (so
 *    its sync is not part of the lateness): the ids, in (deliverAt, id) order, and `since`, the
 *    partition's readable end as this node knows it (every record of the batch lands after it).
 * 2. As each message falls due (never before), the messages due are appended with
 *    Log.appendMissing through the partition's leader (the `commitbatch` path of transactions):
 *    each record keeps the message id the `delay` reply gave, and only records whose ids the
 *    partition does not hold since `since` are appended.
 * 3. `fired` record: the batch is readable; its messages leave the state.
 *
 * A writer that dies anywhere in between leaves the firing record without its `fired`; the
 * next writer (this node after a restart, another node after a failover) finds it in the
 * state and runs steps 2 and 3 again, which appends only what is missing: exactly once.
 */
import type { Clock } from "../../clock.ts";
import { describeError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import {
  FLAG_HAS_ATTRIBUTE,
  joinAttribute,
  RECORD_HEADER_BYTES,
  splitAttribute,
  writeRecord,
} from "../../protocol/record.ts";
import { scheduledAttribute } from "../../protocol/delayed.ts";
import type { StateLog } from "../../store/state_log.ts";
import type { CancelTimer, Timers } from "../../timers.ts";
import type { PartitionWriter } from "../tx/manager.ts";
import { decodeDelayRecord, type DelayedMessage, encodeDelayRecord } from "./delay_record.ts";
import type { DelayState, FiringState } from "./delay_state.ts";
import type { LatenessStats } from "./lateness.ts";

/** Most messages, and most bytes, one firing delivers. */
export const FIRING_MESSAGES_MAX = 2048;
export const FIRING_BYTES_MAX = 4 * 1024 * 1024;
/**
 * Messages due this soon are taken for a firing ahead of their time, so that the firing record
 * is durable when they fall due. A message accepted less than this before its time may wait
 * for a batch planned before it arrived, so be up to this late.
 */
export const LOOKAHEAD_MS = 100;
/**
 * The timer wakes when the next message is this far from its time, so that each wake takes
 * LOOKAHEAD_MS - WAKE_AHEAD_MS of messages at once (one firing record each, not one a message)
 * and each firing still has WAKE_AHEAD_MS to be synced before its first message is due.
 */
const WAKE_AHEAD_MS = 50;
/** The timer is re-armed at least this often (a wall clock that jumps is noticed). */
const TIMER_MAX_MS = 1000;
/** After a failed delivery, the partition is tried again after this long. */
const RETRY_MS = 500;

export interface DelayFirerOptions {
  readonly journal: StateLog;
  readonly state: DelayState;
  readonly writer: PartitionWriter;
  readonly clock: Clock;
  /** Wakes the firer at delivery times (the clock's time; tests run both faster). */
  readonly timers: Timers;
  readonly logger: Logger;
  readonly lateness: LatenessStats;
  /**
   * TEST ONLY (METAQ_TEST_DELAY_CRASH_AFTER_FIRINGS): after this many firings' batches are
   * appended, `crash` is called before their `fired` record is written.
   */
  readonly crashAfterFirings?: number;
  readonly crash?: () => void;
}

/** A message taken out of the heap for its partition's next firing. */
interface Queued {
  readonly slot: number;
  readonly generation: number;
}

export class DelayFirer {
  readonly #options: DelayFirerOptions;
  readonly #queues = new Map<number, Queued[]>();
  /** Targets with a firing being written or completed now. */
  readonly #busy = new Set<number>();
  /** Firings being completed now, by record offset. */
  readonly #completing = new Set<number>();
  /** Wakes a target's drain that waits for its deliveries when more is queued. */
  readonly #wakers = new Map<number, () => void>();
  #timer: CancelTimer | undefined;
  #timerAt = Infinity;
  #retryAt = 0;
  #closed = false;
  #delivered = 0;
  #appended = 0;

  constructor(options: DelayFirerOptions) {
    this.#options = options;
  }

  /** Messages delivered by this node since it became the writer. */
  get deliveredCount(): number {
    return this.#delivered;
  }

  /** Completes the firings a previous writer left unfinished, then delivers what is due. */
  start(): void {
    this.#tick();
  }

  close(): void {
    this.#closed = true;
    this.#timer?.();
    this.#timer = undefined;
    // Messages queued here and not yet named by a firing go back to waiting for any writer.
    for (const queue of this.#queues.values()) {
      for (const queued of queue) this.#restore(queued);
    }
    this.#queues.clear();
  }

  /** A message record was applied: deliver sooner if it is due before the timer. */
  wake(deliverAtMs: number): void {
    if (this.#closed || deliverAtMs - WAKE_AHEAD_MS >= this.#timerAt) return;
    this.#arm(deliverAtMs - WAKE_AHEAD_MS);
  }

  /**
   * Takes a pending message out of the heap so that no firing names it (a cancel is being
   * written); false when it is already on its way. `release` puts it back.
   */
  hold(slot: number): boolean {
    return this.#options.state.index.hold(slot);
  }

  release(slot: number): void {
    this.#options.state.index.restore(slot);
    this.wake(this.#options.state.index.deliverAtOf(slot));
  }

  /** Completes firings without their `fired` (upkeep calls it after a failure). */
  completeUnfinished(): void {
    if (this.#closed) return;
    const { state } = this.#options;
    for (const firing of state.firings.values()) {
      const target = state.targetNumber(firing.topic, firing.partition);
      if (!this.#busy.has(target)) void this.#drain(target);
    }
  }

  #tick(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    if (this.#closed) return;
    const { index } = this.#options.state;
    const now = this.#options.clock.wallMs();
    if (now >= this.#retryAt) {
      const horizon = now + LOOKAHEAD_MS;
      for (let slot = index.popDue(horizon); slot >= 0; slot = index.popDue(horizon)) {
        const target = index.targetOf(slot);
        let queue = this.#queues.get(target);
        if (!queue) this.#queues.set(target, queue = []);
        queue.push({ slot, generation: index.generationOf(slot) });
      }
      for (const target of this.#queues.keys()) {
        if (!this.#busy.has(target)) void this.#drain(target);
        else this.#wakers.get(target)?.();
      }
      this.completeUnfinished();
    }
    const next = (index.nextDueMs() ?? Infinity) - WAKE_AHEAD_MS;
    this.#arm(Math.min(Math.max(next, this.#retryAt), now + TIMER_MAX_MS));
  }

  #arm(atMs: number): void {
    this.#timer?.();
    this.#timerAt = atMs;
    const delayMs = Math.max(0, Math.min(TIMER_MAX_MS, atMs - this.#options.clock.wallMs()));
    this.#timer = this.#options.timers.after(delayMs, () => this.#tick());
  }

  /**
   * Completes the target's unfinished firings first (a partition gets its messages in order),
   * then plans its queued messages into firings, each completed after the one before it, while
   * anything is queued or being delivered.
   */
  async #drain(target: number): Promise<void> {
    this.#busy.add(target);
    try {
      for (const firing of [...this.#options.state.firings.values()]) {
        const { topic, partition } = firing;
        if (this.#options.state.targetNumber(topic, partition) === target) {
          await this.#complete(firing);
        }
      }
      let delivering: Promise<void> = Promise.resolve();
      let planned = 0; // firings planned and not yet completed
      for (;;) {
        const queue = this.#queues.get(target);
        if (queue && queue.length > 0 && !this.#closed) {
          const batch = this.#takeBatch(queue);
          if (batch.length === 0) continue;
          const firing = await this.#plan(target, batch);
          if (!firing) continue;
          planned += 1;
          delivering = delivering.then(() => this.#complete(firing));
          delivering.then(() => planned -= 1, () => planned = 0);
          continue;
        }
        if (planned === 0 || this.#closed) break;
        // Until the deliveries planned are done, or more is queued (and planned ahead).
        const more = new Promise<void>((resolve) => this.#wakers.set(target, resolve));
        await Promise.race([delivering, more]);
        this.#wakers.delete(target);
      }
      await delivering;
      this.#queues.delete(target);
    } catch (error) {
      // What is still queued waits in the heap again, so it is fired in order after a retry.
      for (const queued of this.#queues.get(target) ?? []) this.#restore(queued);
      this.#queues.delete(target);
      if (this.#closed) return;
      this.#options.logger.log("warn", "Cannot deliver delayed messages now; retrying", {
        target: this.#describe(target),
        reason: describeError(error),
      });
      this.#retryAt = this.#options.clock.wallMs() + RETRY_MS;
      this.#arm(this.#retryAt);
    } finally {
      this.#wakers.delete(target);
      this.#busy.delete(target);
    }
  }

  /** The next firing's slots from the front of `queue` (those still pending). */
  #takeBatch(queue: Queued[]): number[] {
    const { index } = this.#options.state;
    const slots: number[] = [];
    let bytes = 0;
    let taken = 0;
    for (const queued of queue) {
      if (slots.length >= FIRING_MESSAGES_MAX || bytes >= FIRING_BYTES_MAX) break;
      taken += 1;
      if (!this.#stillQueued(queued)) continue;
      slots.push(queued.slot);
      bytes += index.lengthOf(queued.slot);
    }
    queue.splice(0, taken);
    return slots;
  }

  #stillQueued(queued: Queued): boolean {
    const { index } = this.#options.state;
    return index.generationOf(queued.slot) === queued.generation &&
      index.isPending(queued.slot) && !index.isWaiting(queued.slot);
  }

  #restore(queued: Queued): void {
    if (this.#stillQueued(queued)) this.#options.state.index.restore(queued.slot);
  }

  /** Step 1: the firing record for `slots`; the firing as the state applied it. */
  async #plan(target: number, slots: number[]): Promise<FiringState | undefined> {
    const { state, journal, writer } = this.#options;
    const { topic, partition } = state.target(target);
    const ids = slots.map((slot) => state.index.idOf(slot));
    const record = encodeDelayRecord({
      type: "firing",
      fireAtMs: state.index.deliverAtOf(slots[0]),
      since: writer.sinceOf(topic, partition),
      topic,
      partition,
      ids,
    });
    let end: number;
    try {
      end = await journal.append(record);
    } catch (error) {
      // Not journalled (or not known to be): whichever it is, the state says. Those still
      // pending wait in the heap again; a firing that did land is completed by upkeep.
      for (const slot of slots) state.index.restore(slot);
      throw error;
    }
    return state.firings.get(end - RECORD_HEADER_BYTES - record.length);
  }

  /**
   * Steps 2 and 3 for one firing. Resolves once its batch is readable: the `fired` record is
   * written behind it (the next firing need not wait for it; a `fired` that is lost only means
   * the next writer finds the batch there and appends nothing), and until it is applied the
   * firing stays in `#completing`, so nothing completes it twice meanwhile.
   */
  async #complete(firing: FiringState): Promise<void> {
    if (this.#completing.has(firing.offset)) return;
    this.#completing.add(firing.offset);
    let recording = false;
    try {
      const messages = firing.ids.map((id) => this.#read(id)).filter((message) =>
        message !== undefined
      );
      // In runs of the messages due now, each appended once its first is due (never before).
      for (let next = 0; next < messages.length && !this.#closed;) {
        await this.#until(messages[next].deliverAtMs);
        const now = this.#options.clock.wallMs();
        let end = next;
        while (end < messages.length && messages[end].deliverAtMs <= now) end += 1;
        if (end === next) continue;
        const due = messages.slice(next, end);
        await this.#options.writer.appendMissing(
          firing.topic,
          firing.partition,
          encodeDeliveries(due),
          firing.since,
        );
        const appendedAt = this.#options.clock.wallMs();
        for (const message of due) {
          this.#options.lateness.observe(appendedAt - message.deliverAtMs);
        }
        this.#delivered += due.length;
        next = end;
      }
      if (this.#closed) return;
      if (
        this.#options.crashAfterFirings !== undefined &&
        ++this.#appended >= this.#options.crashAfterFirings
      ) {
        this.#options.crash?.();
      }
      recording = true;
      this.#options.journal.append(encodeDelayRecord({ type: "fired", firing: firing.offset }))
        .catch((error) =>
          this.#options.logger.log("warn", "Cannot record delivered delayed messages yet", {
            target: `${firing.topic}-${firing.partition}`,
            reason: describeError(error),
          })
        )
        .finally(() => this.#completing.delete(firing.offset));
    } finally {
      if (!recording) this.#completing.delete(firing.offset);
    }
  }

  /** Resolves once the wall clock reads `atMs` or later (at once when it does). */
  #until(atMs: number): Promise<void> {
    const waitMs = atMs - this.#options.clock.wallMs();
    if (waitMs <= 0) return Promise.resolve();
    return new Promise((resolve) => this.#options.timers.after(waitMs, resolve));
  }

  /** A held message's record, read back from the log (the index keeps no payloads). */
  #read(id: bigint): DelayedMessage | undefined {
    const { index } = this.#options.state;
    const slot = index.find(id);
    if (slot < 0) return undefined;
    const log = this.#options.journal.log;
    const offset = index.offsetOf(slot);
    const length = index.lengthOf(slot);
    const bytes = new Uint8Array(length);
    log.readInto(bytes, 0, offset, length);
    const record = decodeDelayRecord(bytes.subarray(RECORD_HEADER_BYTES));
    if (record.type !== "message" || record.id !== id) {
      throw new Error(`the delayed message ${id} is not where the index says (${offset})`);
    }
    return record;
  }

  #describe(target: number): string {
    const { topic, partition } = this.#options.state.target(target);
    return `${topic}-${partition}`;
  }
}

/**
 * The records a partition receives for `messages`: each with its own id, its producer's flag
 * with the attribute bit set, and an attribute saying when it was due, ahead of the producer's.
 */
export function encodeDeliveries(messages: readonly DelayedMessage[]): Uint8Array {
  const records = messages.map((message) => {
    const { attribute, payload } = splitAttribute(message.flag, message.data);
    const schedule = message.schedule === "" ? undefined : message.schedule;
    const text = scheduledAttribute(
      { scheduledAtMs: message.deliverAtMs, id: message.id, schedule },
      attribute,
    );
    return {
      id: message.id,
      flag: message.flag | FLAG_HAS_ATTRIBUTE,
      data: joinAttribute(text, payload),
    };
  });
  const total = records.reduce((sum, record) => sum + RECORD_HEADER_BYTES + record.data.length, 0);
  const batch = new Uint8Array(total);
  let position = 0;
  for (const record of records) position += writeRecord(batch, position, record);
  return batch;
}

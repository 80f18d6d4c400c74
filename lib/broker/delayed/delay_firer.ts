/**
 * @module DelayFirer: runs on the node that writes `__delay-0` and delivers each held message
 * into its partition at (never before) its delivery time, exactly once. It does not decide
 * what is pending (DelayState does, from the log); it only acts on it.
 *
 * Delivery of one batch, per target partition, one batch at a time so that a partition gets
 * its messages in delivery-time order:
 *
 * 1. `firing` record: the ids, in (deliverAt, id) order, and `since`, the partition's readable
 *    end as this node knows it (every record of the batch lands at or after it).
 * 2. The batch is appended with Log.appendMissing through the partition's leader (the
 *    `commitbatch` path of transactions): each record keeps the message id the `delay` reply
 *    gave, and only records whose ids the partition does not hold since `since` are appended.
 * 3. `fired` record: the batch is readable; its messages leave the state.
 *
 * A writer that dies anywhere in between leaves the firing record without its `fired`; the
 * next writer (this node after a restart, another node after a failover) finds it in the
 * state and runs steps 2 and 3 again, which appends only what is missing: exactly once.
 */
import type { Clock } from "../../clock.ts";
import { describeError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { joinAttribute, RECORD_HEADER_BYTES, splitAttribute } from "../../protocol/record.ts";
import { FLAG_HAS_ATTRIBUTE, writeRecord } from "../../protocol/record.ts";
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
    if (this.#closed || deliverAtMs >= this.#timerAt) return;
    this.#arm(deliverAtMs);
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
      for (let slot = index.popDue(now); slot >= 0; slot = index.popDue(now)) {
        const target = index.targetOf(slot);
        let queue = this.#queues.get(target);
        if (!queue) this.#queues.set(target, queue = []);
        queue.push({ slot, generation: index.generationOf(slot) });
      }
      for (const target of this.#queues.keys()) {
        if (!this.#busy.has(target)) void this.#drain(target);
      }
      this.completeUnfinished();
    }
    const next = index.nextDueMs();
    this.#arm(Math.min(Math.max(next ?? Infinity, this.#retryAt), now + TIMER_MAX_MS));
  }

  #arm(atMs: number): void {
    this.#timer?.();
    this.#timerAt = atMs;
    const delayMs = Math.max(0, Math.min(TIMER_MAX_MS, atMs - this.#options.clock.wallMs()));
    this.#timer = this.#options.timers.after(delayMs, () => this.#tick());
  }

  /**
   * Completes the target's unfinished firings first (a partition gets its messages in order),
   * then fires its queued messages, one firing at a time, until its queue is empty.
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
      for (;;) {
        const queue = this.#queues.get(target);
        if (!queue || queue.length === 0 || this.#closed) {
          this.#queues.delete(target);
          return;
        }
        const batch = this.#takeBatch(queue);
        if (batch.length > 0) await this.#fire(target, batch);
      }
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

  async #fire(target: number, slots: number[]): Promise<void> {
    const { state, journal, writer } = this.#options;
    const { topic, partition } = state.target(target);
    const ids = slots.map((slot) => state.index.idOf(slot));
    const record = encodeDelayRecord({
      type: "firing",
      fireAtMs: this.#options.clock.wallMs(),
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
    const firing = state.firings.get(end - RECORD_HEADER_BYTES - record.length);
    if (firing) await this.#complete(firing);
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
      if (messages.length > 0) {
        await this.#options.writer.appendMissing(
          firing.topic,
          firing.partition,
          encodeDeliveries(messages),
          firing.since,
        );
        const now = this.#options.clock.wallMs();
        for (const message of messages) {
          this.#options.lateness.observe(now - message.deliverAtMs);
        }
        this.#delivered += messages.length;
      }
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

/**
 * @module GroupMembership: a consumer's side of the group protocol. It joins, heartbeats, and when
 * the generation moves (or partitions wait to be handed over) it fetches the assignment, has the
 * consumer apply it (stop what was taken away, commit it, start what is new), and only then
 * acknowledges the generation, which is what lets the broker give released partitions to others.
 *
 * It also fences: a member that has not had a heartbeat answered for most of its session timeout
 * stops delivering, because the broker may already have handed its partitions to someone else.
 * Partitions and offsets are the consumer's business (consumer.ts); this file is the loop.
 */
import { describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Assignment, Strategy } from "../protocol/group_wire.ts";
import { BrokerError } from "./errors.ts";
import type { GroupClient } from "./group_client.ts";

/** Fence after this fraction of the session timeout without an answered heartbeat. */
const FENCE_FRACTION = 0.8;
const HEARTBEAT_INTERVAL_MAX_MS = 500;
const HEARTBEAT_INTERVAL_MIN_MS = 20;

export interface MembershipHooks {
  /** Stops partitions the assignment no longer lists and starts the new ones. */
  apply(assignment: Assignment): Promise<void>;
  /** Commits the offsets of released partitions in `generation`; throws if it could not. */
  settle(generation: number): Promise<void>;
  /** The session is lost: stop every partition and forget positions not committed. */
  fence(reason: string): Promise<void>;
}

export interface MembershipOptions {
  readonly groups: GroupClient;
  readonly group: string;
  readonly memberId: string;
  readonly topics: readonly string[];
  readonly strategy: Strategy;
  /** Upper bound on the heartbeat interval (it is also at most a fifth of the session timeout). */
  readonly heartbeatIntervalMs?: number;
  readonly hooks: MembershipHooks;
  /** Runs membership steps one at a time with the consumer's commits and close. */
  readonly serial: <T>(step: () => Promise<T>) => Promise<T>;
  readonly logger: Logger;
}

export class GroupMembership {
  readonly options: MembershipOptions;
  #joined = false;
  #generation = 0;
  #sessionTimeoutMs = 10_000;
  #intervalMs = HEARTBEAT_INTERVAL_MAX_MS;
  #lastAnsweredSentMs = -Infinity;
  #refresh = false;
  /** Partitions targeted at us and not yet handed over, as of the last assignment. */
  #pending = 0;
  #closing = false;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;

  constructor(options: MembershipOptions) {
    this.options = options;
  }

  /** The latest generation whose assignment was applied. */
  get generation(): number {
    return this.#generation;
  }

  get joined(): boolean {
    return this.#joined;
  }

  /** Whether the consumer may still deliver messages of the partitions it holds. */
  mayDeliver(): boolean {
    return this.#joined &&
      performance.now() - this.#lastAnsweredSentMs < this.#sessionTimeoutMs * FENCE_FRACTION;
  }

  /** Joins and applies the first assignment, then keeps heartbeating in the background. */
  async start(): Promise<void> {
    try {
      await this.options.serial(() => this.#beat());
    } catch (error) {
      // Another member joining between our join and our first acknowledgement moves the
      // generation: that is a rebalance, handled like any later one. Other errors (an unknown
      // topic, a bad group name, no broker) are the caller's to report.
      if (!this.#joined || !isMembershipRace(error)) throw error;
      await this.options.serial(() => this.#onError(error));
    }
    this.#loop = this.#run();
  }

  /** Fetch the assignment at the next beat, which happens now (after a stale-generation refusal). */
  requestRefresh(): void {
    this.#refresh = true;
    this.#wake?.();
  }

  /** Stops heartbeating; `leave` tells the broker at once instead of after the session timeout. */
  async stop(): Promise<void> {
    this.#closing = true;
    this.#wake?.();
    await this.#loop;
  }

  async leave(): Promise<void> {
    if (!this.#joined) return;
    this.#joined = false;
    await this.options.groups.leave({ group: this.options.group, memberId: this.options.memberId });
  }

  async #run(): Promise<void> {
    while (!this.#closing) {
      let waitMs: number;
      try {
        waitMs = await this.options.serial(() => this.#beat());
      } catch (error) {
        waitMs = await this.options.serial(() => this.#onError(error)).catch((failure) => {
          // Handling the error failed too (stopping readers threw): log it, keep the loop alive.
          this.options.logger.log("error", "Group membership step failed", {
            group: this.options.group,
            reason: describeError(failure),
          });
          return this.#intervalMs;
        });
      }
      if (!this.#closing && waitMs > 0) await this.#sleep(waitMs);
    }
  }

  /** One heartbeat, and a hand-over round when the broker has news; returns the next wait. */
  async #beat(): Promise<number> {
    if (this.#closing) return 0;
    if (!this.#joined) await this.#join();
    const { groups, group, memberId, hooks } = this.options;
    let sentMs = performance.now();
    const beat = await groups.heartbeat({ group, memberId, generation: this.#generation });
    this.#lastAnsweredSentMs = sentMs;
    // Fewer pending partitions means some were handed to us: fetch them.
    if (beat.generation === this.#generation && beat.pending === this.#pending && !this.#refresh) {
      return this.#pending === 0 ? this.#intervalMs : this.#waitingIntervalMs();
    }
    this.#refresh = false;
    const assignment = await groups.assignment({ group, memberId });
    await hooks.apply(assignment);
    await hooks.settle(assignment.generation);
    this.#generation = assignment.generation;
    sentMs = performance.now();
    const ack = await groups.heartbeat({ group, memberId, generation: assignment.generation });
    this.#lastAnsweredSentMs = sentMs;
    this.#pending = assignment.pending;
    if (ack.generation !== this.#generation || ack.pending !== this.#pending) return 0;
    return this.#pending === 0 ? this.#intervalMs : this.#waitingIntervalMs();
  }

  /** While partitions wait for their previous owner, look more often. */
  #waitingIntervalMs(): number {
    return Math.max(HEARTBEAT_INTERVAL_MIN_MS, this.#intervalMs / 4);
  }

  async #join(): Promise<void> {
    const { groups, group, memberId, topics, strategy, logger } = this.options;
    const sentMs = performance.now();
    const reply = await groups.join({ group, memberId, topics, strategy });
    this.#joined = true;
    this.#generation = 0;
    this.#pending = 0;
    this.#lastAnsweredSentMs = sentMs;
    this.#sessionTimeoutMs = reply.sessionTimeoutMs;
    this.#intervalMs = Math.max(
      HEARTBEAT_INTERVAL_MIN_MS,
      Math.min(
        this.options.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MAX_MS,
        reply.sessionTimeoutMs / 5,
      ),
    );
    logger.log("info", "Joined consumer group", {
      group,
      member: memberId,
      generation: reply.generation,
    });
  }

  async #onError(error: unknown): Promise<number> {
    const { logger, group, hooks } = this.options;
    if (error instanceof BrokerError && error.kind === "unknownMember") {
      this.#joined = false;
      await hooks.fence("the broker no longer knows this member");
      return 0; // rejoin at once
    }
    if (error instanceof BrokerError && error.kind === "staleGeneration") {
      this.#refresh = true;
      return 0;
    }
    logger.log("warn", "Group heartbeat failed", { group, reason: describeError(error) });
    if (this.#joined && !this.mayDeliver()) {
      this.#joined = false;
      await hooks.fence(
        `no heartbeat answered for ${Math.round(this.#sessionTimeoutMs * FENCE_FRACTION)} ms`,
      );
    }
    return this.#intervalMs;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    }).then(() => {
      this.#wake = undefined;
    });
  }
}

/** Errors that only mean the group moved on while this member was catching up. */
function isMembershipRace(error: unknown): boolean {
  return error instanceof BrokerError &&
    (error.kind === "staleGeneration" || error.kind === "unknownMember");
}

/**
 * @module GroupService: the thin shell around the GroupCoordinator. It checks topics against the
 * broker, stamps commands with the monotonic clock, persists the coordinator's offset effects in
 * the OffsetStore before answering, logs rebalances, and ticks the coordinator so silent members
 * expire. It knows no sockets: lib/server/group_commands.ts turns wire commands into these calls.
 */
import { assert } from "../../assert.ts";
import type { Clock } from "../../clock.ts";
import { topicNameProblem } from "../../config/names.ts";
import { BrokerError, describeError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import {
  type Assignment,
  type GroupReport,
  type HeartbeatReply,
  type JoinReply,
  type OffsetEntry,
  type OffsetStore,
  type ResetTarget,
  STRATEGIES,
  type Strategy,
} from "../../protocol/group_wire.ts";
import { checkGroupName } from "../../protocol/names.ts";
import { type Effect, GroupCoordinator, TOPICS_PER_MEMBER_MAX } from "./coordinator.ts";

export interface GroupServiceOptions {
  readonly brokerId: number;
  readonly sessionTimeoutMs: number;
  readonly store: OffsetStore;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Partition count of a topic this broker accepts, or undefined when it does not. */
  readonly partitionCount: (topic: string) => number | undefined;
  /**
   * A number that changes whenever a partition count may have (the topic catalogue's version):
   * groups look for grown topics only then. Without it they look at every tick.
   */
  readonly partitionCountsVersion?: () => number;
  /** First offset and readable end of a partition, or undefined before its first write. */
  readonly logBounds: (
    topic: string,
    partition: number,
  ) => { start: number; end: number } | undefined;
  /**
   * Bounds as the partition's leader knows them now, for a reset (logBounds may trail it by a
   * moment on a node without a copy); undefined when logBounds is as good.
   */
  readonly freshBounds?: (
    topic: string,
    partition: number,
  ) => Promise<{ start: number; end: number } | undefined>;
  /**
   * Whether a whole, valid record starts at `offset` of a partition; undefined when this node
   * cannot tell (it holds no copy of the records there). A reset to a byte offset must name a
   * record start: a committed offset inside a record makes its consumers re-read the segment.
   */
  readonly recordStartsAt?: (
    topic: string,
    partition: number,
    offset: number,
  ) => boolean | undefined;
  /** See CoordinatorOptions.generationBase. */
  readonly generationBase?: number;
}

export class GroupService {
  readonly options: GroupServiceOptions;
  readonly coordinator: GroupCoordinator;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** partitionCountsVersion when grown topics were last looked for. */
  #countsVersion: number | undefined;

  constructor(options: GroupServiceOptions) {
    this.options = options;
    this.coordinator = new GroupCoordinator({
      brokerId: options.brokerId,
      sessionTimeoutMs: options.sessionTimeoutMs,
      generationBase: options.generationBase,
    });
    this.coordinator.restore(options.store.entries());
  }

  /** Expires silent members; checked several times per session timeout. */
  start(): void {
    const everyMs = Math.max(20, Math.min(250, Math.floor(this.options.sessionTimeoutMs / 5)));
    this.#timer = setInterval(() => this.tick(), everyMs);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.options.store.close();
  }

  tick(): void {
    this.coordinator.tick(this.#now());
    this.#balanceGrownTopics();
    this.#apply().catch(() => {}); // logged in #run; a tick has no one to answer
  }

  async join(
    request: { group: string; memberId: string; topics: readonly string[]; strategy: string },
  ): Promise<JoinReply> {
    if (!(STRATEGIES as readonly string[]).includes(request.strategy)) {
      throw new BrokerError("badRequest", `strategy ${request.strategy} is not DEFAULT or CONSIST`);
    }
    if (request.topics.length > TOPICS_PER_MEMBER_MAX) {
      throw new BrokerError("badRequest", `subscribe to at most ${TOPICS_PER_MEMBER_MAX} topics`);
    }
    const topics = request.topics.map((topic) => ({ topic, partitions: this.#partitions(topic) }));
    const reply = this.coordinator.join({
      group: request.group,
      memberId: request.memberId,
      topics,
      strategy: request.strategy as Strategy,
      nowMs: this.#now(),
    });
    await this.#apply();
    return reply;
  }

  heartbeat(request: { group: string; memberId: string; generation: number }): HeartbeatReply {
    const reply = this.coordinator.heartbeat({ ...request, nowMs: this.#now() });
    this.#apply().catch(() => {}); // heartbeats move ownership only: nothing to persist
    return reply;
  }

  /** The member's partitions, with committed offsets confirmed current (see `committed`). */
  async assignment(request: { group: string; memberId: string }): Promise<Assignment> {
    await this.options.store.confirm?.();
    return this.coordinator.assignment({ ...request, nowMs: this.#now() });
  }

  async leave(request: { group: string; memberId: string }): Promise<void> {
    this.coordinator.leave(request);
    await this.#apply();
  }

  /** Resolves with the committed offset once it is durable. */
  async commit(
    request: {
      group: string;
      memberId: string;
      generation: number;
      topic: string;
      partition: number;
      offset: number;
    },
  ): Promise<number> {
    const { offset } = this.coordinator.commit({ ...request, nowMs: this.#now() });
    await this.#apply();
    return offset;
  }

  /**
   * The committed offset, read after the store confirms this node still writes it: a coordinator
   * deposed while paused must not answer with an offset its successor has moved on from.
   */
  async committed(group: string, topic: string, partition: number): Promise<number> {
    checkGroupName(group);
    this.#checkPartition(topic, partition);
    await this.options.store.confirm?.();
    const offset = this.coordinator.committed(group, topic, partition);
    if (offset === undefined) {
      throw new BrokerError(
        "notFound",
        `group ${group} has no committed offset for ${topic}-${partition}`,
      );
    }
    return offset;
  }

  /** An operator's reset of one partition (or all) of a topic; returns the offsets written. */
  async reset(
    request: { group: string; topic: string; partition?: number; to: ResetTarget; force: boolean },
  ): Promise<OffsetEntry[]> {
    const count = this.#partitions(request.topic);
    if (request.partition !== undefined) this.#checkPartition(request.topic, request.partition);
    const partitions = request.partition !== undefined
      ? [request.partition]
      : Array.from({ length: count }, (_, partition) => partition);
    const offsets: OffsetEntry[] = [];
    for (const partition of partitions) {
      const bounds = await this.options.freshBounds?.(request.topic, partition);
      offsets.push({
        group: request.group,
        topic: request.topic,
        partition,
        offset: this.#resolve(request.topic, partition, request.to, bounds),
      });
    }
    this.coordinator.reset({ ...request, offsets });
    await this.#apply();
    return offsets;
  }

  /** Deletes a group without members, and its committed offsets (durably, before answering). */
  async deleteGroup(group: string): Promise<OffsetEntry[]> {
    const removed = this.coordinator.deleteGroup(group);
    await this.#apply();
    return removed;
  }

  /**
   * A topic grown since its readers joined (metaq topics create): they balance over it now.
   * Looked for when the counts' version moved (it rarely does), not by every tick over every
   * group.
   */
  #balanceGrownTopics(): void {
    const version = this.options.partitionCountsVersion?.();
    if (version !== undefined && version === this.#countsVersion) return;
    for (const [topic, partitions] of this.coordinator.subscribedTopics()) {
      const now = this.options.partitionCount(topic);
      if (now !== undefined && now > partitions) this.coordinator.partitionsGrew(topic, now);
    }
    this.#countsVersion = version;
  }

  /** Removes every group's committed offsets of a deleted topic (durably, before answering). */
  async forgetTopic(topic: string): Promise<OffsetEntry[]> {
    const removed = this.coordinator.forgetTopic(topic);
    await this.#apply();
    return removed;
  }

  /** Groups (one, or all when `group` is undefined) with members, offsets, log ends and lag. */
  describe(group?: string): GroupReport[] {
    if (group !== undefined) checkGroupName(group);
    const names = group === undefined ? this.coordinator.groupNames() : [group];
    const now = this.#now();
    return names.map((name) => this.#report(name, now));
  }

  #report(name: string, now: number): GroupReport {
    const view = this.coordinator.describe(name, now);
    const keys = new Map<string, { topic: string; partition: number }>();
    const add = (topic: string, partition: number) =>
      keys.set(`${topic}-${partition}`, { topic, partition });
    for (const entry of view.offsets) add(entry.topic, entry.partition);
    for (const member of view.members) {
      for (const topic of member.topics) {
        const count = this.options.partitionCount(topic) ?? 0;
        for (let partition = 0; partition < count; partition++) add(topic, partition);
      }
    }
    const partitions = [...keys.values()].sort((a, b) =>
      a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1
    ).map(({ topic, partition }) => {
      const bounds = this.options.logBounds(topic, partition);
      const committed = this.coordinator.committed(name, topic, partition) ?? null;
      const end = bounds?.end ?? 0;
      const from = committed ?? bounds?.start ?? 0;
      return {
        topic,
        partition,
        owner: view.owners.get(`${topic}-${partition}`) ?? null,
        committed,
        end,
        lag: Math.max(0, end - from),
      };
    });
    return {
      group: name,
      generation: view.generation,
      strategy: view.strategy ?? null,
      members: view.members.map((member) => ({
        id: member.id,
        topics: member.topics,
        idleMs: Math.round(member.idleMs),
        partitions: member.owned.map(({ topic, partition }) => `${topic}-${partition}`),
      })),
      partitions,
    };
  }

  #resolve(
    topic: string,
    partition: number,
    to: ResetTarget,
    fresh?: { start: number; end: number },
  ): number {
    const bounds = fresh ?? this.options.logBounds(topic, partition) ?? { start: 0, end: 0 };
    if (to === "earliest") return bounds.start;
    if (to === "latest") return bounds.end;
    if (!Number.isSafeInteger(to) || to < bounds.start || to > bounds.end) {
      throw new BrokerError(
        "invalidOffset",
        `${to} is outside ${topic}-${partition} (${bounds.start} to ${bounds.end})`,
      );
    }
    if (to < bounds.end && this.options.recordStartsAt?.(topic, partition, to) === false) {
      throw new BrokerError(
        "invalidOffset",
        `no record starts at offset ${to} of ${topic}-${partition} (give a record's first byte, ` +
          "as 'metaq consume --format json' prints it)",
      );
    }
    return to;
  }

  #partitions(topic: string): number {
    const problem = topicNameProblem(topic);
    if (problem) throw new BrokerError("invalidName", problem);
    const count = this.options.partitionCount(topic);
    if (count === undefined) {
      throw new BrokerError("topicNotAccepted", `the server does not accept topic ${topic}`);
    }
    return count;
  }

  #checkPartition(topic: string, partition: number): void {
    const count = this.#partitions(topic);
    if (!Number.isInteger(partition) || partition < 0 || partition >= count) {
      throw new BrokerError(
        "wrongPartition",
        `${topic} has partitions 0 to ${count - 1}, not ${partition}`,
      );
    }
  }

  /** Persists offsets (commit or reset) and logs rebalances, in the order they happened. */
  async #apply(): Promise<void> {
    for (const effect of this.coordinator.takeEffects()) await this.#run(effect);
  }

  async #run(effect: Effect): Promise<void> {
    const { store, logger } = this.options;
    switch (effect.kind) {
      case "forget":
        if (!store.remove) throw new BrokerError("notSupported", "this offset store cannot delete");
        await store.remove(effect.entries);
        return;
      case "persist":
        try {
          if (effect.reset) await store.reset(effect.entries);
          else await store.commit(effect.entries);
        } catch (error) {
          logger.log("error", "Cannot persist committed offsets", { reason: describeError(error) });
          throw error;
        }
        return;
      case "rebalanced":
        logger.log("info", "Group rebalanced", {
          group: effect.group,
          generation: effect.generation,
          members: effect.members,
          reason: effect.reason,
        });
        return;
      default:
        assert(false, "unknown effect");
    }
  }

  #now(): number {
    return this.options.clock.monotonicMs();
  }
}

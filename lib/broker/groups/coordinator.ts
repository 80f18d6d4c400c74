/**
 * @module GroupCoordinator: consumer-group membership, partition ownership and committed offsets
 * as a pure state machine. Commands and the time come in; the new state and effects come out
 * (`takeEffects()`: offsets to persist, rebalances to log). No timers, sockets or disk: the
 * shell (group_service.ts) drives it, so a later change can replicate the same commands.
 *
 * Ownership is what keeps two members off one partition. Each partition of a subscribed topic
 * has a *target* (the member the balancing strategy picks in this generation) and an *owner*
 * (the member allowed to fetch it now). A partition goes to its target only when it is free:
 *
 * 1. A join, a leave or an expired session starts a new generation and recomputes the targets.
 *    Partitions nobody owns go to their targets at once.
 * 2. A member learns the generation from its heartbeat, fetches its assignment (the partitions it
 *    owns *and* is the target of), stops the others, commits their offsets, then acknowledges
 *    the generation with a heartbeat. Only then do its released partitions go to their targets.
 * 3. A member that leaves or misses heartbeats for `sessionTimeoutMs` frees all it owns.
 *
 * A commit is accepted only from a live member, in the current generation, for a partition it
 * owns, and never below the committed offset. `grantedAt` (the generation a partition was last
 * handed to its owner) tells a member to restart a partition from the committed offset, which
 * a forced offset reset uses.
 */
import { assert } from "../../assert.ts";
import { topicNameProblem } from "../../config/names.ts";
import { BrokerError } from "../../errors.ts";
import {
  GROUPS_MAX,
  MEMBER_ID_BYTES_MAX,
  MEMBERS_PER_GROUP_MAX,
  TOPICS_PER_MEMBER_MAX,
} from "../../limits.ts";

export { GROUPS_MAX, MEMBER_ID_BYTES_MAX, MEMBERS_PER_GROUP_MAX, TOPICS_PER_MEMBER_MAX };
import {
  type AssignedPartition,
  type Assignment,
  compareEntries,
  type HeartbeatReply,
  type OffsetEntry,
  type Strategy,
} from "../../protocol/group_wire.ts";
import { groupNameProblem } from "../../protocol/names.ts";
import { balance, partitionName } from "./balance.ts";

const MEMBER_ID_PATTERN = /^[A-Za-z0-9_.:@\-]+$/;

export interface CoordinatorOptions {
  /** Names partitions `<brokerId>-<n>` for balancing, as MetaQ. */
  readonly brokerId: number;
  readonly sessionTimeoutMs: number;
  /**
   * Generation a new group starts from (default 0). In a cluster each coordinator starts above
   * every generation an earlier one could have issued, so generations never repeat.
   */
  readonly generationBase?: number;
}

export interface TopicSubscription {
  readonly topic: string;
  /** Partition count of the topic on this broker. */
  readonly partitions: number;
}

export interface JoinRequest {
  readonly group: string;
  readonly memberId: string;
  readonly topics: readonly TopicSubscription[];
  readonly strategy: Strategy;
  readonly nowMs: number;
}

export interface CommitRequest {
  readonly group: string;
  readonly memberId: string;
  readonly generation: number;
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly nowMs: number;
}

export type Effect =
  | { readonly kind: "persist"; readonly entries: readonly OffsetEntry[]; readonly reset: boolean }
  /** A deleted group's offsets, to remove from the store. */
  | { readonly kind: "forget"; readonly entries: readonly OffsetEntry[] }
  | {
    readonly kind: "rebalanced";
    readonly group: string;
    readonly generation: number;
    readonly reason: string;
    readonly members: number;
  };

export interface MemberView {
  readonly id: string;
  readonly topics: readonly string[];
  readonly idleMs: number;
  readonly acknowledged: number;
  readonly owned: readonly { topic: string; partition: number }[];
}

export interface GroupView {
  readonly group: string;
  readonly generation: number;
  readonly strategy?: Strategy;
  readonly members: readonly MemberView[];
  /** Partition key `topic-partition` -> owning member. */
  readonly owners: ReadonlyMap<string, string>;
  readonly offsets: readonly OffsetEntry[];
}

interface Member {
  readonly id: string;
  topics: string[];
  lastSeenMs: number;
  /** Highest generation whose assignment the member has applied. */
  acknowledged: number;
}

interface TopicState {
  partitions: number;
  owners: (string | undefined)[];
  targets: (string | undefined)[];
  grantedAt: number[];
}

interface Group {
  readonly name: string;
  generation: number;
  strategy: Strategy | undefined;
  readonly members: Map<string, Member>;
  readonly topics: Map<string, TopicState>;
}

export class GroupCoordinator {
  readonly options: CoordinatorOptions;
  readonly #groups = new Map<string, Group>();
  /** group -> `topic\0partition` -> offset */
  readonly #offsets = new Map<string, Map<string, OffsetEntry>>();
  #effects: Effect[] = [];

  constructor(options: CoordinatorOptions) {
    assert(options.sessionTimeoutMs > 0);
    this.options = options;
  }

  /** Effects produced since the last call, in order; the shell persists and logs them. */
  takeEffects(): Effect[] {
    const effects = this.#effects;
    this.#effects = [];
    return effects;
  }

  /** Loads offsets read from the store at start-up (no effects). */
  restore(entries: readonly OffsetEntry[]): void {
    for (const entry of entries) this.#setOffset(entry);
  }

  join(request: JoinRequest): { generation: number; sessionTimeoutMs: number } {
    checkGroup(request.group);
    checkMemberId(request.memberId);
    checkSubscriptions(request.topics);
    const existing = this.#groups.get(request.group);
    if (!existing?.members.size && this.#activeGroups() >= GROUPS_MAX) {
      throw new BrokerError("unavailable", `this broker already tracks ${GROUPS_MAX} groups`);
    }
    const group = existing ?? newGroup(request.group, this.options.generationBase ?? 0);
    const member = group.members.get(request.memberId);
    if (group.members.size > 0 && group.strategy !== request.strategy) {
      throw new BrokerError(
        "badRequest",
        `group ${group.name} balances with ${group.strategy}, not ${request.strategy}`,
      );
    }
    if (!member && group.members.size >= MEMBERS_PER_GROUP_MAX) {
      throw new BrokerError(
        "unavailable",
        `group ${group.name} has ${MEMBERS_PER_GROUP_MAX} members`,
      );
    }
    // Validated: from here on the state changes.
    this.#groups.set(group.name, group);
    group.strategy = request.strategy;
    for (const { topic, partitions } of request.topics) ensureTopic(group, topic, partitions);
    const topics = [...new Set(request.topics.map((subscription) => subscription.topic))].sort();
    if (member) {
      member.lastSeenMs = request.nowMs;
      if (sameList(member.topics, topics)) return this.#joinReply(group);
      member.topics = topics;
      this.#rebalance(group, `member ${member.id} changed topics`);
    } else {
      group.members.set(request.memberId, {
        id: request.memberId,
        topics,
        lastSeenMs: request.nowMs,
        acknowledged: 0,
      });
      this.#rebalance(group, `member ${request.memberId} joined`);
    }
    return this.#joinReply(group);
  }

  /**
   * Keeps the member alive. `generation` is the latest one whose assignment the member applied:
   * when it is the current one, partitions the member gave up go to their new owners.
   */
  heartbeat(
    request: { group: string; memberId: string; generation: number; nowMs: number },
  ): HeartbeatReply {
    const { group, member } = this.#member(request.group, request.memberId);
    if (request.generation > group.generation || request.generation < 0) {
      throw new BrokerError(
        "badRequest",
        `generation ${request.generation} was never issued (current ${group.generation})`,
      );
    }
    member.lastSeenMs = request.nowMs;
    if (request.generation === group.generation && member.acknowledged < group.generation) {
      member.acknowledged = group.generation;
      this.#release(group, member.id);
    }
    return { generation: group.generation, pending: pendingFor(group, member.id) };
  }

  assignment(request: { group: string; memberId: string; nowMs: number }): Assignment {
    const { group, member } = this.#member(request.group, request.memberId);
    member.lastSeenMs = request.nowMs;
    const partitions: AssignedPartition[] = [];
    for (const [topic, state] of group.topics) {
      for (let partition = 0; partition < state.partitions; partition++) {
        if (state.owners[partition] !== member.id || state.targets[partition] !== member.id) {
          continue;
        }
        const offset = this.committed(group.name, topic, partition);
        partitions.push({ topic, partition, grantedAt: state.grantedAt[partition], offset });
      }
    }
    return { generation: group.generation, partitions, pending: pendingFor(group, member.id) };
  }

  leave(request: { group: string; memberId: string }): void {
    const { group, member } = this.#member(request.group, request.memberId);
    this.#remove(group, [member.id], `member ${member.id} left`);
  }

  /** Records a member's offset; returns whether it changed (and so must be persisted). */
  commit(request: CommitRequest): { offset: number; changed: boolean } {
    const { group, member } = this.#member(request.group, request.memberId);
    if (request.generation !== group.generation) {
      throw new BrokerError(
        "staleGeneration",
        `group ${group.name} is at generation ${group.generation}, not ${request.generation}`,
      );
    }
    const state = group.topics.get(request.topic);
    checkOffset(request.offset);
    if (!state || request.partition < 0 || request.partition >= state.partitions) {
      throw new BrokerError(
        "notOwner",
        `${request.topic}-${request.partition} is not a partition of group ${group.name}`,
      );
    }
    if (state.owners[request.partition] !== member.id) {
      const owner = state.owners[request.partition] ?? "nobody";
      throw new BrokerError(
        "notOwner",
        `${request.topic}-${request.partition} is owned by ${owner}, not ${member.id}`,
      );
    }
    const stored = this.committed(group.name, request.topic, request.partition);
    if (stored !== undefined && request.offset < stored) {
      throw new BrokerError(
        "offsetBackwards",
        `${request.topic}-${request.partition} is at ${stored}, not ${request.offset}`,
      );
    }
    member.lastSeenMs = request.nowMs;
    if (stored === request.offset) return { offset: stored, changed: false };
    const entry = {
      group: group.name,
      topic: request.topic,
      partition: request.partition,
      offset: request.offset,
    };
    this.#setOffset(entry);
    this.#effects.push({ kind: "persist", entries: [entry], reset: false });
    return { offset: request.offset, changed: true };
  }

  committed(group: string, topic: string, partition: number): number | undefined {
    return this.#offsets.get(group)?.get(`${topic}\u0000${partition}`)?.offset;
  }

  /**
   * An operator's reset of a topic's committed offsets. Refused while the group has members,
   * unless `force`: then the generation moves on and owners restart from the new offsets.
   */
  reset(
    request: { group: string; topic: string; offsets: readonly OffsetEntry[]; force: boolean },
  ): void {
    checkGroup(request.group);
    for (const entry of request.offsets) {
      assert(entry.group === request.group && entry.topic === request.topic);
      checkOffset(entry.offset);
    }
    const group = this.#groups.get(request.group);
    if (group && group.members.size > 0 && !request.force) {
      throw new BrokerError(
        "membersActive",
        `group ${group.name} has ${group.members.size} member(s); stop them or force the reset`,
      );
    }
    for (const entry of request.offsets) this.#setOffset(entry);
    this.#effects.push({ kind: "persist", entries: request.offsets, reset: true });
    if (!group || group.members.size === 0) return;
    const state = group.topics.get(request.topic);
    this.#rebalance(group, `offsets of ${request.topic} reset`);
    if (!state) return;
    for (let partition = 0; partition < state.partitions; partition++) {
      if (state.owners[partition] !== undefined) state.grantedAt[partition] = group.generation;
    }
  }

  /** Expires members whose last request is older than the session timeout. */
  tick(nowMs: number): void {
    for (const group of this.#groups.values()) {
      const expired = [...group.members.values()].filter((member) =>
        nowMs - member.lastSeenMs > this.options.sessionTimeoutMs
      );
      if (expired.length === 0) continue;
      const ids = expired.map((member) => member.id);
      this.#remove(group, ids, `member(s) ${ids.join(", ")} missed their heartbeats`);
    }
  }

  /**
   * Deletes a group that has no members: its committed offsets and what is known of it. An
   * operator's command; a group with members is refused (stop them first), as is one that does
   * not exist. Returns the offsets it had.
   */
  deleteGroup(name: string): OffsetEntry[] {
    checkGroup(name);
    const group = this.#groups.get(name);
    if (group && group.members.size > 0) {
      throw BrokerError.verbatim(
        "membersActive",
        `Cannot delete group ${name}: it has ${group.members.size} member(s); stop them first`,
      );
    }
    const offsets = [...(this.#offsets.get(name)?.values() ?? [])].sort(compareEntries);
    if (!group && offsets.length === 0) {
      throw BrokerError.verbatim("notFound", `Cannot delete group ${name}: no such consumer group`);
    }
    this.#groups.delete(name);
    this.#offsets.delete(name);
    if (offsets.length > 0) this.#effects.push({ kind: "forget", entries: offsets });
    return offsets;
  }

  /**
   * Removes every group's committed offsets of `topic` (an operator deleted it: a topic of the
   * same name created later starts its partitions at 0, below those offsets). Returns them.
   */
  forgetTopic(topic: string): OffsetEntry[] {
    const removed: OffsetEntry[] = [];
    for (const [name, offsets] of this.#offsets) {
      for (const [key, entry] of offsets) {
        if (entry.topic !== topic) continue;
        offsets.delete(key);
        removed.push(entry);
      }
      if (offsets.size === 0) this.#offsets.delete(name);
    }
    removed.sort(compareEntries);
    if (removed.length > 0) this.#effects.push({ kind: "forget", entries: removed });
    return removed;
  }

  /** Topics groups with members read now, each with the partition count they balance over. */
  subscribedTopics(): Map<string, number> {
    const topics = new Map<string, number>();
    for (const group of this.#groups.values()) {
      if (group.members.size === 0) continue;
      for (const [topic, state] of group.topics) {
        topics.set(topic, Math.min(topics.get(topic) ?? state.partitions, state.partitions));
      }
    }
    return topics;
  }

  /**
   * `topic` has more partitions now (an operator grew it): every group reading it balances over
   * them, so the new partitions get owners without waiting for a member to come or go.
   */
  partitionsGrew(topic: string, partitions: number): void {
    for (const group of this.#groups.values()) {
      const state = group.topics.get(topic);
      if (!state || state.partitions >= partitions || group.members.size === 0) continue;
      ensureTopic(group, topic, partitions);
      this.#rebalance(group, `topic ${topic} grew to ${partitions} partitions`);
    }
  }

  /** Groups known from membership or offsets, sorted by name. */
  groupNames(): string[] {
    return [...new Set([...this.#groups.keys(), ...this.#offsets.keys()])].sort();
  }

  describe(name: string, nowMs: number): GroupView {
    const group = this.#groups.get(name);
    const offsets = [...(this.#offsets.get(name)?.values() ?? [])].sort(compareEntries);
    const owners = new Map<string, string>();
    const members: MemberView[] = [];
    for (const member of group?.members.values() ?? []) {
      const owned: { topic: string; partition: number }[] = [];
      for (const [topic, state] of group!.topics) {
        state.owners.forEach((owner, partition) => {
          if (owner !== member.id) return;
          owned.push({ topic, partition });
          owners.set(`${topic}-${partition}`, owner);
        });
      }
      members.push({
        id: member.id,
        topics: member.topics,
        idleMs: nowMs - member.lastSeenMs,
        acknowledged: member.acknowledged,
        owned,
      });
    }
    members.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return {
      group: name,
      generation: group?.generation ?? 0,
      strategy: group?.strategy,
      members,
      owners,
      offsets,
    };
  }

  #member(groupName: string, memberId: string): { group: Group; member: Member } {
    checkGroup(groupName);
    const group = this.#groups.get(groupName);
    const member = group?.members.get(memberId);
    if (!group || !member) {
      throw new BrokerError("unknownMember", `${memberId} is not a member of ${groupName}; join`);
    }
    return { group, member };
  }

  #joinReply(group: Group): { generation: number; sessionTimeoutMs: number } {
    return { generation: group.generation, sessionTimeoutMs: this.options.sessionTimeoutMs };
  }

  /** Frees what the members owned; an emptied group keeps only its generation number. */
  #remove(group: Group, memberIds: readonly string[], reason: string): void {
    for (const memberId of memberIds) group.members.delete(memberId);
    for (const state of group.topics.values()) {
      state.owners.forEach((owner, partition) => {
        if (owner !== undefined && memberIds.includes(owner)) state.owners[partition] = undefined;
      });
    }
    this.#rebalance(group, reason);
    if (group.members.size === 0) group.topics.clear();
  }

  #activeGroups(): number {
    let count = 0;
    for (const group of this.#groups.values()) if (group.members.size > 0) count += 1;
    return count;
  }

  /** New generation: new targets for every topic; free partitions go to their targets. */
  #rebalance(group: Group, reason: string): void {
    group.generation += 1;
    for (const [topic, state] of group.topics) {
      const consumers = [...group.members.values()].filter((member) =>
        member.topics.includes(topic)
      ).map((member) => member.id);
      const names = Array.from(
        { length: state.partitions },
        (_, partition) => partitionName(this.options.brokerId, partition),
      );
      const byName = new Map(names.map((name, partition) => [name, partition]));
      state.targets.fill(undefined);
      const plan = balance(group.strategy ?? "DEFAULT", consumers, names);
      for (const [consumer, partitions] of plan) {
        for (const name of partitions) state.targets[byName.get(name)!] = consumer;
      }
    }
    this.#grantFree(group);
    this.#effects.push({
      kind: "rebalanced",
      group: group.name,
      generation: group.generation,
      reason,
      members: group.members.size,
    });
  }

  /** The member applied the current generation: hand what it gave up to the targets. */
  #release(group: Group, memberId: string): void {
    for (const state of group.topics.values()) {
      state.owners.forEach((owner, partition) => {
        if (owner === memberId && state.targets[partition] !== memberId) {
          state.owners[partition] = undefined;
        }
      });
    }
    this.#grantFree(group);
  }

  #grantFree(group: Group): void {
    for (const state of group.topics.values()) {
      for (let partition = 0; partition < state.partitions; partition++) {
        const target = state.targets[partition];
        if (state.owners[partition] !== undefined || target === undefined) continue;
        state.owners[partition] = target;
        state.grantedAt[partition] = group.generation;
      }
    }
  }

  #setOffset(entry: OffsetEntry): void {
    let offsets = this.#offsets.get(entry.group);
    if (!offsets) this.#offsets.set(entry.group, offsets = new Map());
    const { group, topic, partition, offset } = entry;
    offsets.set(`${topic}\u0000${partition}`, { group, topic, partition, offset });
  }
}

function newGroup(name: string, generation: number): Group {
  return { name, generation, strategy: undefined, members: new Map(), topics: new Map() };
}

/** Adds a topic's state, or resizes it when the broker's partition count changed. */
function ensureTopic(group: Group, topic: string, partitions: number): void {
  const state = group.topics.get(topic);
  if (!state) {
    group.topics.set(topic, {
      partitions,
      owners: new Array(partitions).fill(undefined),
      targets: new Array(partitions).fill(undefined),
      grantedAt: new Array(partitions).fill(0),
    });
    return;
  }
  if (state.partitions === partitions) return;
  state.owners.length = partitions;
  state.targets.length = partitions;
  state.grantedAt.length = partitions;
  for (let partition = state.partitions; partition < partitions; partition++) {
    state.grantedAt[partition] = 0;
  }
  state.partitions = partitions;
}

function pendingFor(group: Group, memberId: string): number {
  let pending = 0;
  for (const state of group.topics.values()) {
    for (let partition = 0; partition < state.partitions; partition++) {
      if (state.targets[partition] === memberId && state.owners[partition] !== memberId) {
        pending += 1;
      }
    }
  }
  return pending;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((value, index) => value === b[index]);
}

function checkGroup(group: string): void {
  const problem = groupNameProblem(group);
  if (problem) throw new BrokerError("invalidName", problem);
}

function checkMemberId(memberId: string): void {
  if (memberId.length === 0 || memberId.length > MEMBER_ID_BYTES_MAX) {
    throw new BrokerError(
      "invalidName",
      `member id must have 1 to ${MEMBER_ID_BYTES_MAX} characters`,
    );
  }
  if (!MEMBER_ID_PATTERN.test(memberId)) {
    throw new BrokerError(
      "invalidName",
      "member id may use only letters, digits, '_', '.', ':', '@' and '-'",
    );
  }
}

function checkSubscriptions(topics: readonly TopicSubscription[]): void {
  if (topics.length === 0 || topics.length > TOPICS_PER_MEMBER_MAX) {
    throw new BrokerError("badRequest", `subscribe to 1 to ${TOPICS_PER_MEMBER_MAX} topics`);
  }
  for (const { topic, partitions } of topics) {
    const problem = topicNameProblem(topic);
    if (problem) throw new BrokerError("invalidName", problem);
    assert(Number.isInteger(partitions) && partitions > 0, `partition count of ${topic}`);
  }
}

function checkOffset(offset: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new BrokerError("invalidOffset", `${offset} is not a byte offset`);
  }
}

/**
 * @module What the HTTP API needs from consumer groups, the cluster and an edge's uplink, as
 * small interfaces: groups_over_wire.ts, cluster_view.ts and the uplink part implement them; the
 * admin app takes them as optional options and answers 503 when one is absent. Lag is computed here from committed
 * offsets and the partition ends, so providers only report what they own.
 */
import type { DelayedStatus } from "../broker/delayed/delayed_part.ts";

/** One committed offset of a group. */
export interface GroupOffset {
  readonly topic: string;
  readonly partition: number;
  /** Byte offset the group will read next. */
  readonly offset: number;
  /** Member that owns the partition now, when one does. */
  readonly owner?: string;
  /** The partition's readable end as the provider saw it, when it knows. */
  readonly end?: number;
}

export interface GroupMember {
  readonly id: string;
  /** Where the member connects from (`host:port`), when known. */
  readonly address?: string;
  readonly topics: readonly string[];
}

export interface GroupDescription {
  readonly group: string;
  readonly members: readonly GroupMember[];
  readonly offsets: readonly GroupOffset[];
}

export interface GroupOffsetReset {
  readonly group: string;
  readonly topic: string;
  readonly partition: number;
  /** Validated by the API: a real position of the partition, between its start and its end. */
  readonly offset: number;
}

export interface GroupsView {
  /** Names of the groups the broker knows. */
  list(): readonly string[] | Promise<readonly string[]>;
  /** The group's members and offsets, or undefined when there is no such group. */
  describe(group: string): GroupDescription | undefined | Promise<GroupDescription | undefined>;
  /** Every group described at once, when the provider can (one request instead of many). */
  describeAll?(): readonly GroupDescription[] | Promise<readonly GroupDescription[]>;
  /** Moves the group's committed offset; throws a BrokerError (e.g. `conflict`) to refuse. */
  reset(request: GroupOffsetReset): void | Promise<void>;
  /**
   * Deletes a group without members and its committed offsets; throws a BrokerError to refuse
   * (`membersActive`, `notFound`). Providers that cannot, leave it out.
   */
  delete?(group: string): Promise<void>;
}

export interface ClusterNode {
  readonly id: string;
  readonly address: string;
  /** `leader`, `follower`, `candidate`, or another role the cluster names. */
  readonly role: string;
  readonly healthy: boolean;
  /** Milliseconds since the leader last heard from this node, when known. */
  readonly lastContactMs?: number;
  /** Highest raft log index known to be replicated on this node, when known. */
  readonly matchIndex?: number;
  /** User partitions this node leads, as far as the answering node knows. */
  readonly leads?: number;
  /** The node answering. */
  readonly self?: boolean;
}

export interface ClusterStatus {
  readonly nodeId: string;
  readonly role: string;
  readonly term: number;
  readonly commitIndex: number;
  readonly leaderId?: string;
  /** False while this node cannot serve (no leader known, catching up); default true. */
  readonly ready?: boolean;
  readonly nodes: readonly ClusterNode[];
}

/** A user partition's leader as the answering node knows it, with what the leader shares. */
export interface PartitionLead {
  readonly topic: string;
  readonly partition: number;
  /** Node id of the leader. */
  readonly leader: string;
  /** The leader is the answering node: its own log has the figures. */
  readonly here: boolean;
  /** The figures the leader last shared (cluster_figures.ts); absent when `here` or not yet. */
  readonly figures?: readonly number[];
}

/** Delayed messages as this node sees them (lib/broker/delayed/delayed_part.ts). */
export interface DelayedView {
  status(): DelayedStatus;
}

export interface ClusterView {
  status(): ClusterStatus | Promise<ClusterStatus>;
  /** Every user partition with a known leader (the broker's own `__` logs are left out). */
  partitions?(): readonly PartitionLead[];
}

/** One forwarded partition of an edge's uplink (lib/uplink/partition_pump.ts). */
export interface UplinkPartitionStatus {
  readonly topic: string;
  readonly partition: number;
  /** `starting`, `waiting` (for the link), `forwarding`, `caught-up`, `blocked`. */
  readonly state: string;
  readonly reason?: string;
  readonly hubTopic?: string;
  readonly hubPartition?: number;
  /** Source offset below which the hub has every message. */
  readonly position: number;
  /** The same, as saved on the edge's disk (what retention respects). */
  readonly savedPosition: number;
  readonly endOffset: number;
  readonly lagBytes: number;
  readonly lagMessages: number;
  readonly forwardedMessages: number;
  readonly forwardedBytes: number;
  readonly lastAckWallMs?: number;
  readonly droppedMessages: number;
  readonly droppedBytes: number;
  /** Messages not sent because they came from this edge through the hub (a loop). */
  readonly loopedMessages: number;
}

export interface UplinkStatus {
  readonly site: string;
  readonly hubs: readonly string[];
  /** `connecting`, `up`, `closed`. */
  readonly state: string;
  /** The hub address of the live connection. */
  readonly hub?: string;
  readonly connects: number;
  readonly failures: number;
  readonly lastError?: string;
  readonly inFlightBytes: number;
  readonly partitions: readonly UplinkPartitionStatus[];
}

export interface UplinkView {
  status(): UplinkStatus;
}

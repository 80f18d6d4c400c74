/**
 * @module The cluster's own state, kept in its metadata group `__cluster-0`: who the members are
 * (node id and peer address), which are leaving, and where each partition's copies are placed.
 * Every node applies the group's committed records in order (lib/store/state_log.ts), so every
 * node reaches the same state; `--peers` only seeds a new cluster's first record.
 *
 * Records are JSON objects (one per MetaQ record), `v` 1:
 *
 * ```text
 * {"v":1,"kind":"init","members":[{"id":1,"peer":"h:8124"},...],"replicas":3}
 * {"v":1,"kind":"add","id":4,"peer":"h:8124"}
 * {"v":1,"kind":"remove","id":2,"groups":{...}}       the member leaves, its copies placed elsewhere
 * {"v":1,"kind":"place","groups":{"orders-0":[1,3,4]}} new placements (one step for many groups)
 * {"v":1,"kind":"topic-create","name":"orders","partitions":8}  the topic catalogue
 * {"v":1,"kind":"topic-delete","name":"orders"}                  (lib/broker/topic_catalogue.ts)
 * {"v":1,"kind":"snapshot","base":N,"state":{...}}     the whole state, as of offset N
 * ```
 *
 * Placement: a group's copies are those its last `place` record names; a group never placed
 * has the copies rendezvous hashing picks over the members of the `init` record (placement.ts),
 * so adding a node moves nothing until a placement says so. The broker's own logs (`__` topics)
 * are held by every member that is not leaving. Partitions a topic gains in the catalogue are
 * placed like configured ones (hashing, until a placement moves them). A snapshot written before
 * the catalogue existed has no `topics`: it restores an empty catalogue. Pure: no I/O, no time.
 */
import { VOTERS_MAX } from "./quorum.ts";
import { isInternalTopic, replicasOf } from "./placement.ts";
import {
  type CatalogueJson,
  isTopicRecord,
  TopicCatalogue,
  type TopicRecord,
} from "../config/topic_catalogue.ts";

export interface Member {
  readonly id: number;
  /** `host:port` of its peer port. */
  readonly peer: string;
  readonly leaving: boolean;
}

/** One group's placement: its copies, and the copies before the last change (if any). */
export interface Placed {
  readonly replicas: readonly number[];
  readonly previous?: readonly number[];
}

export type ClusterRecord =
  | {
    readonly kind: "init";
    readonly members: readonly { readonly id: number; readonly peer: string }[];
    readonly replicas: number;
  }
  | { readonly kind: "add"; readonly id: number; readonly peer: string }
  | {
    readonly kind: "remove";
    readonly id: number;
    /** Where the leaving member's copies go (in the same step, so none is left behind). */
    readonly groups?: Readonly<Record<string, readonly number[]>>;
  }
  | { readonly kind: "place"; readonly groups: Readonly<Record<string, readonly number[]>> }
  | TopicRecord;

interface SnapshotState {
  readonly members: readonly Member[];
  readonly seed: readonly number[];
  readonly replicas: number;
  readonly placement: Readonly<Record<string, Placed>>;
  /** Absent in snapshots written before the topic catalogue. */
  readonly topics?: CatalogueJson;
}

/** Node ids are those `--peers` accepts. */
const NODE_ID_MAX = 1023;

export class ClusterState {
  #members = new Map<number, Member>();
  /** The members of the `init` record: the default placement hashes over them, for ever. */
  #seed: readonly number[] = [];
  #replicas = 1;
  #placement = new Map<string, Placed>();
  #initialized = false;
  /** Topics created, grown and deleted by an operator. */
  readonly topics = new TopicCatalogue();
  /** Bumped on every change, so readers can tell cheaply that something moved. */
  version = 0;

  get initialized(): boolean {
    return this.#initialized;
  }

  get replicationFactor(): number {
    return this.#replicas;
  }

  /** Every member, leaving ones included, by id. */
  members(): Member[] {
    return [...this.#members.values()].sort((a, b) => a.id - b.id);
  }

  member(id: number): Member | undefined {
    return this.#members.get(id);
  }

  /** Members that hold the broker's own logs and receive new placements. */
  activeIds(): number[] {
    return this.members().filter((member) => !member.leaving).map((member) => member.id);
  }

  /** The nodes that should hold `topic`-`partition` (none once the topic is deleted). */
  replicasOf(topic: string, partition: number): number[] {
    if (isInternalTopic(topic)) return this.activeIds().slice(0, VOTERS_MAX);
    if (this.topics.entry(topic)?.deleted) return [];
    const placed = this.#placement.get(`${topic}-${partition}`);
    if (placed) return [...placed.replicas];
    return replicasOf(topic, partition, this.#seed, this.#replicas);
  }

  /** The recorded placement of a group, if any. */
  placed(group: string): Placed | undefined {
    return this.#placement.get(group);
  }

  /** Every group with a recorded placement. */
  placedGroups(): string[] {
    return [...this.#placement.keys()].sort();
  }

  /**
   * The voters a new copy of `group` on `node` starts from: the group's copies before the change
   * that placed it here (it joins as a learner), or the copies themselves for a new group.
   */
  seedVotersOf(topic: string, partition: number, node: number): number[] {
    const placed = this.#placement.get(`${topic}-${partition}`);
    if (placed?.previous && !placed.previous.includes(node) && placed.previous.length > 0) {
      return [...placed.previous];
    }
    return this.replicasOf(topic, partition);
  }

  /** Why `record` cannot apply to this state, or undefined when it can. */
  problemWith(record: ClusterRecord): string | undefined {
    switch (record.kind) {
      case "init":
        return this.#initialized ? "the cluster is initialized already" : undefined;
      case "add": {
        if (!validId(record.id)) return `bad node id ${record.id}`;
        if (!validAddress(record.peer)) return `bad peer address '${record.peer}'`;
        const known = this.#members.get(record.id);
        if (known && !known.leaving) return `node ${record.id} is a member already`;
        if (this.#members.size >= VOTERS_MAX * 4) return "too many members";
        return undefined;
      }
      case "remove": {
        const member = this.#members.get(record.id);
        if (!member) return `node ${record.id} is not a member`;
        if (member.leaving) return `node ${record.id} is leaving already`;
        if (this.activeIds().length <= 1) return "the last member cannot leave";
        return this.#placementProblem(record.groups ?? {});
      }
      case "place":
        return this.#placementProblem(record.groups);
      case "topic-create":
      case "topic-delete":
        return this.topics.problemWith(record);
    }
  }

  #placementProblem(groups: Readonly<Record<string, readonly number[]>>): string | undefined {
    for (const [group, replicas] of Object.entries(groups)) {
      if (!/^.+-\d+$/.test(group)) return `bad group name '${group}'`;
      if (replicas.length < 1 || replicas.length > VOTERS_MAX) {
        return `${group}: ${replicas.length} copies`;
      }
      for (const id of replicas) {
        const member = this.#members.get(id);
        if (!member) return `${group}: node ${id} is not a member`;
      }
      if (new Set(replicas).size !== replicas.length) return `${group}: a node twice`;
    }
    return undefined;
  }

  /**
   * Applies the data of the committed record at `offset`. Records that do not apply (a second
   * `init`, an unknown kind, bad JSON, a snapshot found anywhere but at its base) change
   * nothing: every node skips them alike.
   */
  apply(data: Uint8Array, offset?: number): { snapshot?: { base: number } } {
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(data));
    } catch {
      return {};
    }
    const record = parsed as { v?: number; kind?: string } & Record<string, unknown>;
    if (record?.v !== 1) return {};
    if (record.kind === "snapshot") {
      if (offset !== undefined && Number(record.base) !== offset) return {};
      this.#restore(record.state as SnapshotState);
      return { snapshot: { base: Number(record.base) } };
    }
    const typed = record as unknown as ClusterRecord;
    if (!isRecord(typed) || this.problemWith(typed) !== undefined) return {};
    this.#applyRecord(typed);
    this.version++;
    return {};
  }

  /** The whole state as one snapshot record's data, as of offset `base`. */
  snapshot(base: number): Uint8Array {
    const state: SnapshotState = {
      members: this.members(),
      seed: this.#seed,
      replicas: this.#replicas,
      placement: Object.fromEntries(this.#placement),
      topics: this.topics.toJson(),
    };
    return encodeJson({ v: 1, kind: "snapshot", base, state });
  }

  #applyRecord(record: ClusterRecord): void {
    switch (record.kind) {
      case "init":
        for (const { id, peer } of record.members) {
          this.#members.set(id, { id, peer, leaving: false });
        }
        this.#seed = record.members.map((member) => member.id).sort((a, b) => a - b);
        this.#replicas = Math.max(1, Math.min(record.replicas, VOTERS_MAX));
        this.#initialized = true;
        return;
      case "add":
        this.#members.set(record.id, { id: record.id, peer: record.peer, leaving: false });
        return;
      case "remove": {
        const member = this.#members.get(record.id)!;
        this.#place(record.groups ?? {});
        this.#members.set(record.id, { ...member, leaving: true });
        return;
      }
      case "place":
        this.#place(record.groups);
        return;
      case "topic-create":
      case "topic-delete":
        this.topics.apply(record);
        return;
    }
  }

  #place(groups: Readonly<Record<string, readonly number[]>>): void {
    for (const [group, replicas] of Object.entries(groups)) {
      const [topic, partition] = splitGroup(group);
      const before = this.replicasOf(topic, partition);
      const sorted = [...replicas].sort((a, b) => a - b);
      this.#placement.set(group, { replicas: sorted, previous: before });
    }
  }

  #restore(state: SnapshotState): void {
    this.#members = new Map(state.members.map((member) => [member.id, { ...member }]));
    this.#seed = [...state.seed];
    this.#replicas = state.replicas;
    this.#placement = new Map(Object.entries(state.placement));
    this.topics.restore(state.topics ?? {});
    this.#initialized = true;
    this.version++;
  }
}

/** A record as the bytes of one MetaQ record's data. */
export function encodeClusterRecord(record: ClusterRecord): Uint8Array {
  return encodeJson({ v: 1, ...record });
}

function encodeJson(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

function isRecord(record: ClusterRecord): boolean {
  switch (record.kind) {
    case "init":
      return Array.isArray(record.members) && Number.isInteger(record.replicas) &&
        record.members.every((member) => validId(member?.id) && validAddress(member?.peer));
    case "add":
      return validId(record.id) && typeof record.peer === "string";
    case "remove":
      return validId(record.id) && (record.groups === undefined || validGroups(record.groups));
    case "place":
      return validGroups(record.groups);
    case "topic-create":
    case "topic-delete":
      return isTopicRecord(record);
    default:
      return false;
  }
}

function validGroups(groups: unknown): boolean {
  return typeof groups === "object" && groups !== null &&
    Object.values(groups).every((replicas) =>
      Array.isArray(replicas) && replicas.every((id) => validId(id))
    );
}

function validId(id: unknown): id is number {
  return Number.isInteger(id) && (id as number) >= 1 && (id as number) <= NODE_ID_MAX;
}

/** `host:port` with a port in range. */
export function validAddress(address: unknown): address is string {
  if (typeof address !== "string") return false;
  const match = /^(.+):(\d{1,5})$/.exec(address);
  return match !== null && Number(match[2]) >= 1 && Number(match[2]) <= 65535 &&
    !/\s/.test(address);
}

function splitGroup(group: string): [string, number] {
  const dash = group.lastIndexOf("-");
  return [group.slice(0, dash), Number(group.slice(dash + 1))];
}

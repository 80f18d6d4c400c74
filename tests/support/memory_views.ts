/**
 * @module Small in-memory implementations of the HTTP API's provider interfaces (GroupsView,
 * ClusterView), standing in for lib/groups and lib/cluster in tests of the API and dashboard.
 * They keep real state: a commit moves an offset, a reset is visible to the next describe.
 */
import { BrokerError } from "../../lib/errors.ts";
import type {
  ClusterStatus,
  ClusterView,
  GroupDescription,
  GroupOffsetReset,
  GroupsView,
} from "../../lib/http/views.ts";

export class MemoryGroups implements GroupsView {
  readonly #groups = new Map<string, { members: string[]; offsets: Map<string, number> }>();
  /** Groups whose reset is refused (as a real provider refuses while members are active). */
  readonly locked = new Set<string>();
  readonly resets: GroupOffsetReset[] = [];

  /** Records that `group` has consumed `topic`/`partition` up to `offset`. */
  commit(group: string, topic: string, partition: number, offset: number, member = "m1"): void {
    let entry = this.#groups.get(group);
    if (!entry) this.#groups.set(group, entry = { members: [], offsets: new Map() });
    if (!entry.members.includes(member)) entry.members.push(member);
    entry.offsets.set(`${topic}\u0000${partition}`, offset);
  }

  list(): string[] {
    return [...this.#groups.keys()];
  }

  describe(group: string): GroupDescription | undefined {
    const entry = this.#groups.get(group);
    if (!entry) return undefined;
    return {
      group,
      members: entry.members.map((id) => ({ id, topics: this.#topics(group) })),
      offsets: [...entry.offsets].map(([key, offset]) => {
        const [topic, partition] = key.split("\u0000");
        return { topic, partition: Number(partition), offset, owner: entry.members[0] };
      }),
    };
  }

  reset(request: GroupOffsetReset): void {
    if (this.locked.has(request.group)) {
      throw new BrokerError("conflict", `group ${request.group} has active members`);
    }
    this.resets.push(request);
    this.commit(request.group, request.topic, request.partition, request.offset);
  }

  #topics(group: string): string[] {
    const offsets = this.#groups.get(group)?.offsets ?? new Map();
    return [...new Set([...offsets.keys()].map((key) => key.split("\u0000")[0]))];
  }
}

/** A three-node cluster seen from its leader. */
export function threeNodeCluster(): ClusterView & { current: ClusterStatus } {
  const view = {
    current: {
      nodeId: "1",
      role: "leader",
      term: 7,
      commitIndex: 42,
      leaderId: "1",
      ready: true,
      nodes: [
        { id: "1", address: "10.0.0.1:8123", role: "leader", healthy: true, matchIndex: 42 },
        { id: "2", address: "10.0.0.2:8123", role: "follower", healthy: true, matchIndex: 42 },
        { id: "3", address: "10.0.0.3:8123", role: "follower", healthy: false, matchIndex: 30 },
      ],
    } as ClusterStatus,
    status(): ClusterStatus {
      return view.current;
    },
  };
  return view;
}

import { describe, expect, test } from "bun:test";
import {
  type ClusterRecord,
  ClusterState,
  encodeClusterRecord,
} from "../../../lib/cluster/cluster_state.ts";
import { replicasOf } from "../../../lib/cluster/placement.ts";
import { planPlacement } from "../../../lib/cluster/placement_plan.ts";

function stateOf(...records: ClusterRecord[]): ClusterState {
  const state = new ClusterState();
  for (const record of records) state.apply(encodeClusterRecord(record));
  return state;
}

const INIT: ClusterRecord = {
  kind: "init",
  members: [{ id: 1, peer: "a:1" }, { id: 2, peer: "b:1" }, { id: 3, peer: "c:1" }],
  replicas: 3,
};

describe("cluster state", () => {
  test("members come from init and add; a new member changes no placement", () => {
    const state = stateOf(INIT, { kind: "add", id: 4, peer: "d:1" });
    expect(state.members().map((member) => member.id)).toEqual([1, 2, 3, 4]);
    expect(state.replicasOf("orders", 0)).toEqual([1, 2, 3]);
    // The broker's own logs go to every active member.
    expect(state.replicasOf("__meta", 0)).toEqual([1, 2, 3, 4]);
  });

  test("placement is recorded with the copies it replaces; a leaving member holds no internal log", () => {
    const state = stateOf(INIT, { kind: "add", id: 4, peer: "d:1" }, {
      kind: "place",
      groups: { "orders-0": [4, 1, 2] },
    }, { kind: "remove", id: 3 });
    expect(state.replicasOf("orders", 0)).toEqual([1, 2, 4]);
    expect(state.placed("orders-0")).toEqual({ replicas: [1, 2, 4], previous: [1, 2, 3] });
    // Node 4 joins orders-0 as a learner of the copies before; 1 and 2 are voters already.
    expect(state.seedVotersOf("orders", 0, 4)).toEqual([1, 2, 3]);
    expect(state.replicasOf("__tx", 0)).toEqual([1, 2, 4]);
    expect(state.member(3)?.leaving).toBe(true);
  });

  test("records that do not apply change nothing, on every node alike", () => {
    const state = stateOf(INIT);
    const version = state.version;
    for (
      const bad of [
        INIT,
        { kind: "add", id: 2, peer: "x:1" },
        { kind: "add", id: 0, peer: "x:1" },
        { kind: "add", id: 5, peer: "no port" },
        { kind: "remove", id: 9 },
        { kind: "place", groups: { "orders-0": [1, 9] } },
        { kind: "place", groups: { "orders-0": [1, 1] } },
      ] as ClusterRecord[]
    ) {
      expect(state.problemWith(bad)).toBeString();
      state.apply(encodeClusterRecord(bad));
    }
    state.apply(new TextEncoder().encode("not json"));
    expect(state.version).toBe(version);
  });

  test("a snapshot restores the same state", () => {
    const state = stateOf(INIT, { kind: "add", id: 4, peer: "d:1" }, {
      kind: "place",
      groups: { "t-1": [2, 3, 4] },
    });
    const copy = new ClusterState();
    expect(copy.apply(state.snapshot(77))).toEqual({ snapshot: { base: 77 } });
    expect(copy.members()).toEqual(state.members());
    expect(copy.replicasOf("t", 1)).toEqual([2, 3, 4]);
    expect(copy.replicasOf("t", 2)).toEqual(replicasOf("t", 2, [1, 2, 3], 3));
  });
});

describe("the topic catalogue in the cluster state", () => {
  test("topic records apply in order; a deleted topic has no copies", () => {
    const state = stateOf(
      INIT,
      { kind: "topic-create", name: "clicks", partitions: 6 },
      { kind: "topic-create", name: "clicks", partitions: 2 }, // a shrink: skipped on every node
      { kind: "topic-create", name: "gone", partitions: 1 },
      { kind: "topic-delete", name: "gone" },
    );
    expect(state.topics.entries()).toEqual([
      ["clicks", { partitions: 6 }],
      ["gone", { deleted: true }],
    ]);
    expect(state.problemWith({ kind: "topic-create", name: "clicks", partitions: 3 })).toContain(
      "Cannot shrink topic clicks from 6 to 3",
    );
    // New partitions are placed like configured ones: by hashing over the seed members.
    expect(state.replicasOf("clicks", 5)).toEqual(replicasOf("clicks", 5, [1, 2, 3], 3));
    expect(state.replicasOf("gone", 0)).toEqual([]);
  });

  test("the catalogue is in the snapshot; a snapshot written before it restores none", () => {
    const state = stateOf(INIT, { kind: "topic-create", name: "clicks", partitions: 6 }, {
      kind: "topic-delete",
      name: "orders",
    });
    const copy = new ClusterState();
    copy.apply(state.snapshot(10));
    expect(copy.topics.entries()).toEqual(state.topics.entries());
    const old = JSON.parse(new TextDecoder().decode(stateOf(INIT).snapshot(20)));
    delete old.state.topics;
    const fromOld = new ClusterState();
    expect(fromOld.apply(new TextEncoder().encode(JSON.stringify(old)), 20)).toEqual({
      snapshot: { base: 20 },
    });
    expect(fromOld.members().map((member) => member.id)).toEqual([1, 2, 3]);
    expect(fromOld.topics.entries()).toEqual([]);
  });
});

describe("placement plans", () => {
  const groups = (count: number) =>
    new Map(Array.from({ length: count }, (_, index) => [`t-${index}`, [1, 2, 3]]));

  test("a fourth node gets a fair share, moving as few copies as needed", () => {
    const moves = planPlacement({ groups: groups(8), active: [1, 2, 3, 4] });
    const counts = new Map<number, number>();
    const after = new Map(groups(8));
    for (const move of moves) after.set(move.group, [...move.to]);
    for (const replicas of after.values()) {
      for (const id of replicas) counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    // 24 copies over 4 nodes: 6 each; node 4 got 6, so 6 copies moved.
    expect([...counts.values()].sort()).toEqual([6, 6, 6, 6]);
    expect(moves.length).toBe(6);
    for (const move of moves) expect(new Set(move.to).size).toBe(3);
  });

  test("a leaving node is drained; nothing else moves when the rest is even", () => {
    const input = new Map([["a-0", [1, 2, 4]], ["a-1", [1, 3, 4]], ["a-2", [2, 3, 4]]]);
    const moves = planPlacement({ groups: input, active: [1, 2, 3] });
    expect(moves.map((move) => [move.group, move.to])).toEqual([
      ["a-0", [1, 2, 3]],
      ["a-1", [1, 2, 3]],
      ["a-2", [1, 2, 3]],
    ]);
  });

  test("a group shrinks when no active node is left to take a copy", () => {
    const moves = planPlacement({ groups: new Map([["a-0", [1, 2, 3]]]), active: [1, 2] });
    expect(moves).toEqual([{ group: "a-0", from: [1, 2, 3], to: [1, 2] }]);
  });
});

import { describe, expect, test } from "bun:test";
import { BrokerError } from "../../../../lib/errors.ts";
import {
  GroupCoordinator,
  MEMBERS_PER_GROUP_MAX,
  TOPICS_PER_MEMBER_MAX,
} from "../../../../lib/broker/groups/coordinator.ts";
import type { Assignment } from "../../../../lib/protocol/group_wire.ts";

const SESSION_MS = 1000;

function coordinator() {
  return new GroupCoordinator({ brokerId: 0, sessionTimeoutMs: SESSION_MS });
}

function join(c: GroupCoordinator, memberId: string, nowMs = 0, partitions = 6) {
  return c.join({
    group: "g",
    memberId,
    topics: [{ topic: "orders", partitions }],
    strategy: "DEFAULT",
    nowMs,
  });
}

const owned = (assignment: Assignment) => assignment.partitions.map((p) => p.partition);

/** Fetches the assignment and acknowledges it, as a member that applied it would. */
function apply(c: GroupCoordinator, memberId: string, nowMs = 0): Assignment {
  const assignment = c.assignment({ group: "g", memberId, nowMs });
  c.heartbeat({ group: "g", memberId, generation: assignment.generation, nowMs });
  return assignment;
}

function errorKind(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    if (error instanceof BrokerError) return error.kind;
    throw error;
  }
  return undefined;
}

describe("membership and hand-over", () => {
  test("the first member owns every partition at once, in generation 1", () => {
    const c = coordinator();
    expect(join(c, "a")).toEqual({ generation: 1, sessionTimeoutMs: SESSION_MS });
    const assignment = c.assignment({ group: "g", memberId: "a", nowMs: 0 });
    expect(assignment.generation).toBe(1);
    expect(owned(assignment)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(assignment.pending).toBe(0);
    expect(c.takeEffects()).toEqual([
      { kind: "rebalanced", group: "g", generation: 1, reason: "member a joined", members: 1 },
    ]);
  });

  test("a joining member waits until the old owner acknowledges the new generation", () => {
    const c = coordinator();
    join(c, "a");
    apply(c, "a");
    expect(join(c, "b").generation).toBe(2);
    expect(owned(c.assignment({ group: "g", memberId: "b", nowMs: 0 }))).toEqual([]);
    expect(c.heartbeat({ group: "g", memberId: "b", generation: 2, nowMs: 0 }).pending).toBe(3);
    // a still owns 3..5 until it says it applied generation 2; its assignment already omits them.
    expect(owned(c.assignment({ group: "g", memberId: "a", nowMs: 0 }))).toEqual([0, 1, 2]);
    expect(c.describe("g", 0).owners.get("orders-4")).toBe("a");
    c.heartbeat({ group: "g", memberId: "a", generation: 2, nowMs: 0 });
    const b = c.assignment({ group: "g", memberId: "b", nowMs: 0 });
    expect(owned(b)).toEqual([3, 4, 5]);
    expect(b.partitions.every((p) => p.grantedAt === 2)).toBe(true);
    expect(b.pending).toBe(0);
  });

  test("an old owner can still commit a partition it is giving up, in the new generation", () => {
    const c = coordinator();
    join(c, "a");
    apply(c, "a");
    join(c, "b");
    const commit = { group: "g", memberId: "a", topic: "orders", partition: 5, nowMs: 0 };
    expect(c.commit({ ...commit, generation: 2, offset: 700 })).toEqual({
      offset: 700,
      changed: true,
    });
    c.heartbeat({ group: "g", memberId: "a", generation: 2, nowMs: 0 });
    expect(errorKind(() => c.commit({ ...commit, generation: 2, offset: 800 }))).toBe("notOwner");
    const b = c.assignment({ group: "g", memberId: "b", nowMs: 0 });
    expect(b.partitions.find((p) => p.partition === 5)?.offset).toBe(700);
  });

  test("a member that misses heartbeats loses its partitions to the others", () => {
    const c = coordinator();
    join(c, "a", 0);
    apply(c, "a", 0);
    join(c, "b", 0);
    apply(c, "a", 0);
    apply(c, "b", 0);
    c.tick(SESSION_MS); // not yet: the timeout has to be exceeded
    expect(c.describe("g", SESSION_MS).members.length).toBe(2);
    c.heartbeat({ group: "g", memberId: "a", generation: 2, nowMs: 600 });
    c.tick(SESSION_MS + 1);
    expect(c.describe("g", SESSION_MS + 1).members.map((m) => m.id)).toEqual(["a"]);
    const a = c.assignment({ group: "g", memberId: "a", nowMs: SESSION_MS + 1 });
    expect([a.generation, owned(a)]).toEqual([3, [0, 1, 2, 3, 4, 5]]);
    expect(
      errorKind(() => c.heartbeat({ group: "g", memberId: "b", generation: 2, nowMs: 0 })),
    ).toBe("unknownMember");
  });

  test("leaving frees partitions at once", () => {
    const c = coordinator();
    join(c, "a");
    join(c, "b");
    apply(c, "a");
    apply(c, "b");
    c.leave({ group: "g", memberId: "b" });
    expect(owned(c.assignment({ group: "g", memberId: "a", nowMs: 0 }))).toEqual([
      0,
      1,
      2,
      3,
      4,
      5,
    ]);
  });

  test("rejoining with the same topics keeps the generation", () => {
    const c = coordinator();
    join(c, "a");
    expect(join(c, "a").generation).toBe(1);
  });

  test("a group keeps one strategy while it has members", () => {
    const c = coordinator();
    join(c, "a");
    const request = {
      group: "g",
      memberId: "b",
      topics: [{ topic: "orders", partitions: 6 }],
      strategy: "CONSIST" as const,
      nowMs: 0,
    };
    expect(errorKind(() => c.join(request))).toBe("badRequest");
  });
});

describe("bad input is refused and changes nothing", () => {
  function setUp() {
    const c = coordinator();
    join(c, "a");
    join(c, "b");
    apply(c, "a");
    apply(c, "b");
    c.commit({
      group: "g",
      memberId: "a",
      generation: 2,
      topic: "orders",
      partition: 0,
      offset: 100,
      nowMs: 0,
    });
    c.takeEffects();
    return c;
  }

  const cases: [string, string, (c: GroupCoordinator) => unknown][] = [
    [
      "invalid group name",
      "invalidName",
      (c) => c.assignment({ group: "bad group", memberId: "a", nowMs: 0 }),
    ],
    ["invalid member id", "invalidName", (c) =>
      c.join({
        group: "g",
        memberId: "has space",
        topics: [{ topic: "orders", partitions: 6 }],
        strategy: "DEFAULT",
        nowMs: 0,
      })],
    ["invalid topic name", "invalidName", (c) =>
      c.join({
        group: "g",
        memberId: "c",
        topics: [{ topic: "-bad", partitions: 6 }],
        strategy: "DEFAULT",
        nowMs: 0,
      })],
    [
      "no topics",
      "badRequest",
      (c) => c.join({ group: "g", memberId: "c", topics: [], strategy: "DEFAULT", nowMs: 0 }),
    ],
    [
      "stale generation",
      "staleGeneration",
      (c) =>
        c.commit({
          group: "g",
          memberId: "a",
          generation: 1,
          topic: "orders",
          partition: 0,
          offset: 200,
          nowMs: 0,
        }),
    ],
    [
      "partition owned by another member",
      "notOwner",
      (c) =>
        c.commit({
          group: "g",
          memberId: "a",
          generation: 2,
          topic: "orders",
          partition: 5,
          offset: 200,
          nowMs: 0,
        }),
    ],
    [
      "partition out of range",
      "notOwner",
      (c) =>
        c.commit({
          group: "g",
          memberId: "a",
          generation: 2,
          topic: "orders",
          partition: 6,
          offset: 200,
          nowMs: 0,
        }),
    ],
    [
      "topic the group does not read",
      "notOwner",
      (c) =>
        c.commit({
          group: "g",
          memberId: "a",
          generation: 2,
          topic: "other",
          partition: 0,
          offset: 200,
          nowMs: 0,
        }),
    ],
    [
      "offset going backwards",
      "offsetBackwards",
      (c) =>
        c.commit({
          group: "g",
          memberId: "a",
          generation: 2,
          topic: "orders",
          partition: 0,
          offset: 99,
          nowMs: 0,
        }),
    ],
    [
      "negative offset",
      "invalidOffset",
      (c) =>
        c.commit({
          group: "g",
          memberId: "a",
          generation: 2,
          topic: "orders",
          partition: 0,
          offset: -1,
          nowMs: 0,
        }),
    ],
    [
      "unknown member",
      "unknownMember",
      (c) =>
        c.commit({
          group: "g",
          memberId: "zz",
          generation: 2,
          topic: "orders",
          partition: 0,
          offset: 200,
          nowMs: 0,
        }),
    ],
    [
      "generation never issued",
      "badRequest",
      (c) => c.heartbeat({ group: "g", memberId: "a", generation: 9, nowMs: 0 }),
    ],
    ["reset while members are active", "membersActive", (c) =>
      c.reset({
        group: "g",
        topic: "orders",
        offsets: [{ group: "g", topic: "orders", partition: 0, offset: 0 }],
        force: false,
      })],
  ];

  for (const [name, kind, run] of cases) {
    test(`${name}: ${kind}`, () => {
      const c = setUp();
      const before = c.describe("g", 0);
      expect(errorKind(() => run(c))).toBe(kind);
      expect(c.describe("g", 0)).toEqual(before);
      expect(c.takeEffects()).toEqual([]);
    });
  }
});

describe("offsets", () => {
  test("a commit of an unchanged offset has no effect to persist", () => {
    const c = coordinator();
    join(c, "a");
    c.takeEffects();
    const commit = {
      group: "g",
      memberId: "a",
      generation: 1,
      topic: "orders",
      partition: 2,
      offset: 50,
      nowMs: 0,
    };
    c.commit(commit);
    expect(c.takeEffects()).toEqual([{
      kind: "persist",
      entries: [{ group: "g", topic: "orders", partition: 2, offset: 50 }],
      reset: false,
    }]);
    expect(c.commit(commit)).toEqual({ offset: 50, changed: false });
    expect(c.takeEffects()).toEqual([]);
  });

  test("a forced reset moves the generation and regrants the topic's partitions", () => {
    const c = coordinator();
    join(c, "a");
    apply(c, "a");
    const before = c.assignment({ group: "g", memberId: "a", nowMs: 0 });
    expect(before.partitions[0].grantedAt).toBe(1);
    c.reset({
      group: "g",
      topic: "orders",
      offsets: [{ group: "g", topic: "orders", partition: 0, offset: 0 }],
      force: true,
    });
    const after = c.assignment({ group: "g", memberId: "a", nowMs: 0 });
    expect(after.generation).toBe(2);
    expect(after.partitions.every((p) => p.grantedAt === 2)).toBe(true);
    expect(after.partitions[0].offset).toBe(0);
  });

  test("restored offsets are served in assignments and listed by describe", () => {
    const c = coordinator();
    c.restore([{ group: "g", topic: "orders", partition: 3, offset: 999 }]);
    expect(c.groupNames()).toEqual(["g"]);
    join(c, "a");
    const assignment = c.assignment({ group: "g", memberId: "a", nowMs: 0 });
    expect(assignment.partitions.find((p) => p.partition === 3)?.offset).toBe(999);
  });
});

/** mulberry32: a small seeded PRNG, so a failure can be replayed from its seed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test("no two members ever fetch one partition, over random joins, leaves, expiries and acks", () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    const random = prng(seed);
    const c = coordinator();
    /** What each live member fetches: the partitions of the last assignment it applied. */
    const fetching = new Map<string, Set<number>>();
    const ids = ["m0", "m1", "m2", "m3"];
    let now = 0;
    for (let step = 0; step < 400; step++) {
      now += Math.floor(random() * 300);
      const id = ids[Math.floor(random() * ids.length)];
      const roll = random();
      try {
        if (roll < 0.2) {
          join(c, id, now);
          fetching.set(id, fetching.get(id) ?? new Set());
        } else if (roll < 0.3 && fetching.has(id)) {
          fetching.delete(id); // it stops fetching before it leaves
          c.leave({ group: "g", memberId: id });
        } else if (roll < 0.8 && fetching.has(id)) {
          const assignment = c.assignment({ group: "g", memberId: id, nowMs: now });
          fetching.set(id, new Set(owned(assignment)));
          c.heartbeat({ group: "g", memberId: id, generation: assignment.generation, nowMs: now });
        } else {
          c.tick(now);
          const live = new Set(c.describe("g", now).members.map((member) => member.id));
          // An expired member fences itself: it stops fetching once its session is over.
          for (const member of fetching.keys()) if (!live.has(member)) fetching.delete(member);
        }
      } catch (error) {
        if (!(error instanceof BrokerError) || error.kind !== "unknownMember") throw error;
        fetching.delete(id);
      }
      const seen = new Map<number, string>();
      for (const [member, partitions] of fetching) {
        for (const partition of partitions) {
          expect(seen.get(partition), `seed ${seed} step ${step} partition ${partition}`)
            .toBeUndefined();
          seen.set(partition, member);
        }
      }
    }
  }
});

describe("limits", () => {
  test("a member may subscribe to TOPICS_PER_MEMBER_MAX topics, not one more", () => {
    const c = coordinator();
    const topics = (count: number) =>
      Array.from({ length: count }, (_, i) => ({ topic: `t${i}`, partitions: 1 }));
    const request = { group: "g", memberId: "a", strategy: "DEFAULT" as const, nowMs: 0 };
    expect(errorKind(() => c.join({ ...request, topics: topics(TOPICS_PER_MEMBER_MAX + 1) })))
      .toBe("badRequest");
    expect(c.join({ ...request, topics: topics(TOPICS_PER_MEMBER_MAX) }).generation).toBe(1);
  });

  test("a group takes MEMBERS_PER_GROUP_MAX members, not one more", () => {
    const c = coordinator();
    for (let i = 0; i < MEMBERS_PER_GROUP_MAX; i++) join(c, `m${i}`, 0, 2);
    expect(c.describe("g", 0).members.length).toBe(MEMBERS_PER_GROUP_MAX);
    expect(errorKind(() => join(c, "one-more", 0, 2))).toBe("unavailable");
    expect(join(c, "m0", 0, 2).generation).toBe(MEMBERS_PER_GROUP_MAX); // a member may rejoin
  });
});

import { describe, expect, test } from "bun:test";
import { MemoryRaftLog } from "../../../lib/cluster/raft_log.ts";
import { bytesOf, entryTexts, TestCluster, TIMING } from "./harness.ts";

describe("election", () => {
  test("a follower campaigns after its election timeout, wins and commits its epoch marker", () => {
    const cluster = new TestCluster(3);
    cluster.elect(1);
    const leader = cluster.node(1);
    expect(leader.status.term).toBe(1);
    expect(leader.log.epochs).toEqual([
      { epoch: 0, startOffset: 0 },
      { epoch: 1, startOffset: 0, voters: [1, 2, 3] },
    ]);
    // The marker is the leader's no-op: once a quorum holds it, the leader knows its commit.
    expect(leader.status.commit).toEqual({ offset: 0, epoch: 1 });
    cluster.tick(TIMING.heartbeatTicks);
    for (const id of [2, 3]) {
      expect(cluster.node(id).status.leaderId).toBe(1);
      expect(cluster.node(id).log.epochs).toEqual(leader.log.epochs);
      expect(cluster.node(id).status.commit).toEqual({ offset: 0, epoch: 1 });
    }
  });

  test("pre-vote does not raise the term: only the real campaign does", () => {
    const cluster = new TestCluster(3);
    cluster.cut.add("2>1").add("3>1"); // node 1 hears no pre-vote answers
    for (let tick = 0; tick < TIMING.electionTicksMax + 1; tick++) cluster.tick(1, [1]);
    expect(cluster.node(1).status.role).toBe("preCandidate");
    expect(cluster.node(1).status.term).toBe(0);
    expect(cluster.node(1).hardState.term).toBe(0);
  });

  test("a single-voter group leads alone and commits after its own persistence", () => {
    const cluster = new TestCluster(1);
    cluster.node(1).autoPersist = false;
    cluster.elect(1);
    const node = cluster.node(1);
    expect(node.status.role).toBe("leader");
    expect(node.status.commit).toEqual({ offset: 0, epoch: 0 });
    node.persist();
    expect(node.status.commit).toEqual({ offset: 0, epoch: 1 });
    const result = node.raft.propose(bytesOf("solo"), 7);
    expect(result).toEqual({ kind: "appended", offset: 0, endOffset: 4, term: 1 });
    cluster.flush();
    expect(node.status.commit.offset).toBe(0);
    node.persist();
    cluster.flush();
    expect(node.outcomes).toContainEqual({
      clientTag: 7,
      kind: "ok",
      offset: 0,
      endOffset: 4,
      term: 1,
    });
  });

  test("a vote is persisted in the same Ready that carries the granted reply", () => {
    const cluster = new TestCluster(3);
    cluster.elect(2);
    const voter = cluster.node(1);
    const ready = voter.readies.find((r) =>
      r.messages.some((m) => m.kind === "voteReply" && !m.pre && m.granted)
    );
    expect(ready?.hardState).toEqual({ term: 1, votedFor: 2 });
  });

  test("a voter refuses a candidate whose log is less up to date", () => {
    const cluster = new TestCluster(3);
    cluster.elect(1);
    cluster.node(1).raft.propose(bytesOf("a"), 1);
    cluster.settle();
    cluster.tick(TIMING.heartbeatTicks);
    // Node 3 missed the entry; it cannot win against nodes 1 and 2 that hold it.
    cluster.isolate(1);
    cluster.node(3).log = new MemoryRaftLog();
    cluster.node(3).hardState = { term: 1, votedFor: 1 };
    cluster.node(3).restart();
    for (let tick = 0; tick < 3 * TIMING.electionTicksMax; tick++) cluster.tick(1, [2, 3]);
    expect(cluster.node(3).status.role).not.toBe("leader");
    expect(cluster.leaders()).toContain(2);
  });

  test("an isolated follower that rejoins does not depose the leader or bump the term", () => {
    const cluster = new TestCluster(3);
    cluster.elect(1);
    cluster.tick(TIMING.heartbeatTicks);
    cluster.isolate(3);
    cluster.tick(5 * TIMING.electionTicksMax);
    expect(cluster.node(3).status.term).toBe(1);
    expect(cluster.node(3).status.role).toBe("preCandidate");
    cluster.heal();
    cluster.tick(TIMING.electionTicksMax);
    expect(cluster.leaders()).toEqual([1]);
    for (const id of [1, 2, 3]) expect(cluster.node(id).status.term).toBe(1);
    expect(cluster.node(3).status.leaderId).toBe(1);
  });

  test("check-quorum: a leader cut off from the majority steps down before an election", () => {
    const cluster = new TestCluster(3);
    cluster.elect(1);
    cluster.tick(TIMING.heartbeatTicks);
    const result = cluster.node(1).raft.propose(bytesOf("lost?"), 9);
    expect(result.kind).toBe("appended");
    cluster.isolate(1);
    cluster.flush();
    cluster.queue = [];
    cluster.tick(TIMING.checkQuorumTicks, [1]);
    expect(cluster.node(1).status.role).toBe("follower");
    expect(cluster.node(1).outcomes).toContainEqual({
      clientTag: 9,
      kind: "indeterminate",
      offset: 0,
      endOffset: 5,
      term: 1,
    });
    expect(cluster.node(1).raft.propose(bytesOf("x"), 10)).toEqual({
      kind: "notLeader",
      leaderId: 0,
    });
  });

  test("leader transfer: the target campaigns at once and wins while the old leader refuses writes", () => {
    const cluster = new TestCluster(3);
    cluster.elect(1);
    cluster.node(1).raft.propose(bytesOf("before"), 1);
    cluster.settle();
    expect(cluster.node(1).raft.transferLeadership(3)).toBe(true);
    expect(cluster.node(1).raft.propose(bytesOf("during"), 2)).toEqual({
      kind: "notLeader",
      leaderId: 3,
    });
    cluster.settle();
    expect(cluster.leaders()).toEqual([3]);
    expect(cluster.node(3).status.term).toBe(2);
    cluster.tick(TIMING.heartbeatTicks);
    expect(entryTexts(cluster.node(1).log)).toEqual(["before"]);
    expect(cluster.node(1).status.leaderId).toBe(3);
  });
});

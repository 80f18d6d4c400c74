/**
 * Quiescence: an idle group sleeps (no heartbeats, no ticks) once every copy holds the whole log
 * and its commit; a proposal or a peer's impatience wakes it; the driver wakes followers whose
 * leader's node went silent, and they elect as usual. Sleeping changes no vote or commit rule.
 */
import { describe, expect, test } from "bun:test";
import { bytesOf, entryTexts, TestCluster, TIMING } from "./harness.ts";

const QUIESCE = () => ({ extra: { quiesce: true } });

function quietNodes(cluster: TestCluster): number[] {
  return [...cluster.nodes.values()].filter((node) => node.raft.quiet).map((node) => node.id);
}

/** Three copies led by node 1, holding records "a" and "b", the group asleep. */
function asleepWithTwoRecords(): TestCluster {
  const cluster = new TestCluster(3, QUIESCE);
  cluster.elect(1);
  cluster.node(1).raft.propose(bytesOf("a"), 1);
  cluster.settle();
  cluster.node(1).raft.propose(bytesOf("b"), 2);
  cluster.settle();
  cluster.tick(TIMING.heartbeatTicks * 3);
  expect(quietNodes(cluster)).toEqual([1, 2, 3]);
  return cluster;
}

describe("quiescence", () => {
  test("an idle group goes to sleep and sends nothing more", () => {
    const cluster = new TestCluster(3, QUIESCE);
    cluster.elect(1);
    cluster.node(1).raft.propose(bytesOf("a"), 1);
    cluster.tick(TIMING.heartbeatTicks * 3);
    expect(quietNodes(cluster)).toEqual([1, 2, 3]);
    const sent = cluster.delivered.length;
    cluster.tick(TIMING.electionTicksMax * 5);
    expect(cluster.delivered.length).toBe(sent);
    expect(cluster.leaders()).toEqual([1]);
  });

  test("without the option a group never sleeps", () => {
    const cluster = new TestCluster(3);
    cluster.elect(1);
    cluster.tick(TIMING.electionTicksMax * 2);
    expect(quietNodes(cluster)).toEqual([]);
  });

  test("a proposal wakes the group, commits on every copy, and it sleeps again", () => {
    const cluster = new TestCluster(3, QUIESCE);
    cluster.elect(1);
    cluster.tick(TIMING.heartbeatTicks * 3);
    expect(quietNodes(cluster)).toEqual([1, 2, 3]);
    expect(cluster.node(1).raft.propose(bytesOf("b"), 2).kind).toBe("appended");
    cluster.settle();
    expect(cluster.node(1).outcomes.map((outcome) => outcome.kind)).toEqual(["ok"]);
    for (const node of cluster.nodes.values()) expect(entryTexts(node.log)).toEqual(["b"]);
    cluster.tick(TIMING.heartbeatTicks * 3);
    expect(quietNodes(cluster)).toEqual([1, 2, 3]);
  });

  test("followers told that the leader's node is silent elect a new leader", () => {
    const cluster = new TestCluster(3, QUIESCE);
    cluster.elect(1);
    cluster.node(1).raft.propose(bytesOf("a"), 1);
    cluster.tick(TIMING.heartbeatTicks * 3);
    const term = cluster.node(1).status.term;
    cluster.isolate(1);
    // Asleep, the followers count no time: nothing happens on its own.
    cluster.tick(TIMING.electionTicksMax * 3, [2, 3]);
    expect(cluster.node(2).status.term).toBe(term);
    for (const id of [2, 3]) cluster.node(id).raft.leaderUnreachable();
    cluster.tick(TIMING.electionTicksMax * 3, [2, 3]);
    const [leader] = cluster.leaders().filter((id) => id !== 1);
    expect([2, 3]).toContain(leader);
    expect(cluster.node(leader).status.term).toBeGreaterThan(term);
    // The old leader, back, hears the new term and follows; the log is intact.
    cluster.heal();
    cluster.tick(TIMING.electionTicksMax * 2);
    expect(cluster.leaders()).toEqual([leader]);
    cluster.node(leader).raft.propose(bytesOf("c"), 3);
    cluster.settle();
    cluster.tick(TIMING.heartbeatTicks * 2);
    for (const node of cluster.nodes.values()) expect(entryTexts(node.log)).toEqual(["a", "c"]);
  });

  test("a sleeping leader cut off from its voters, once told so, steps down", () => {
    const cluster = new TestCluster(3, QUIESCE);
    cluster.elect(1);
    cluster.node(1).raft.propose(bytesOf("a"), 1);
    cluster.tick(TIMING.heartbeatTicks * 3);
    expect(quietNodes(cluster)).toEqual([1, 2, 3]);
    cluster.isolate(1);
    // Asleep, it counts no time and would lead on forever.
    cluster.tick(TIMING.electionTicksMax * 3, [1]);
    expect(cluster.node(1).status.role).toBe("leader");
    // Telling a follower changes nothing for a leader, and the reverse.
    cluster.node(1).raft.leaderUnreachable();
    cluster.node(2).raft.quorumUnreachable();
    expect(cluster.node(1).raft.quiet).toBe(true);
    expect(cluster.node(2).raft.quiet).toBe(true);
    cluster.node(1).raft.quorumUnreachable();
    expect(cluster.node(1).raft.quiet).toBe(false);
    // Check-quorum runs again: no voter answers, so it steps down.
    cluster.tick(TIMING.electionTicksMax * 3, [1]);
    expect(cluster.node(1).status.role).not.toBe("leader");
  });

  test("a sleeping leader told wrongly that its voters are silent hears them and sleeps again", () => {
    const cluster = new TestCluster(3, QUIESCE);
    cluster.elect(1);
    cluster.tick(TIMING.heartbeatTicks * 3);
    const term = cluster.node(1).status.term;
    cluster.node(1).raft.quorumUnreachable();
    expect(cluster.node(1).raft.quiet).toBe(false);
    cluster.tick(TIMING.electionTicksMax * 2);
    expect(cluster.leaders()).toEqual([1]);
    expect(cluster.node(1).status.term).toBe(term);
    expect(quietNodes(cluster)).toEqual([1, 2, 3]);
  });

  test("a follower that missed the quiet heartbeat wakes the leader without a new term", () => {
    const cluster = new TestCluster(3, QUIESCE);
    cluster.elect(1);
    // Every copy is caught up: the next heartbeat round is the quiet one, and 3 misses it.
    cluster.cut.add("1>3");
    cluster.tick(TIMING.heartbeatTicks * 2);
    expect(cluster.node(1).raft.quiet).toBe(true);
    expect(cluster.node(3).raft.quiet).toBe(false);
    cluster.heal();
    const term = cluster.node(1).status.term;
    // Node 3 loses patience and pre-votes: the leader wakes and heartbeats again.
    cluster.tick(TIMING.electionTicksMax * 2);
    expect(cluster.leaders()).toEqual([1]);
    expect(cluster.node(1).status.term).toBe(term);
    cluster.tick(TIMING.heartbeatTicks * 3);
    expect(quietNodes(cluster)).toEqual([1, 2, 3]);
  });
});

test("a sleeping follower asked for its vote by its own leader (restarted) wakes and votes", () => {
  const cluster = new TestCluster(3, QUIESCE);
  cluster.elect(1);
  cluster.tick(TIMING.heartbeatTicks * 3);
  expect(quietNodes(cluster)).toEqual([1, 2, 3]);
  const term = cluster.node(1).status.term;
  // Node 1 restarts: it is a follower again and campaigns when its timeout runs out.
  cluster.node(1).restart();
  cluster.tick(TIMING.electionTicksMax * 3);
  expect(cluster.leaders().length).toBe(1);
  expect(cluster.node(cluster.leaders()[0]).status.term).toBeGreaterThan(term);
});

test("a sleeping leader told that a copy's node changed finds the copy's lost tail and refills it", () => {
  const cluster = asleepWithTwoRecords();
  // Node 3 comes back without its last record (a power cut under fsync=interval).
  const node3 = cluster.node(3);
  const [, second] = node3.log.entries;
  node3.log.truncate({ offset: second.offset, epoch: cluster.node(1).status.term });
  node3.restart();
  expect(entryTexts(node3.log)).toEqual(["a"]);
  // Nothing reaches it from a sleeping leader (node 3 is not ticked: it would campaign).
  cluster.tick(TIMING.electionTicksMax * 2, [1, 2]);
  expect(entryTexts(node3.log)).toEqual(["a"]);
  // A follower is not woken by a peer's change; the leader is, and refills the copy.
  cluster.node(2).raft.peerChanged(3);
  expect(cluster.node(2).raft.quiet).toBe(true);
  cluster.node(1).raft.peerChanged(3);
  cluster.tick(TIMING.heartbeatTicks * 3, [1, 2]);
  expect(entryTexts(node3.log)).toEqual(["a", "b"]);
  expect(cluster.leaders()).toEqual([1]);
});

test("a copy restarted into repair that its sleeping leader never heard of wakes the leader and is repaired", () => {
  const cluster = asleepWithTwoRecords();
  const term = cluster.node(1).status.term;
  // Node 3 comes back without its last record and in repair mode (its log was found damaged);
  // the signal that wakes a sleeping leader for a changed copy (peerChanged) is lost.
  const node3 = cluster.node(3);
  const [, second] = node3.log.entries;
  node3.log.truncate({ offset: second.offset, epoch: term });
  node3.restart({ repair: {} });
  expect(node3.status.repair).toBeDefined();
  // A repairing copy may not campaign, but it tells the voters it lost its leader; the
  // leader wakes, heartbeats, and refills the copy, which leaves repair. Nobody is deposed.
  cluster.tick(TIMING.electionTicksMax * 3);
  expect(entryTexts(node3.log)).toEqual(["a", "b"]);
  expect(node3.status.repair).toBeUndefined();
  expect(cluster.leaders()).toEqual([1]);
  expect(cluster.node(1).status.term).toBe(term);
  // Then the group sleeps again.
  cluster.tick(TIMING.heartbeatTicks * 3);
  expect(quietNodes(cluster)).toEqual([1, 2, 3]);
});

test("a sleeping follower woken by another copy's vote request wakes its sleeping leader and keeps refusing", () => {
  // T09 over netns: a follower cut off from the leader pre-votes once its links come back, but
  // its link to the leader is still stalled. The other follower wakes on the request and counts
  // time; unless the leader, asleep, learns of it and heartbeats, its lease runs out and the
  // healthy group elects (every group did, in the CI campaign).
  const cluster = asleepWithTwoRecords();
  const term = cluster.node(1).status.term;
  cluster.cut.add("1>3");
  cluster.cut.add("3>1");
  cluster.node(3).raft.leaderUnreachable();
  cluster.tick(TIMING.electionTicksMax * 6);
  expect(cluster.leaders()).toEqual([1]);
  for (const id of [1, 2]) expect(cluster.node(id).status.term).toBe(term);
  // Back to normal once node 3 hears its leader again: it follows, the group sleeps.
  cluster.heal();
  cluster.tick(TIMING.electionTicksMax * 2);
  expect(cluster.leaders()).toEqual([1]);
  cluster.tick(TIMING.heartbeatTicks * 3);
  expect(quietNodes(cluster)).toEqual([1, 2, 3]);
});

/**
 * Membership changes in the Raft core: a learner receives the log without voting; the leader
 * moves the voters toward a target one change at a time, each written by a new term's marker,
 * and only once a learner has caught up; a leader that is removed hands over first; a removed
 * node cannot disrupt the group; configurations travel in markers, resets and hand-overs.
 */
import { describe, expect, test } from "bun:test";
import { decodeMessage, encodeMessage, type Message } from "../../../lib/cluster/messages.ts";
import { epochsFrom, votersOf } from "../../../lib/cluster/raft_log.ts";
import { bytesOf, entryTexts, TestCluster, TIMING } from "./harness.ts";

/** Proposes `texts` on `leader` and settles the network. */
function write(cluster: TestCluster, leader: number, texts: readonly string[]): void {
  for (const [index, text] of texts.entries()) {
    const result = cluster.node(leader).raft.propose(bytesOf(text), 1000 + index);
    expect(result.kind).toBe("appended");
  }
  cluster.settle();
}

/** Ticks every node until `done` holds (bounded), settling after each tick. */
function tickUntil(cluster: TestCluster, done: () => boolean, ticksMax = 400): void {
  for (let tick = 0; tick < ticksMax && !done(); tick++) cluster.tick(1);
  expect(done()).toBe(true);
}

function setTarget(cluster: TestCluster, voters: readonly number[]): void {
  for (const node of cluster.nodes.values()) node.raft.setTargetVoters(voters);
}

describe("membership", () => {
  test("a learner catches up without voting, then becomes the fourth voter", () => {
    const cluster = new TestCluster(3);
    cluster.elect(1);
    write(cluster, 1, ["a", "b", "c"]);
    const learner = cluster.addNode(4, [1, 2, 3]);
    cluster.node(1).raft.setLearners([4]);
    cluster.settle();
    expect(entryTexts(learner.log)).toEqual(["a", "b", "c"]);
    expect(learner.raft.voters).toEqual([1, 2, 3]);
    // Alone for many election timeouts, a learner never campaigns.
    cluster.isolate(4);
    cluster.tick(TIMING.electionTicksMax * 3, [4]);
    expect(learner.events.some((event) => event.kind === "campaign")).toBe(false);
    cluster.heal();

    const termBefore = cluster.node(1).status.term;
    setTarget(cluster, [1, 2, 3, 4]);
    tickUntil(cluster, () => [...cluster.nodes.values()].every((n) => n.raft.voters.length === 4));
    const leader = cluster.leaders()[0];
    expect(cluster.node(leader).status.term).toBeGreaterThan(termBefore);
    // The new configuration was written by a marker and everyone holds the same log.
    expect(votersOf(cluster.node(leader).log.epochs)).toEqual([1, 2, 3, 4]);
    write(cluster, leader, ["d"]);
    for (const node of cluster.nodes.values()) {
      expect(entryTexts(node.log)).toEqual(["a", "b", "c", "d"]);
    }

    // Four voters need three: with two cut off, nothing more commits.
    const others = [1, 2, 3, 4].filter((id) => id !== leader);
    cluster.isolate(others[0]);
    cluster.isolate(others[1]);
    const commitBefore = cluster.node(leader).commit.offset;
    cluster.node(leader).raft.propose(bytesOf("e"), 2000);
    cluster.tick(TIMING.heartbeatTicks * 2, [leader, others[2]]);
    expect(cluster.node(leader).commit.offset).toBe(commitBefore);
  });

  test("a learner that has not caught up is not made a voter", () => {
    const cluster = new TestCluster(3);
    cluster.elect(1);
    write(cluster, 1, ["a"]);
    cluster.addNode(4, [1, 2, 3]);
    cluster.cut.add("1>4");
    cluster.node(1).raft.setLearners([4]);
    setTarget(cluster, [1, 2, 3, 4]);
    cluster.tick(TIMING.electionTicksMax * 3, [1, 2, 3]);
    expect(cluster.node(1).raft.voters).toEqual([1, 2, 3]);
    expect(cluster.leaders()).toEqual([1]);
    cluster.heal();
    tickUntil(cluster, () => cluster.node(1).raft.voters.length === 4);
  });

  test("a leader being removed hands over to a remaining voter, which writes the change", () => {
    const cluster = new TestCluster(3);
    cluster.elect(1);
    write(cluster, 1, ["a", "b"]);
    setTarget(cluster, [2, 3]);
    tickUntil(cluster, () => cluster.node(2).raft.voters.length === 2);
    const leader = cluster.leaders()[0];
    expect([2, 3]).toContain(leader);
    expect(cluster.node(leader).raft.voters).toEqual([2, 3]);
    write(cluster, leader, ["c"]);
    expect(entryTexts(cluster.node(leader).log)).toEqual(["a", "b", "c"]);
    // The new leader kept sending to node 1 until its marker committed: node 1 knows it is out.
    expect(cluster.node(1).raft.voters).toEqual([2, 3]);
    expect(cluster.node(1).events).toContainEqual(
      expect.objectContaining({ kind: "configurationCommitted", voters: [2, 3], removed: true }),
    );
    expect(cluster.node(2).events).toContainEqual(
      expect.objectContaining({ kind: "configurationCommitted", voters: [2, 3], removed: false }),
    );
    // The removed node, left alone, never campaigns once its log names it no voter.
    const campaignsBefore = cluster.node(1).events.filter((e) => e.kind === "campaign").length;
    cluster.isolate(1);
    cluster.tick(TIMING.electionTicksMax * 3, [1]);
    expect(cluster.node(1).events.filter((e) => e.kind === "campaign").length).toBe(
      campaignsBefore,
    );
  });

  test("a removed node that missed its removal cannot disrupt the group", () => {
    const cluster = new TestCluster(3);
    cluster.elect(1);
    write(cluster, 1, ["a"]);
    cluster.isolate(3);
    setTarget(cluster, [1, 2]);
    tickUntil(cluster, () => cluster.node(1).raft.voters.length === 2, 600);
    const leader = cluster.leaders()[0];
    const term = cluster.node(leader).status.term;
    // Node 3 still believes it is a voter: it campaigns, but nobody counts it any more.
    expect(cluster.node(3).raft.voters).toEqual([1, 2, 3]);
    cluster.tick(TIMING.electionTicksMax * 2, [3]);
    cluster.heal();
    cluster.tick(TIMING.electionTicksMax * 2);
    expect(cluster.leaders()).toEqual([leader]);
    expect(cluster.node(leader).status.term).toBe(term);
    write(cluster, leader, ["b"]);
    expect(entryTexts(cluster.node(leader).log)).toEqual(["a", "b"]);
  });

  test("voters change one at a time: adding two learners takes two terms", () => {
    const cluster = new TestCluster(1);
    cluster.elect(1);
    write(cluster, 1, ["a"]);
    cluster.addNode(2, [1]);
    cluster.addNode(3, [1]);
    cluster.node(1).raft.setLearners([2, 3]);
    setTarget(cluster, [1, 2, 3]);
    tickUntil(
      cluster,
      () => cluster.leaders().length === 1 && cluster.node(1).raft.voters.length === 3,
    );
    const leader = cluster.leaders()[0];
    const configs = cluster.node(leader).log.epochs.filter((e) => e.voters).map((e) => e.voters);
    expect(configs).toEqual([[1], [1, 2], [1, 2, 3]]);
    write(cluster, leader, ["b"]);
    for (const node of cluster.nodes.values()) expect(entryTexts(node.log)).toEqual(["a", "b"]);
  });

  test("retention keeps the configuration in force at the new base", () => {
    const epochs = [
      { epoch: 0, startOffset: 0 },
      { epoch: 1, startOffset: 0, voters: [1, 2, 3] },
      { epoch: 2, startOffset: 10, voters: [1, 2, 3, 4] },
      { epoch: 3, startOffset: 40 },
    ];
    expect(epochsFrom(epochs, { offset: 20, epoch: 2 })[0]).toEqual({
      epoch: 2,
      startOffset: 20,
      voters: [1, 2, 3, 4],
    });
    expect(votersOf(epochs)).toEqual([1, 2, 3, 4]);
    expect(votersOf(epochs.slice(0, 1))).toBeUndefined();
  });

  test("markers, resets and hand-overs carry voters on the wire", () => {
    const append: Message = {
      kind: "append",
      from: 1,
      to: 4,
      term: 7,
      prev: { offset: 100, epoch: 5 },
      entries: [bytesOf("xy")],
      markers: [{ epoch: 7, startOffset: 100, voters: [1, 2, 4] }],
      commit: { offset: 100, epoch: 5 },
      leaderStartOffset: 100,
      reset: true,
      baseVoters: [1, 2, 3],
    };
    const timeoutNow: Message = {
      kind: "timeoutNow",
      from: 1,
      to: 2,
      term: 7,
      voters: [1, 2, 3, 4],
    };
    for (const message of [append, timeoutNow]) {
      const decoded = decodeMessage(encodeMessage(9, message));
      expect(decoded).toEqual({ ok: true, groupId: 9, message });
    }
    // Base voters only come with a reset.
    const frame = encodeMessage(9, { ...append, reset: false } as Message);
    const decoded = decodeMessage(frame);
    expect(decoded.ok).toBe(false);
  });
});

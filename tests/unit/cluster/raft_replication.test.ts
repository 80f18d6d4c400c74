import { describe, expect, test } from "bun:test";
import type { Message } from "../../../lib/cluster/messages.ts";
import { Raft, type Ready } from "../../../lib/cluster/raft.ts";
import { MemoryRaftLog } from "../../../lib/cluster/raft_log.ts";
import { Prng } from "../../../lib/prng.ts";
import { bytesOf, entryTexts, TestCluster, TIMING } from "./harness.ts";

/** Elects node 1 and commits `texts` on every node. */
function clusterWith(size: number, texts: readonly string[]): TestCluster {
  const cluster = new TestCluster(size);
  cluster.elect(1);
  for (const [index, text] of texts.entries()) cluster.node(1).raft.propose(bytesOf(text), index);
  cluster.settle();
  cluster.tick(TIMING.heartbeatTicks);
  return cluster;
}

describe("replication", () => {
  test("a proposal commits on a quorum and every replica holds the same bytes at the same offsets", () => {
    const cluster = clusterWith(3, ["put-1", "txn-commit", "batch"]);
    const leader = cluster.node(1);
    expect(leader.outcomes.map((outcome) => [outcome.clientTag, outcome.kind])).toEqual([
      [0, "ok"],
      [1, "ok"],
      [2, "ok"],
    ]);
    for (const id of [1, 2, 3]) {
      const node = cluster.node(id);
      expect(entryTexts(node.log)).toEqual(["put-1", "txn-commit", "batch"]);
      expect(node.log.entries.map((entry) => entry.offset)).toEqual([0, 5, 15]);
      expect(node.status.commit).toEqual({ offset: 20, epoch: 1 });
    }
  });

  test("an atomic proposal reaches every copy as one entry flagged atomic", () => {
    const cluster = clusterWith(3, ["a"]);
    cluster.node(1).raft.propose(bytesOf("tx-batch"), 7, true);
    cluster.node(1).raft.propose(bytesOf("plain"), 8);
    cluster.settle();
    const sent = cluster.node(1).readies.flatMap((ready) => ready.messages)
      .filter((message) => message.kind === "append" && message.entries.length > 0);
    expect(sent.length).toBeGreaterThan(0);
    for (const message of sent) {
      if (message.kind !== "append") continue;
      const texts = message.entries.map((entry) => new TextDecoder().decode(entry));
      const flagged = (message.atomicEntries ?? []).map((index) => texts[index]);
      expect(flagged).toEqual(texts.includes("tx-batch") ? ["tx-batch"] : []);
    }
    for (const id of [1, 2, 3]) {
      const written = cluster.node(id).readies.flatMap((ready) => ready.appends)
        .filter((item) => item.kind === "entry")
        .map((item) => [new TextDecoder().decode(item.bytes), item.atomic === true]);
      expect(written).toEqual([["a", false], ["tx-batch", true], ["plain", false]]);
    }
  });

  test("propose answers not-leader with the known leader on a follower", () => {
    const cluster = clusterWith(3, []);
    expect(cluster.node(2).raft.propose(bytesOf("x"), 1)).toEqual({
      kind: "notLeader",
      leaderId: 1,
    });
  });

  test("a diverged follower is cut back to where the logs part, never below its commit", () => {
    const cluster = clusterWith(3, ["a"]);
    const old = cluster.node(1);
    cluster.isolate(1);
    old.raft.propose(bytesOf("lost-1"), 10);
    old.raft.propose(bytesOf("lost-2"), 11);
    cluster.flush();
    cluster.queue = [];
    for (let tick = 0; tick < 4 * TIMING.electionTicksMax; tick++) cluster.tick(1, [2, 3]);
    const [newLeader] = cluster.leaders().filter((id) => id !== 1);
    expect(newLeader).toBeDefined();
    cluster.node(newLeader).raft.propose(bytesOf("kept"), 20);
    cluster.settle();
    cluster.heal();
    cluster.tick(2 * TIMING.heartbeatTicks);
    const truncations = old.readies.filter((ready) => ready.truncateTo).map((r) => r.truncateTo);
    // The cut lands right after "a", which epoch 1 committed: the lost entries go, "a" stays.
    expect(truncations).toEqual([{ offset: 1, epoch: 1 }]);
    expect(entryTexts(old.log)).toEqual(["a", "kept"]);
    expect(old.outcomes.filter((o) => o.kind === "indeterminate").map((o) => o.clientTag))
      .toEqual([10, 11]);
    expect(old.log.epochs).toEqual(cluster.node(newLeader).log.epochs);
  });

  test("a persisted() report for items since cut off is ignored", () => {
    const cluster = clusterWith(3, ["a"]);
    const old = cluster.node(1);
    old.autoPersist = false;
    cluster.isolate(1);
    old.raft.propose(bytesOf("lost"), 10);
    cluster.flush();
    cluster.queue = [];
    const stale = old.unpersisted.at(-1)!;
    old.unpersisted = [];
    for (let tick = 0; tick < 4 * TIMING.electionTicksMax; tick++) cluster.tick(1, [2, 3]);
    old.autoPersist = true;
    cluster.heal();
    cluster.tick(2 * TIMING.heartbeatTicks);
    const durable = old.status.durable;
    old.raft.persisted(stale);
    expect(old.status.durable).toEqual(durable);
    expect(entryTexts(old.log)).toEqual(["a"]);
  });

  test("a slow follower disk delays its acks but never its heartbeat answers", () => {
    const cluster = clusterWith(3, []);
    cluster.node(2).autoPersist = false;
    cluster.node(3).autoPersist = false;
    cluster.node(1).raft.propose(bytesOf("slow"), 1);
    cluster.tick(10 * TIMING.electionTicksMax);
    // No quorum is durable, so nothing commits, yet the leader keeps its quorum contact.
    expect(cluster.leaders()).toEqual([1]);
    expect(cluster.node(1).status.term).toBe(1);
    expect(cluster.node(1).outcomes).toEqual([]);
    cluster.node(2).persist();
    cluster.settle();
    expect(cluster.node(1).outcomes.map((outcome) => outcome.kind)).toEqual(["ok"]);
  });

  test("a follower whose log ends below the leader's log start is reset to it", () => {
    const cluster = clusterWith(3, ["a", "b"]);
    cluster.isolate(3);
    for (const text of ["c", "d", "e"]) cluster.node(1).raft.propose(bytesOf(text), 0);
    cluster.settle();
    cluster.tick(TIMING.heartbeatTicks, [1, 2]);
    const leader = cluster.node(1);
    // Retention: drop everything before "e" (offset 4), which is committed and durable.
    const base = { offset: 4, epoch: 1 };
    expect(leader.raft.compact(base)).toBe(true);
    leader.log.compact(base);
    cluster.heal();
    cluster.tick(2 * TIMING.heartbeatTicks);
    const follower = cluster.node(3);
    expect(follower.readies.map((ready) => ready.resetTo).filter(Boolean)).toEqual([base]);
    expect(follower.log.startOffset).toBe(4);
    expect(entryTexts(follower.log)).toEqual(["e"]);
    expect(follower.status.commit).toEqual({ offset: 5, epoch: 1 });
  });

  test("retention refuses to drop what is not committed", () => {
    const cluster = clusterWith(3, ["a"]);
    cluster.isolate(1);
    cluster.node(1).raft.propose(bytesOf("b"), 0);
    cluster.flush();
    expect(cluster.node(1).raft.compact({ offset: 2, epoch: 1 })).toBe(false);
    expect(cluster.node(1).raft.compact({ offset: 1, epoch: 1 })).toBe(true);
  });
});

describe("commit rules", () => {
  /**
   * Node 1 holds an entry of epoch 1 that was never committed, becomes leader of term 2 (its
   * marker 2 follows the entry), and persists everything. Messages are stepped by hand.
   */
  function leaderWithOldEntry(): { raft: Raft; drain: () => Ready[] } {
    const log = new MemoryRaftLog();
    log.append({ kind: "marker", offset: 0, epoch: 1 });
    log.append({ kind: "entry", offset: 0, epoch: 1, bytes: bytesOf("old") });
    const raft = new Raft({
      id: 1,
      voters: [1, 2, 3],
      log,
      random: new Prng(1),
      timing: TIMING,
      durable: { hardState: { term: 1, votedFor: 1 } },
    });
    const drain = () => {
      const readies: Ready[] = [];
      while (raft.hasReady()) {
        const ready = raft.ready();
        for (const item of ready.appends) log.append(item);
        raft.advance(ready);
        if (ready.appendsEnd) raft.persisted(ready.appendsEnd);
        readies.push(ready);
      }
      return readies;
    };
    for (let tick = 0; tick < TIMING.electionTicksMax; tick++) raft.tick();
    const vote = (pre: boolean, term: number): Message => ({
      kind: "voteReply",
      from: 2,
      to: 1,
      term,
      pre,
      granted: true,
    });
    raft.step(vote(true, 2));
    raft.step(vote(false, 2));
    drain();
    expect(raft.status().role).toBe("leader");
    return { raft, drain };
  }

  const ack = (offset: number, epoch: number): Message => ({
    kind: "appendReply",
    from: 2,
    to: 1,
    term: 2,
    ok: true,
    counted: true,
    match: { offset, epoch },
    appended: { offset, epoch },
  });

  test("a new leader does not commit an old-term entry on a quorum until its marker is there too", () => {
    const { raft, drain } = leaderWithOldEntry();
    raft.step(ack(3, 1));
    drain();
    expect(raft.status().commit).toEqual({ offset: 0, epoch: 0 });
    raft.step(ack(3, 2));
    drain();
    expect(raft.status().commit).toEqual({ offset: 3, epoch: 2 });
  });

  test("acks from a follower in repair mode do not count", () => {
    const { raft, drain } = leaderWithOldEntry();
    raft.step({ ...ack(3, 2), counted: false } as Message);
    drain();
    expect(raft.status().commit).toEqual({ offset: 0, epoch: 0 });
  });
});

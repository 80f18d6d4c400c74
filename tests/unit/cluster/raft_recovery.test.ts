import { describe, expect, test } from "bun:test";
import type {
  AppendReplyMessage,
  Message,
  NodeId,
  VoteMessage,
} from "../../../lib/cluster/messages.ts";
import { MemoryRaftLog } from "../../../lib/cluster/raft_log.ts";
import { bytesOf, entryTexts, TestCluster, type TestNode, TIMING } from "./harness.ts";

function clusterWith(texts: readonly string[]): TestCluster {
  const cluster = new TestCluster(3);
  cluster.elect(1);
  for (const text of texts) cluster.node(1).raft.propose(bytesOf(text), 0);
  cluster.settle();
  cluster.tick(TIMING.heartbeatTicks);
  return cluster;
}

/** A vote request that skips the lease check (as a leadership transfer does). */
function voteRequest(from: NodeId, to: NodeId, term: number, pre = false): Message {
  return {
    kind: "vote",
    from,
    to,
    term,
    pre,
    transfer: true,
    last: { offset: 1_000_000, epoch: 99 },
  };
}

/** Steps `message` into `node` and returns what it answered. */
function answer(node: TestNode, message: Message): Message[] {
  node.raft.step(message);
  return node.drain();
}

function replies(cluster: TestCluster, from: NodeId): AppendReplyMessage[] {
  return cluster.delivered.filter((m): m is AppendReplyMessage =>
    m.kind === "appendReply" && m.from === from
  );
}

/** Restarts `node` with its log rebuilt from its first `keep` entries. */
function cutLog(node: TestNode, keep: number): void {
  const log = new MemoryRaftLog();
  let entry = 0;
  for (const pair of node.log.epochs.slice(1)) {
    while (entry < keep && node.log.entries[entry].offset < pair.startOffset) {
      const { offset, bytes } = node.log.entries[entry++];
      log.append({ kind: "entry", offset, epoch: log.epochs.at(-1)!.epoch, bytes });
    }
    if (pair.startOffset > log.endOffset) break;
    log.append({ kind: "marker", offset: pair.startOffset, epoch: pair.epoch });
  }
  while (entry < keep) {
    const { offset, bytes } = node.log.entries[entry++];
    log.append({ kind: "entry", offset, epoch: log.epochs.at(-1)!.epoch, bytes });
  }
  node.log = log;
}

describe("repair mode", () => {
  test("a damaged replica neither votes nor campaigns and its acks do not count", () => {
    const cluster = clusterWith(["aaaa", "bbbb", "cccc"]);
    const damaged = cluster.node(3);
    cutLog(damaged, 1);
    damaged.restart({ repair: { formerEndOffset: 12 } });
    expect(damaged.status.repair).toEqual({ formerEndOffset: 12 });
    // The repair flag is persisted before anything else happens.
    expect(damaged.drain()).toEqual([]);
    expect(damaged.hardState.repair).toEqual({ formerEndOffset: 12 });
    const granted = (messages: Message[]) =>
      messages.some((m) => m.kind === "voteReply" && m.granted);
    expect(granted(answer(damaged, voteRequest(2, 3, 5, true)))).toBe(false);
    expect(granted(answer(damaged, voteRequest(2, 3, 5)))).toBe(false);
    cluster.isolate(3);
    const term = damaged.status.term;
    for (let tick = 0; tick < 5 * TIMING.electionTicksMax; tick++) damaged.raft.tick();
    expect(damaged.status.role).toBe("follower");
    expect(damaged.status.term).toBe(term);
    // Hearing no leader, it only calls for one (pre-votes that wake a sleeping leader) ...
    const sent = damaged.drain().filter((m): m is VoteMessage => m.kind === "vote");
    expect(sent.length).toBeGreaterThan(0);
    expect(sent.every((m) => m.pre && m.term === term + 1)).toBe(true);
    // ... and never follows them up, even when they are granted.
    for (const from of [1, 2]) {
      damaged.raft.step({
        kind: "voteReply",
        from,
        to: 3,
        term: term + 1,
        pre: true,
        granted: true,
      });
    }
    expect(damaged.status.role).toBe("follower");
    expect(damaged.drain().some((m) => m.kind === "vote" && !m.pre)).toBe(false);
  });

  test("it leaves repair once it holds an own-term commit of the leader and its former end", () => {
    const cluster = clusterWith(["aaaa", "bbbb", "cccc"]);
    const damaged = cluster.node(3);
    cutLog(damaged, 1);
    // It once held 20 bytes; the group holds only 12, so it must wait for more data.
    damaged.restart({ repair: { formerEndOffset: 20 } });
    const before = replies(cluster, 3).length;
    cluster.tick(3 * TIMING.heartbeatTicks);
    expect(damaged.status.repair).toBeDefined();
    const since = replies(cluster, 3).slice(before);
    expect(since.length).toBeGreaterThan(0);
    expect(since.every((reply) => !reply.counted)).toBe(true);
    cluster.node(1).raft.propose(bytesOf("dddddddddd"), 0);
    cluster.settle();
    cluster.tick(2 * TIMING.heartbeatTicks);
    expect(damaged.status.repair).toBeUndefined();
    expect(damaged.hardState.repair).toBeUndefined();
    // The target is the own-term commit the leader had announced; data past 20 came with it.
    const exit = damaged.events.find((event) => event.kind === "repairExited");
    expect(exit).toEqual({ kind: "repairExited", target: { offset: 12, epoch: 1 }, term: 1 });
    expect(damaged.status.durable.offset).toBeGreaterThanOrEqual(20);
    expect(replies(cluster, 3).at(-1)?.counted).toBe(true);
  });

  test("without a former end it leaves repair as soon as it reaches the leader's own-term commit", () => {
    const cluster = clusterWith(["aaaa", "bbbb"]);
    const damaged = cluster.node(2);
    cutLog(damaged, 0);
    damaged.restart({ repair: {} });
    cluster.tick(3 * TIMING.heartbeatTicks);
    expect(damaged.status.repair).toBeUndefined();
    expect(damaged.status.commit).toEqual({ offset: 8, epoch: 1 });
  });
});

describe("unreadable hard state (forgotten votes)", () => {
  test("the node assumes it voted, asks every peer for its term, then refuses every term up to the highest", () => {
    const cluster = clusterWith(["aaaa"]);
    // Node 2 takes over in term 2; node 3 votes for it, then loses both its hard state and
    // the marker of term 2 (never synced). It must never vote in term 2 again.
    cluster.node(1).raft.transferLeadership(2);
    cluster.settle();
    expect(cluster.leaders()).toEqual([2]);
    const amnesiac = cluster.node(3);
    cutLog(amnesiac, 1);
    amnesiac.log.truncate({ offset: 4, epoch: 1 });
    amnesiac.raft.restart({ hardState: "unreadable" }, amnesiac.log);
    expect(amnesiac.status.votesForgotten).toBe(true);
    expect(amnesiac.status.term).toBe(1);
    const first = amnesiac.drain();
    expect(amnesiac.hardState).toEqual({ term: 1, votedFor: 3, votesForgotten: true });
    expect(first).toEqual([]);
    const granted = (messages: Message[]) =>
      messages.some((m) => m.kind === "voteReply" && m.granted);
    expect(granted(answer(amnesiac, voteRequest(1, 3, 2)))).toBe(false);
    cluster.tick(TIMING.electionTicksMax + TIMING.heartbeatTicks);
    expect(cluster.delivered.some((m) => m.kind === "termQuery" && m.from === 3)).toBe(true);
    expect(amnesiac.status.votesForgotten).toBe(false);
    expect(amnesiac.status.voteFloor).toBe(2);
    expect(amnesiac.hardState.voteFloor).toBe(2);
    expect(amnesiac.hardState.votesForgotten).toBeUndefined();
    expect(granted(answer(amnesiac, voteRequest(1, 3, 2)))).toBe(false);
    expect(granted(answer(amnesiac, voteRequest(1, 3, 3)))).toBe(true);
  });

  test("its acks do not count until the window ends", () => {
    const cluster = clusterWith(["aaaa"]);
    const amnesiac = cluster.node(3);
    amnesiac.raft.restart({ hardState: "unreadable" }, amnesiac.log);
    cluster.tick(TIMING.heartbeatTicks);
    expect(replies(cluster, 3).at(-1)?.counted).toBe(false);
    cluster.tick(TIMING.electionTicksMax);
    expect(replies(cluster, 3).at(-1)?.counted).toBe(true);
  });

  test("while a peer is unreachable the window stays open", () => {
    const cluster = clusterWith(["aaaa"]);
    const amnesiac = cluster.node(3);
    cluster.cut.add("2>3").add("3>2");
    amnesiac.raft.restart({ hardState: "unreadable" }, amnesiac.log);
    cluster.tick(3 * TIMING.electionTicksMax);
    expect(amnesiac.status.votesForgotten).toBe(true);
    cluster.heal();
    cluster.tick(2 * TIMING.heartbeatTicks);
    expect(amnesiac.status.votesForgotten).toBe(false);
  });
});

describe("empty-disk restart hook", () => {
  test("a node started without voting rights never votes, never campaigns, and is not counted", () => {
    const cluster = new TestCluster(3, (id) => id === 3 ? { extra: { nonVoting: true } } : {});
    cluster.elect(1);
    cluster.node(1).raft.propose(bytesOf("x"), 0);
    cluster.settle();
    const wiped = cluster.node(3);
    expect(replies(cluster, 3).every((reply) => !reply.counted)).toBe(true);
    const messages = answer(wiped, voteRequest(2, 3, 4));
    expect(messages.some((m) => m.kind === "voteReply" && m.granted)).toBe(false);
    cluster.isolate(3);
    for (let tick = 0; tick < 5 * TIMING.electionTicksMax; tick++) wiped.raft.tick();
    expect(wiped.drain().some((m) => m.kind === "vote")).toBe(false);
  });
});

describe("repair behind a base chosen by an operator (force-recover)", () => {
  /** Every copy restarted in repair mode, as after a power loss of the whole group. */
  function stuckCluster(keep: Record<number, number>): TestCluster {
    const cluster = clusterWith(["aaaa", "bbbb", "cccc", "dddd"]);
    for (const id of [1, 2, 3]) {
      const node = cluster.node(id);
      cutLog(node, keep[id]);
      node.hardState = { ...node.hardState, term: node.status.term };
      node.restart({ repair: {} });
    }
    cluster.tick(5 * TIMING.electionTicksMax);
    expect(cluster.leaders()).toEqual([]);
    return cluster;
  }

  /** What force-recover writes: the base out of repair, the others in repair behind it. */
  function recoverFrom(cluster: TestCluster, base: NodeId): void {
    const floor = Math.max(...[1, 2, 3].map((id) => cluster.node(id).hardState.term));
    for (const id of [1, 2, 3]) {
      const node = cluster.node(id);
      node.hardState = id === base
        ? { term: floor, votedFor: 0 }
        : { ...node.hardState, repair: { base } };
      node.restart();
    }
  }

  test("with every copy in repair nobody is elected; the base then leads and the others leave repair", () => {
    const cluster = stuckCluster({ 1: 3, 2: 4, 3: 2 });
    recoverFrom(cluster, 2);
    cluster.tick(3 * TIMING.electionTicksMax);
    expect(cluster.leaders()).toEqual([2]);
    for (const id of [1, 3]) {
      expect(cluster.node(id).status.repair).toBeUndefined();
      expect(cluster.node(id).hardState.repair).toBeUndefined();
      expect(entryTexts(cluster.node(id).log)).toEqual(entryTexts(cluster.node(2).log));
    }
    const leader = cluster.node(2).status;
    expect(leader.commit.epoch).toBe(leader.term);
    expect(leader.commit.offset).toBe(16);
    // Acks counted again: a new entry commits.
    cluster.node(2).raft.propose(bytesOf("eeee"), 7);
    cluster.settle();
    cluster.tick(TIMING.heartbeatTicks);
    expect(cluster.node(2).outcomes.some((o) => o.clientTag === 7 && o.kind === "ok")).toBe(true);
  });

  test("a base with a shorter log still wins; what only the others held is cut", () => {
    const cluster = stuckCluster({ 1: 4, 2: 1, 3: 3 });
    recoverFrom(cluster, 2);
    cluster.tick(3 * TIMING.electionTicksMax);
    expect(cluster.leaders()).toEqual([2]);
    for (const id of [1, 3]) {
      expect(entryTexts(cluster.node(id).log)).toEqual(["aaaa"]);
      expect(cluster.node(id).status.repair).toBeUndefined();
    }
  });

  test("a copy behind a base votes for nobody else and its acks count only for the base", () => {
    const cluster = stuckCluster({ 1: 4, 2: 4, 3: 4 });
    const follower = cluster.node(3);
    follower.hardState = { ...follower.hardState, repair: { base: 2 } };
    follower.restart();
    const granted = (messages: Message[]) =>
      messages.some((m) => m.kind === "voteReply" && m.granted);
    const term = follower.status.term + 1;
    expect(granted(answer(follower, voteRequest(1, 3, term, true)))).toBe(false);
    expect(granted(answer(follower, voteRequest(1, 3, term)))).toBe(false);
    // The base's request is granted although its log is shorter than ours.
    const base: Message = { ...voteRequest(2, 3, term + 1), last: { offset: 0, epoch: 0 } };
    expect(granted(answer(follower, base))).toBe(true);
    // It never campaigns itself (its calls for a leader are pre-votes it does not follow up).
    cluster.isolate(3);
    for (let tick = 0; tick < 5 * TIMING.electionTicksMax; tick++) follower.raft.tick();
    expect(follower.drain().some((m) => m.kind === "vote" && !m.pre)).toBe(false);
    expect(follower.status.role).toBe("follower");
    // Its acks count for the base only: a heartbeat from anyone else hears "not counted".
    const heartbeat = (from: NodeId): Message => ({
      kind: "append",
      from,
      to: 3,
      term: follower.status.term + 1,
      prev: follower.status.last,
      entries: [],
      markers: [],
      commit: { offset: 0, epoch: 0 },
      leaderStartOffset: 0,
      reset: false,
    });
    const counted = (messages: Message[]) =>
      messages.find((m): m is AppendReplyMessage => m.kind === "appendReply")?.counted;
    expect(counted(answer(follower, heartbeat(1)))).toBe(false);
    expect(counted(answer(follower, heartbeat(2)))).toBe(true);
  });
});

/**
 * @module A synchronous test cluster for the Raft core: a FIFO network the test drains by hand,
 * MemoryRaftLog storage that persists at once (or when the test says so), and link filters.
 * No clocks and no randomness beyond a fixed-seed Prng: every run is the same.
 */
import type { HardState, Message, NodeId } from "../../../lib/cluster/messages.ts";
import {
  type DurableState,
  type ProposalOutcome,
  Raft,
  type RaftEvent,
  type RaftOptions,
  type RaftTiming,
  type Ready,
} from "../../../lib/cluster/raft.ts";
import { MemoryRaftLog, type Position } from "../../../lib/cluster/raft_log.ts";
import { Prng } from "../../../lib/prng.ts";

export const TIMING: RaftTiming = {
  heartbeatTicks: 2,
  electionTicksMin: 10,
  electionTicksMax: 20,
  checkQuorumTicks: 8,
};

const DRAIN_STEPS_MAX = 100_000;

export interface TestNodeOptions {
  readonly log?: MemoryRaftLog;
  readonly durable?: DurableState;
  readonly extra?: Partial<RaftOptions>;
}

export class TestNode {
  readonly id: NodeId;
  raft: Raft;
  log: MemoryRaftLog;
  hardState: HardState = { term: 0, votedFor: 0 };
  /** When false, appends wait in `unpersisted` until persist() is called. */
  autoPersist = true;
  unpersisted: Position[] = [];
  readonly readies: Ready[] = [];
  readonly outcomes: ProposalOutcome[] = [];
  readonly events: RaftEvent[] = [];
  commit: Position = { offset: 0, epoch: 0 };

  constructor(id: NodeId, voters: readonly NodeId[], options: TestNodeOptions = {}) {
    this.id = id;
    this.log = options.log ?? new MemoryRaftLog();
    const durable = options.durable ?? { hardState: this.hardState };
    if (durable.hardState !== "unreadable") this.hardState = durable.hardState;
    this.raft = new Raft({
      id,
      voters,
      log: this.log,
      random: new Prng(id * 7919),
      timing: TIMING,
      durable,
      ...options.extra,
    });
  }

  /** Applies every Ready the core has, in the driver's order; returns the messages to send. */
  drain(): Message[] {
    const out: Message[] = [];
    for (let step = 0; this.raft.hasReady(); step++) {
      if (step >= DRAIN_STEPS_MAX) throw new Error(`node ${this.id} never runs out of Ready`);
      const ready = this.raft.ready();
      this.readies.push(ready);
      if (ready.hardState) this.hardState = ready.hardState;
      if (ready.resetTo) this.log.reset(ready.resetTo, ready.resetVoters);
      if (ready.truncateTo) this.log.truncate(ready.truncateTo);
      for (const item of ready.appends) this.log.append(item);
      out.push(...ready.messages);
      if (ready.commit) this.commit = ready.commit;
      this.outcomes.push(...ready.outcomes);
      this.events.push(...ready.events);
      this.raft.advance(ready);
      if (ready.appendsEnd) {
        if (this.autoPersist) this.raft.persisted(ready.appendsEnd);
        else this.unpersisted.push(ready.appendsEnd);
      }
    }
    return out;
  }

  /** Completes the waiting persistence up to the newest reported position. */
  persist(): void {
    const last = this.unpersisted.pop();
    this.unpersisted = [];
    if (last) this.raft.persisted(last);
  }

  /** Restarts from what is on "disk": the log as written and the last hard state. */
  restart(durable?: Partial<DurableState>): void {
    this.unpersisted = [];
    this.raft.restart({ hardState: this.hardState, ...durable }, this.log);
  }

  get status() {
    return this.raft.status();
  }
}

export class TestCluster {
  readonly nodes = new Map<NodeId, TestNode>();
  /** Messages sent and not yet delivered, oldest first. */
  queue: Message[] = [];
  /** Links that drop messages: `${from}>${to}`. */
  readonly cut = new Set<string>();
  readonly delivered: Message[] = [];

  constructor(size: number, options: (id: NodeId) => TestNodeOptions = () => ({})) {
    const voters = Array.from({ length: size }, (_, index) => index + 1);
    for (const id of voters) this.nodes.set(id, new TestNode(id, voters, options(id)));
  }

  /** Adds a node that starts empty, knowing `voters` as the group's voters (a learner). */
  addNode(id: NodeId, voters: readonly NodeId[], options: TestNodeOptions = {}): TestNode {
    const node = new TestNode(id, voters, options);
    this.nodes.set(id, node);
    return node;
  }

  node(id: NodeId): TestNode {
    const node = this.nodes.get(id);
    if (!node) throw new Error(`no node ${id}`);
    return node;
  }

  /** Moves every node's Ready output into the network. */
  flush(): void {
    for (const node of this.nodes.values()) this.queue.push(...node.drain());
  }

  /** Delivers queued messages (and what they cause) until the network is quiet. */
  settle(stepsMax = 10_000): void {
    this.flush();
    for (let step = 0; this.queue.length > 0; step++) {
      if (step >= stepsMax) throw new Error("network never settles");
      const message = this.queue.shift()!;
      if (this.cut.has(`${message.from}>${message.to}`)) continue;
      this.delivered.push(message);
      const node = this.node(message.to);
      node.raft.step(message);
      this.queue.push(...node.drain());
    }
  }

  /** Ticks the given nodes (all by default) `count` times, settling after each tick. */
  tick(count: number, ids: readonly NodeId[] = [...this.nodes.keys()]): void {
    for (let index = 0; index < count; index++) {
      for (const id of ids) this.node(id).raft.tick();
      this.settle();
    }
  }

  /** Ticks only `id` until it becomes leader (its peers stay quiet, so none is in lease). */
  elect(id: NodeId): void {
    for (let tick = 0; tick < 100; tick++) {
      if (this.node(id).status.role === "leader") return;
      this.node(id).raft.tick();
      this.settle();
    }
    throw new Error(`node ${id} did not become leader`);
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}>${other}`);
      this.cut.add(`${other}>${id}`);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  leaders(): NodeId[] {
    return [...this.nodes.values()].filter((node) => node.status.role === "leader").map((n) =>
      n.id
    );
  }
}

export const bytesOf = (text: string): Uint8Array => new TextEncoder().encode(text);
export const textOf = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

/** The log's entries as text, for comparing replicas. */
export function entryTexts(log: MemoryRaftLog): string[] {
  return log.entries.map((entry) => textOf(entry.bytes));
}

/**
 * @module The simulated world for the Raft core (reliability-plan section 3.2): virtual time,
 * one event queue, one seed. Nodes tick at their own drifting rates; a network delays, drops,
 * duplicates, reorders and partitions messages; each node's disk persists after a delay and
 * loses or tears unsynced writes on a crash, flips bits, or loses its hard state; clients
 * propose unique values and retry. The checker runs on every Ready; a liveness phase follows.
 *
 * The world plays the driver's part exactly as replication.md's contract says: persist hard
 * state before sending, apply cuts before appends, fsync appends in the background and report
 * them with persisted().
 */
import { AssertionError } from "../../lib/assert.ts";
import {
  decodeMessage,
  encodeMessage,
  type Message,
  type NodeId,
} from "../../lib/cluster/messages.ts";
import { quorumSize } from "../../lib/cluster/quorum.ts";
import {
  type Canary,
  type DurableState,
  type ProposalOutcome,
  Raft,
  type RaftTiming,
  type Ready,
} from "../../lib/cluster/raft.ts";
import type { Position } from "../../lib/cluster/raft_log.ts";
import { Prng } from "../../lib/prng.ts";
import { Checker, SafetyViolation, sameBytes } from "./checker.ts";
import { SimDisk } from "./disk.ts";
import { EventQueue } from "./event_queue.ts";

/** The test profile of replication.md 5.5 with one tick = 10 ms. */
export const SIM_TIMING: RaftTiming = {
  heartbeatTicks: 10,
  electionTicksMin: 80,
  electionTicksMax: 160,
  checkQuorumTicks: 70,
};

const UNITS_PER_TICK = 1000;
const CLIENT_TIMEOUT_TICKS = 50;
const LIVENESS_ELECTIONS = 50;
const LIVENESS_CHECK_TICKS = 100;
const QUEUE_EVENTS_MAX = 500_000;
const RECENT_LINES = 400;

export interface SimOptions {
  readonly seed: number;
  /** Ticks of the fault phase (the liveness phase follows). */
  readonly ticks?: number;
  readonly canary?: Canary;
  /** Fault indexes to skip (shrinking). */
  readonly disabledFaults?: ReadonlySet<number>;
  /** Receives every trace line as it happens. */
  readonly trace?: (line: string) => void;
  /** Check consequences only, not the rules that prevent them (see CheckerWorld). */
  readonly endToEndOnly?: boolean;
}

export type FaultKind = "crash" | "pause" | "partition" | "retention";

export interface Fault {
  readonly index: number;
  readonly atTick: number;
  readonly kind: FaultKind;
  readonly node: NodeId;
  readonly durationTicks: number;
  readonly corrupt: boolean;
  readonly loseHardState: boolean;
  /** Hit whichever node leads when the fault fires (Jepsen's leader kills), if any does. */
  readonly targetLeader: boolean;
  readonly partition: "split" | "oneWay" | "bridge" | "isolate";
  readonly salt: number;
}

export interface SimFailure {
  readonly kind: "safety" | "assertion" | "liveness";
  readonly check: string;
  readonly message: string;
  readonly atTick: number;
}

export interface SimResult {
  readonly seed: number;
  readonly failure?: SimFailure;
  readonly faults: readonly Fault[];
  readonly recent: readonly string[];
  readonly stats: {
    readonly nodes: number;
    readonly ticks: number;
    readonly events: number;
    readonly commits: number;
    readonly elections: number;
    readonly acked: number;
    readonly messages: number;
  };
}

type SimEvent =
  | { readonly kind: "deliver"; readonly message: Message }
  | { readonly kind: "hardStateDone"; readonly node: NodeId; readonly incarnation: number }
  | {
    readonly kind: "synced";
    readonly node: NodeId;
    readonly incarnation: number;
    readonly generation: number;
    readonly position: Position;
  }
  | { readonly kind: "fault"; readonly fault: Fault }
  | { readonly kind: "restart"; readonly node: NodeId; readonly incarnation: number }
  | { readonly kind: "resume"; readonly node: NodeId; readonly incarnation: number }
  | { readonly kind: "unpartition"; readonly id: number }
  | { readonly kind: "client"; readonly client: number; readonly generation: number }
  | { readonly kind: "clientTimeout"; readonly client: number; readonly tag: number }
  | { readonly kind: "heal" }
  | { readonly kind: "livenessCheck" };

interface SimNode {
  readonly id: NodeId;
  readonly unitsPerTick: number;
  raft: Raft;
  readonly disk: SimDisk;
  up: boolean;
  paused: boolean;
  incarnation: number;
  /** Waiting for a hard-state fsync; the held Ready is applied when it completes. */
  held: Ready | undefined;
  inbox: SimEvent[];
  lastSyncUnits: number;
  /** Ticks are periodic, so they live here rather than in the event queue (most events). */
  nextTickUnits: number;
}

interface Pending {
  readonly client: number;
  readonly value: Uint8Array;
  readonly offset: number;
}

interface SimClient {
  readonly id: number;
  leaderGuess: NodeId;
  waitingTag: number;
  generation: number;
  sequence: number;
  okAfterHeal: number;
}

class LivenessFailure extends Error {
  override readonly name = "LivenessFailure";
}

export function runSimulation(options: SimOptions): SimResult {
  return new World(options).run();
}

class World {
  readonly seed: number;
  readonly #options: SimOptions;
  readonly #queue = new EventQueue<SimEvent>();
  readonly #random: Prng;
  readonly #nodes = new Map<NodeId, SimNode>();
  readonly #voters: NodeId[];
  readonly #checker: Checker;
  readonly #clients: SimClient[] = [];
  readonly #pending = new Map<number, Pending>();
  readonly #acked: { value: Uint8Array; offset: number }[] = [];
  readonly #faults: Fault[];
  readonly #partitions = new Map<number, Set<string>>();
  readonly #recent: string[] = [];
  #blocked = new Set<string>();
  #now = 0;
  #events = 0;
  #messages = 0;
  #nextTag = 1;
  #nextPartition = 1;
  #healed = false;
  #done = false;
  #dropRate: number;
  #dupRate: number;
  #tailRate = 0.01;
  /** Chance that a node crashes right after winning an election or sending a vote. */
  readonly #buggifyRate: number;
  readonly #chaosTicks: number;
  readonly #livenessDeadlineUnits: number;
  #lastLeaderCommit = 0;

  constructor(options: SimOptions) {
    this.#options = options;
    this.seed = options.seed;
    const schedule = new Prng(options.seed);
    this.#random = new Prng(schedule.nextU32());
    this.#chaosTicks = options.ticks ?? 20_000;
    const nodeCount = schedule.chance(0.6) ? 3 : 5;
    this.#voters = Array.from({ length: nodeCount }, (_, index) => index + 1);
    this.#dropRate = schedule.float() * 0.2;
    this.#dupRate = schedule.float() * 0.05;
    this.#buggifyRate = schedule.chance(0.3) ? 0 : 0.05 + schedule.float() * 0.15;
    this.#faults = makeFaults(schedule, nodeCount, this.#chaosTicks);
    this.#livenessDeadlineUnits = (this.#chaosTicks +
      LIVENESS_ELECTIONS * SIM_TIMING.electionTicksMax) * UNITS_PER_TICK;
    this.#checker = new Checker({
      voters: this.#voters,
      endToEndOnly: options.endToEndOnly === true,
      disk: (id) => this.#node(id).disk,
      now: () => this.#now,
    });
    for (const id of this.#voters) {
      const drift = 0.9 + schedule.float() * 0.2;
      const disk = new SimDisk();
      const node: SimNode = {
        id,
        unitsPerTick: Math.round(UNITS_PER_TICK / drift),
        raft: this.#makeRaft(id, 0, disk, { hardState: disk.hardState! }),
        disk,
        up: true,
        paused: false,
        incarnation: 0,
        held: undefined,
        inbox: [],
        lastSyncUnits: 0,
        nextTickUnits: 0,
      };
      this.#nodes.set(id, node);
      node.nextTickUnits = schedule.int(1, node.unitsPerTick);
    }
    const clientCount = schedule.int(2, 5);
    for (let id = 0; id < clientCount; id++) {
      this.#clients.push({
        id,
        leaderGuess: schedule.pick(this.#voters),
        waitingTag: 0,
        generation: 0,
        sequence: 0,
        okAfterHeal: 0,
      });
      this.#push(schedule.int(1, 30) * UNITS_PER_TICK, {
        kind: "client",
        client: id,
        generation: 0,
      });
    }
    for (const fault of this.#faults) {
      if (options.disabledFaults?.has(fault.index)) continue;
      this.#push(fault.atTick * UNITS_PER_TICK, { kind: "fault", fault });
    }
    this.#push(this.#chaosTicks * UNITS_PER_TICK, { kind: "heal" });
  }

  run(): SimResult {
    let failure: SimFailure | undefined;
    try {
      this.#loop();
    } catch (error) {
      failure = this.#describe(error);
    }
    return {
      seed: this.seed,
      ...(failure ? { failure } : {}),
      faults: this.#faults,
      recent: this.#recent,
      stats: {
        nodes: this.#voters.length,
        ticks: Math.round(this.#now / UNITS_PER_TICK),
        events: this.#events,
        commits: this.#checker.commitCount,
        elections: this.#checker.electionCount,
        acked: this.#acked.length,
        messages: this.#messages,
      },
    };
  }

  #loop(): void {
    const nodes = [...this.#nodes.values()];
    while (!this.#done) {
      // The next tick of any node runs before queued events at the same or a later time.
      let ticking = nodes[0];
      for (const node of nodes) if (node.nextTickUnits < ticking.nextTickUnits) ticking = node;
      const tickFirst = ticking.nextTickUnits <= this.#queue.peekTime();
      const next = tickFirst ? undefined : this.#queue.pop();
      if (!tickFirst && !next) throw new LivenessFailure("the event queue ran dry");
      this.#now = tickFirst ? ticking.nextTickUnits : next!.time;
      if (this.#now > this.#livenessDeadlineUnits) {
        throw new LivenessFailure(
          `not settled ${LIVENESS_ELECTIONS} election timeouts after heal: ${this.#unsettled()}`,
        );
      }
      this.#events++;
      if (this.#queue.size > QUEUE_EVENTS_MAX) throw new Error("the event queue keeps growing");
      if (tickFirst) this.#onTick(ticking);
      else this.#handle(next!.event);
    }
    this.#finalCheck();
  }

  #handle(event: SimEvent): void {
    switch (event.kind) {
      case "deliver":
        return this.#onDeliver(event);
      case "hardStateDone":
      case "synced":
        return this.#onStorage(event);
      case "fault":
        return this.#onFault(event.fault);
      case "restart":
        return this.#onRestart(event.node, event.incarnation);
      case "resume":
        return this.#onResume(event.node, event.incarnation);
      case "unpartition":
        this.#partitions.delete(event.id);
        this.#rebuildBlocked();
        return;
      case "client":
        return this.#onClient(this.#clients[event.client], event.generation);
      case "clientTimeout":
        return this.#onClientTimeout(this.#clients[event.client], event.tag);
      case "heal":
        return this.#onHeal();
      case "livenessCheck":
        return this.#onLivenessCheck();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Nodes and their driver.

  #makeRaft(id: NodeId, incarnation: number, disk: SimDisk, durable: DurableState): Raft {
    return new Raft({
      id,
      voters: this.#voters,
      log: disk.log,
      random: new Prng((this.seed * 31 + id * 1009 + incarnation * 7) >>> 0),
      timing: SIM_TIMING,
      durable,
      appendBytesMax: 512,
      inflightBytesMax: 4096,
      ...(this.#options.canary ? { canary: this.#options.canary } : {}),
    });
  }

  #onTick(node: SimNode): void {
    node.nextTickUnits = this.#now + node.unitsPerTick;
    if (!node.up || node.paused) return;
    node.raft.tick();
    this.#drive(node);
  }

  /** Takes Ready after Ready; a hard-state change holds the rest until its fsync completes. */
  #drive(node: SimNode): void {
    if (!node.up || node.paused || node.held) return;
    for (let round = 0; round < 1000 && node.raft.hasReady(); round++) {
      const ready = node.raft.ready();
      if (ready.hardState) {
        node.held = ready;
        const delay = this.#random.int(1, 11) * UNITS_PER_TICK;
        this.#push(this.#now + delay, {
          kind: "hardStateDone",
          node: node.id,
          incarnation: node.incarnation,
        });
        return;
      }
      this.#apply(node, ready);
    }
  }

  #apply(node: SimNode, ready: Ready): void {
    if (this.#options.trace) this.#traceReady(node, ready);
    const { disk } = node;
    if (ready.hardState) {
      disk.hardState = ready.hardState;
      this.#checker.onHardState(node.id, ready.hardState.term);
    }
    if (ready.resetTo) {
      disk.reset(ready.resetTo, this.#checker.hashOf(ready.resetTo), ready.resetVoters);
    }
    if (ready.truncateTo) disk.truncate(ready.truncateTo);
    for (const item of ready.appends) {
      const stored = disk.append(item);
      this.#checker.onStored(node.id, stored.end, stored.hash);
    }
    if (ready.appendsEnd) this.#scheduleSync(node, ready.appendsEnd);
    this.#checker.onEvents(node.id, ready.events);
    if (ready.events.some((event) => event.kind === "role" && event.role === "leader")) {
      this.#buggify(node, this.#random.int(1, 41), this.#random.int(20, 301));
    }
    for (const message of ready.messages) {
      this.#checker.onSend(node.id, message);
      this.#send(message);
      if (message.kind === "voteReply" && message.granted && !message.pre) {
        this.#buggify(node, this.#random.int(0, 6), this.#random.int(1, 31));
      }
    }
    for (const outcome of ready.outcomes) this.#onOutcome(outcome);
    node.raft.advance(ready);
  }

  #scheduleSync(node: SimNode, position: Position): void {
    const slow = this.#random.chance(0.02);
    const delay = (slow ? 100 : this.#random.int(1, 21)) * UNITS_PER_TICK;
    // One disk: fsyncs finish in the order they started.
    const at = Math.max(node.lastSyncUnits, this.#now + delay);
    node.lastSyncUnits = at;
    this.#push(at, {
      kind: "synced",
      node: node.id,
      incarnation: node.incarnation,
      generation: node.disk.generation,
      position,
    });
  }

  #onStorage(event: Extract<SimEvent, { kind: "hardStateDone" | "synced" }>): void {
    const node = this.#node(event.node);
    if (!node.up || node.incarnation !== event.incarnation) return;
    if (node.paused) {
      node.inbox.push(event);
      return;
    }
    if (event.kind === "hardStateDone") {
      const ready = node.held!;
      node.held = undefined;
      this.#apply(node, ready);
    } else if (node.disk.synced(event.position, event.generation)) {
      node.raft.persisted(event.position);
    }
    this.#drive(node);
  }

  // -------------------------------------------------------------------------------------------
  // Network.

  #send(message: Message): void {
    this.#messages++;
    if (this.#blocked.has(`${message.from}>${message.to}`)) return;
    if (this.#random.chance(this.#dropRate)) return;
    const copies = this.#random.chance(this.#dupRate) ? 2 : 1;
    for (let copy = 0; copy < copies; copy++) {
      const tail = this.#random.chance(this.#tailRate);
      const delay = (tail ? 200 : this.#random.int(1, 21)) * UNITS_PER_TICK +
        this.#random.int(0, UNITS_PER_TICK);
      // A tenth of the traffic goes through the codec, so the wire format is exercised too.
      const wire = this.#random.chance(0.1) ? roundTrip(message) : message;
      this.#push(this.#now + delay, { kind: "deliver", message: wire });
    }
  }

  #onDeliver(event: Extract<SimEvent, { kind: "deliver" }>): void {
    const { message } = event;
    if (this.#blocked.has(`${message.from}>${message.to}`)) return;
    const node = this.#node(message.to);
    if (!node.up) return;
    if (node.paused) {
      node.inbox.push(event);
      return;
    }
    node.raft.step(message);
    this.#drive(node);
  }

  #rebuildBlocked(): void {
    this.#blocked = new Set();
    for (const links of this.#partitions.values()) {
      for (const link of links) this.#blocked.add(link);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Faults.

  #onFault(planned: Fault): void {
    if (this.#healed) return;
    const leader = planned.targetLeader ? this.#currentLeader() : undefined;
    const fault = leader ? { ...planned, node: leader.id } : planned;
    this.#trace(
      `fault #${fault.index} ${fault.kind} node=${fault.node} for ${fault.durationTicks}`,
    );
    switch (fault.kind) {
      case "crash":
        return this.#crash(this.#node(fault.node), fault);
      case "pause":
        return this.#pause(this.#node(fault.node), fault.durationTicks);
      case "partition":
        return this.#partition(fault);
      case "retention":
        return this.#retention();
    }
  }

  /**
   * FoundationDB's "buggify": crash a node at a moment uniform faults rarely hit, just after it
   * won an election (Raft's figure 8 needs that) or answered a vote (a lost vote needs that).
   */
  #buggify(node: SimNode, afterTicks: number, downTicks: number): void {
    if (this.#healed || this.#buggifyRate === 0 || !this.#random.chance(this.#buggifyRate)) return;
    const fault: Fault = {
      index: -1,
      atTick: 0,
      kind: "crash",
      node: node.id,
      durationTicks: downTicks,
      corrupt: false,
      loseHardState: false,
      targetLeader: false,
      partition: "isolate",
      salt: 0,
    };
    this.#push(this.#now + afterTicks * UNITS_PER_TICK, { kind: "fault", fault });
  }

  #crash(node: SimNode, fault: Fault): void {
    if (!node.up) return;
    node.up = false;
    node.paused = false;
    node.held = undefined;
    node.inbox = [];
    node.incarnation++;
    node.disk.crash(this.#random);
    // Damage only a minority at a time, and forget hard state on one node at a time: beyond
    // that the design promises nothing (replication.md 6, 5.7).
    const impaired = this.#impairedCount();
    const budget = this.#voters.length - quorumSize(this.#voters.length);
    const damage = fault.corrupt && impaired < budget && node.disk.durableCount > 0;
    if (damage) node.disk.damagedIndex = this.#random.int(0, node.disk.durableCount);
    const forgetting = [...this.#nodes.values()].some((other) =>
      other.disk.hardStateLost || (other.up && other.raft.status().votesForgotten)
    );
    if (fault.loseHardState && !forgetting && impaired + (damage ? 1 : 0) < budget) {
      node.disk.hardStateLost = true;
    }
    this.#checker.onCrash(node.id, damage);
    this.#push(this.#now + fault.durationTicks * UNITS_PER_TICK, {
      kind: "restart",
      node: node.id,
      incarnation: node.incarnation,
    });
  }

  #impairedCount(): number {
    let count = 0;
    for (const node of this.#nodes.values()) {
      const status = node.up ? node.raft.status() : undefined;
      const stored = node.disk.hardState;
      const pending = node.disk.damagedIndex !== undefined || node.disk.hardStateLost ||
        stored?.repair !== undefined || stored?.votesForgotten === true;
      if (pending || status?.repair || status?.votesForgotten) count++;
    }
    return count;
  }

  #onRestart(id: NodeId, incarnation: number): void {
    const node = this.#node(id);
    if (node.up || node.incarnation !== incarnation) return;
    const { disk } = node;
    const formerEnd = disk.repairCut();
    const lost = disk.hardStateLost;
    disk.hardStateLost = false;
    // The driver persists "repair pending" before it cuts the damaged log; so does the model.
    const repair = formerEnd
      ? (this.#random.chance(0.5) ? { formerEndOffset: formerEnd.offset } : {})
      : undefined;
    node.raft = this.#makeRaft(id, incarnation, disk, {
      hardState: lost ? "unreadable" : disk.hardState!,
      ...(repair ? { repair } : {}),
    });
    node.up = true;
    node.paused = false;
    this.#checker.onRestart(id, lost);
    this.#trace(
      `restart node=${id} repair=${repair ? JSON.stringify(repair) : "-"} hardStateLost=${lost}`,
    );
    this.#drive(node);
  }

  #pause(node: SimNode, ticks: number): void {
    if (!node.up || node.paused) return;
    node.paused = true;
    this.#push(this.#now + ticks * UNITS_PER_TICK, {
      kind: "resume",
      node: node.id,
      incarnation: node.incarnation,
    });
  }

  #onResume(id: NodeId, incarnation: number): void {
    const node = this.#node(id);
    if (!node.up || !node.paused || node.incarnation !== incarnation) return;
    node.paused = false;
    const inbox = node.inbox;
    node.inbox = [];
    for (const event of inbox) {
      if (!node.up || node.paused) break;
      this.#handle(event);
    }
    this.#drive(node);
  }

  #partition(fault: Fault): void {
    const links = partitionLinks(fault, this.#voters);
    const id = this.#nextPartition++;
    this.#partitions.set(id, links);
    this.#rebuildBlocked();
    this.#push(this.#now + fault.durationTicks * UNITS_PER_TICK, { kind: "unpartition", id });
  }

  #currentLeader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const node of this.#nodes.values()) {
      if (!node.up || node.paused) continue;
      const status = node.raft.status();
      if (status.role !== "leader") continue;
      if (!best || status.term > best.raft.status().term) best = node;
    }
    return best;
  }

  /** The leader drops a committed, durable prefix of its log (retention, replication.md 5.6). */
  #retention(): void {
    const leader = this.#currentLeader();
    if (!leader) return;
    const { commit } = leader.raft.status();
    const { disk } = leader;
    const candidates = disk.items.slice(0, disk.durableCount).filter((stored) =>
      stored.item.kind === "entry" && stored.end.offset <= commit.offset &&
      (stored.end.offset < commit.offset || stored.end.epoch <= commit.epoch)
    );
    if (candidates.length < 2) return;
    const base = candidates[this.#random.int(0, candidates.length - 1)].end;
    if (leader.raft.compact(base)) disk.compact(base);
    this.#trace(`retention node=${leader.id} base=${base.offset}@${base.epoch}`);
  }

  // -------------------------------------------------------------------------------------------
  // Clients.

  #onClient(client: SimClient, generation: number): void {
    if (client.generation !== generation || client.waitingTag !== 0) return;
    const node = this.#node(client.leaderGuess);
    if (!node.up || node.paused) {
      // Connection refused or no answer: try someone else soon.
      client.leaderGuess = this.#random.pick(this.#voters);
      this.#clientAgain(client, this.#random.int(5, 20));
      return;
    }
    const value = this.#value(client);
    const tag = this.#nextTag++;
    const result = node.raft.propose(value, tag);
    if (result.kind === "appended") {
      client.waitingTag = tag;
      this.#pending.set(tag, { client: client.id, value, offset: result.offset });
      this.#push(this.#now + CLIENT_TIMEOUT_TICKS * UNITS_PER_TICK, {
        kind: "clientTimeout",
        client: client.id,
        tag,
      });
    } else {
      const hint = result.kind === "notLeader" ? result.leaderId : 0;
      client.leaderGuess = hint !== 0 ? hint : this.#random.pick(this.#voters);
      this.#clientAgain(client, this.#random.int(1, 10));
    }
    this.#drive(node);
  }

  #value(client: SimClient): Uint8Array {
    const prefix = new TextEncoder().encode(`c${client.id}:${client.sequence++}:`);
    const value = new Uint8Array(prefix.length + this.#random.int(4, 49));
    value.set(prefix);
    for (let index = prefix.length; index < value.length; index++) {
      value[index] = this.#random.nextU32() & 0xff;
    }
    return value;
  }

  #clientAgain(client: SimClient, ticks: number): void {
    client.generation++;
    this.#push(this.#now + ticks * UNITS_PER_TICK, {
      kind: "client",
      client: client.id,
      generation: client.generation,
    });
  }

  #onClientTimeout(client: SimClient, tag: number): void {
    if (client.waitingTag !== tag) return;
    // No answer in time: indeterminate; retry elsewhere with a new value.
    client.waitingTag = 0;
    client.leaderGuess = this.#random.pick(this.#voters);
    this.#clientAgain(client, 1);
  }

  #onOutcome(outcome: ProposalOutcome): void {
    const pending = this.#pending.get(outcome.clientTag);
    if (!pending) return;
    this.#pending.delete(outcome.clientTag);
    if (outcome.kind === "ok") this.#checker.onOk(pending.offset, pending.value);
    const client = this.#clients[pending.client];
    if (client.waitingTag !== outcome.clientTag) return;
    client.waitingTag = 0;
    if (outcome.kind === "ok") {
      this.#acked.push({ value: pending.value, offset: pending.offset });
      if (this.#healed) client.okAfterHeal++;
      this.#clientAgain(client, this.#random.int(1, 30));
    } else {
      client.leaderGuess = this.#random.pick(this.#voters);
      this.#clientAgain(client, 1);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Heal and liveness.

  #onHeal(): void {
    this.#healed = true;
    this.#trace("heal: network whole, every node up");
    this.#partitions.clear();
    this.#rebuildBlocked();
    this.#dropRate = 0;
    this.#dupRate = 0;
    this.#tailRate = 0;
    for (const node of this.#nodes.values()) {
      if (!node.up) this.#onRestart(node.id, node.incarnation);
      else if (node.paused) this.#onResume(node.id, node.incarnation);
    }
    this.#push(this.#now + LIVENESS_CHECK_TICKS * UNITS_PER_TICK, { kind: "livenessCheck" });
  }

  /** Done when one leader leads everyone, commits in its term, and every client got an ok. */
  #onLivenessCheck(): void {
    this.#push(this.#now + LIVENESS_CHECK_TICKS * UNITS_PER_TICK, { kind: "livenessCheck" });
    const statuses = [...this.#nodes.values()].map((node) => node.raft.status());
    const leaders = statuses.filter((status) => status.role === "leader");
    if (leaders.length !== 1) return;
    const leader = leaders[0];
    const settled = statuses.every((status) =>
      status.term === leader.term && status.leaderId === leader.id && !status.repair &&
      !status.votesForgotten && status.commit.offset >= this.#lastLeaderCommit
    );
    const previous = this.#lastLeaderCommit;
    this.#lastLeaderCommit = leader.commit.offset;
    if (!settled || leader.commit.epoch !== leader.term) return;
    void previous;
    if (!this.#clients.every((client) => client.okAfterHeal > 0)) return;
    this.#done = true;
  }

  /** Why the cluster has not settled, for a liveness failure. */
  #unsettled(): string {
    const nodes = [...this.#nodes.values()].map((node) => {
      const status = node.raft.status();
      return `${node.id}:${status.role}/t${status.term}/l${status.leaderId}` +
        `/c${status.commit.offset}@${status.commit.epoch}/e${status.last.offset}@${status.last.epoch}` +
        `${status.repair ? `/repair${JSON.stringify(status.repair)}` : ""}` +
        `${status.votesForgotten ? "/forgot" : ""}${node.up ? "" : "/down"}${
          node.paused ? "/paused" : ""
        }`;
    });
    const clients = this.#clients.map((client) => `${client.id}:${client.okAfterHeal}`);
    return `nodes ${nodes.join(" ")}; ok after heal by client ${clients.join(" ")}`;
  }

  /** S9: every value a client saw acknowledged is in the final leader's log, unchanged. */
  #finalCheck(): void {
    const leader = [...this.#nodes.values()].find((node) => node.raft.status().role === "leader")!;
    const entries = new Map<number, Uint8Array>();
    for (const stored of leader.disk.items) {
      if (stored.item.kind === "entry") entries.set(stored.item.offset, stored.item.bytes);
    }
    for (const acked of this.#acked) {
      if (acked.offset < leader.disk.base.offset) continue;
      const entry = entries.get(acked.offset);
      if (!entry || !sameBytes(entry, acked.value)) {
        throw new SafetyViolation(
          "S9",
          `acknowledged value at ${acked.offset} is missing after heal`,
        );
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Plumbing.

  #push(time: number, event: SimEvent): void {
    this.#queue.push(time, event);
  }

  #node(id: NodeId): SimNode {
    const node = this.#nodes.get(id);
    if (!node) throw new Error(`no node ${id}`);
    return node;
  }

  #trace(line: string): void {
    const text = `t=${Math.round(this.#now / UNITS_PER_TICK)} ${line}`;
    this.#recent.push(text);
    if (this.#recent.length > RECENT_LINES) this.#recent.shift();
    this.#options.trace?.(text);
  }

  #traceReady(node: SimNode, ready: Ready): void {
    const status = node.raft.status();
    const parts = [`node=${node.id} ${status.role} term=${status.term}`];
    if (ready.hardState) parts.push(`hs=${JSON.stringify(ready.hardState)}`);
    if (ready.truncateTo) {
      parts.push(`truncate=${ready.truncateTo.offset}@${ready.truncateTo.epoch}`);
    }
    if (ready.resetTo) parts.push(`reset=${ready.resetTo.offset}@${ready.resetTo.epoch}`);
    if (ready.appends.length > 0) parts.push(`appends=${ready.appends.length}`);
    for (const event of ready.events) parts.push(`${event.kind}:${JSON.stringify(event)}`);
    for (const message of ready.messages) parts.push(describeMessage(message));
    this.#trace(parts.join(" "));
  }

  #describe(error: unknown): SimFailure {
    const atTick = Math.round(this.#now / UNITS_PER_TICK);
    if (error instanceof SafetyViolation) {
      return { kind: "safety", check: error.check, message: error.message, atTick };
    }
    if (error instanceof LivenessFailure) {
      return { kind: "liveness", check: "liveness", message: error.message, atTick };
    }
    const message = error instanceof Error
      ? `${error.message}\n${error.stack ?? ""}`
      : String(error);
    const check = error instanceof AssertionError ? "assertion" : "crash";
    return { kind: "assertion", check, message, atTick };
  }
}

function makeFaults(random: Prng, nodeCount: number, ticks: number): Fault[] {
  const intensity = 0.5 + random.float();
  const count = Math.round((ticks / 600) * intensity);
  const faults: Fault[] = [];
  for (let index = 0; index < count; index++) {
    const roll = random.float();
    const kind: FaultKind = roll < 0.35
      ? "crash"
      : roll < 0.5
      ? "pause"
      : roll < 0.85
      ? "partition"
      : "retention";
    const durationTicks = kind === "crash"
      ? random.int(50, 1501)
      : kind === "pause"
      ? random.int(50, 1001)
      : random.int(100, 2001);
    const shapes: Fault["partition"][] = ["split", "oneWay", "isolate"];
    if (nodeCount === 5) shapes.push("bridge");
    faults.push({
      index,
      atTick: random.int(1, ticks),
      kind,
      node: random.int(1, nodeCount + 1),
      durationTicks,
      corrupt: random.chance(0.25),
      loseHardState: random.chance(0.15),
      targetLeader: random.chance(0.5),
      partition: random.pick(shapes),
      salt: random.nextU32(),
    });
  }
  return faults.sort((a, b) => a.atTick - b.atTick || a.index - b.index);
}

/** The directed links a partition fault blocks. */
function partitionLinks(fault: Fault, voters: readonly NodeId[]): Set<string> {
  const random = new Prng(fault.salt);
  const links = new Set<string>();
  const block = (from: NodeId, to: NodeId) => links.add(`${from}>${to}`);
  const both = (a: NodeId, b: NodeId) => (block(a, b), block(b, a));
  if (fault.partition === "isolate") {
    for (const other of voters) if (other !== fault.node) both(fault.node, other);
  } else if (fault.partition === "oneWay") {
    // One node stops hearing some peers (or they stop hearing it), one direction only.
    const outbound = random.chance(0.5);
    for (const other of voters) {
      if (other === fault.node || !random.chance(0.6)) continue;
      if (outbound) block(fault.node, other);
      else block(other, fault.node);
    }
  } else if (fault.partition === "bridge") {
    // Two halves that cannot talk, and one node (the bridge) that talks to both.
    const rest = shuffle(random, voters).slice(1);
    const half = rest.slice(0, rest.length / 2);
    for (const a of half) for (const b of rest) if (!half.includes(b)) both(a, b);
  } else {
    const side = voters.filter(() => random.chance(0.5));
    for (const a of side) for (const b of voters) if (!side.includes(b)) both(a, b);
  }
  return links;
}

function describeMessage(message: Message): string {
  const head = `${message.kind}(${message.from}>${message.to} t${message.term}`;
  switch (message.kind) {
    case "append":
      return `${head} prev=${message.prev.offset}@${message.prev.epoch} n=${message.entries.length}` +
        ` m=${message.markers.length} c=${message.commit.offset}@${message.commit.epoch}` +
        `${message.reset ? " reset" : ""})`;
    case "appendReply":
      return `${head} ${
        message.ok ? `ok ${message.match?.offset}@${message.match?.epoch}` : "no"
      }` +
        `${message.hint ? ` hint=${JSON.stringify(message.hint)}` : ""})`;
    case "vote":
      return `${head}${message.pre ? " pre" : ""})`;
    case "voteReply":
      return `${head}${message.pre ? " pre" : ""} ${message.granted ? "yes" : "no"})`;
    case "timeoutNow":
    case "termQuery":
    case "termReply":
      return `${head})`;
  }
}

function shuffle<T>(random: Prng, items: readonly T[]): T[] {
  const out = [...items];
  for (let index = out.length - 1; index > 0; index--) {
    const other = random.int(0, index + 1);
    [out[index], out[other]] = [out[other], out[index]];
  }
  return out;
}

function roundTrip(message: Message): Message {
  const decoded = decodeMessage(encodeMessage(7, message));
  if (!decoded.ok) throw new Error(`codec failed on a valid message: ${decoded.reason}`);
  return decoded.message;
}

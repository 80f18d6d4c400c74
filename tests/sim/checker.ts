/**
 * @module The simulator's safety checker: S1-S9 of reliability-plan section 3.3, checked
 * incrementally as each node's Ready is applied. It sees the simulated disks (what is written,
 * what is durable, with prefix hashes) and each node's ordered event stream; it never looks
 * inside the core. A violation throws SafetyViolation naming the check.
 */
import type { Message, NodeId } from "../../lib/cluster/messages.ts";
import { quorumSize } from "../../lib/cluster/quorum.ts";
import type { RaftEvent } from "../../lib/cluster/raft.ts";
import { comparePositions, type Position } from "../../lib/cluster/raft_log.ts";
import { positionKey, type SimDisk } from "./disk.ts";

export class SafetyViolation extends Error {
  override readonly name = "SafetyViolation";
  readonly check: string;

  constructor(check: string, detail: string) {
    super(`${check}: ${detail}`);
    this.check = check;
  }
}

const show = (position: Position) => `${position.offset}@${position.epoch}`;

function fail(check: string, detail: string): never {
  throw new SafetyViolation(check, detail);
}

interface NodeView {
  /** The term this node leads, per its event stream, or 0. */
  leaderTerm: number;
  repairing: boolean;
  formerEnd: number | undefined;
  /** Commit reported during the current incarnation. */
  commit: Position | undefined;
  lastHardTerm: number;
  damagedAt: number;
}

export interface CheckerWorld {
  readonly voters: readonly NodeId[];
  /**
   * Check only end-to-end consequences (two leaders, forks, lost or changed commits), not the
   * rules that prevent them (vote persisted before sent, own-term and durable-quorum commits,
   * no votes in repair mode). Shows that a canary does real damage, not just a rule breach.
   */
  readonly endToEndOnly?: boolean;
  disk(id: NodeId): SimDisk;
  now(): number;
}

export class Checker {
  readonly #world: CheckerWorld;
  readonly #views = new Map<NodeId, NodeView>();
  /** S1: term -> leader. */
  readonly #leaders = new Map<number, NodeId>();
  readonly #electedAt = new Map<number, number>();
  /** S3: every position any log ever held -> prefix hash. */
  readonly #positions = new Map<string, number>([["0:0", 0]]);
  /** S5: positions of the committed chain -> prefix hash; its tip; its entries by offset. */
  readonly #committed = new Map<string, number>([["0:0", 0]]);
  #tip: { position: Position; hash: number } = { position: { offset: 0, epoch: 0 }, hash: 0 };
  readonly #entries = new Map<number, Uint8Array>();
  /** S4: the highest position each leader's term committed. */
  readonly #leaderCommits = new Map<number, { position: Position; hash: number }>();
  /** S7: `${node}:${term}` -> candidate granted. */
  readonly #votes = new Map<string, NodeId>();
  commitCount = 0;
  electionCount = 0;

  constructor(world: CheckerWorld) {
    this.#world = world;
    for (const id of world.voters) {
      this.#views.set(id, {
        leaderTerm: 0,
        repairing: false,
        formerEnd: undefined,
        commit: undefined,
        lastHardTerm: 0,
        damagedAt: -Infinity,
      });
    }
  }

  get tip(): Position {
    return this.#tip.position;
  }

  /** The committed entry that starts at `offset`, if the chain has one. */
  committedEntry(offset: number): Uint8Array | undefined {
    return this.#entries.get(offset);
  }

  /** The hash of a position some log held (for a reset base). */
  hashOf(position: Position): number {
    const hash = this.#positions.get(positionKey(position));
    if (hash === undefined) fail("S3", `reset to ${show(position)}, which no log ever held`);
    return hash;
  }

  /** A node crashed: it no longer leads; its next incarnation starts a fresh commit. */
  onCrash(id: NodeId, damaged: boolean): void {
    const view = this.#view(id);
    view.leaderTerm = 0;
    view.commit = undefined;
    if (damaged) view.damagedAt = this.#world.now();
  }

  onRestart(id: NodeId, hardStateLost: boolean): void {
    const view = this.#view(id);
    view.repairing = false;
    if (hardStateLost) view.lastHardTerm = 0;
  }

  /** S3: the same position in two logs has the same prefix. */
  onStored(id: NodeId, position: Position, hash: number): void {
    const key = positionKey(position);
    const known = this.#positions.get(key);
    if (known === undefined) this.#positions.set(key, hash);
    else if (known !== hash) fail("S3", `node ${id} holds ${show(position)} with another prefix`);
  }

  /** S7: hard-state terms never go backwards (a node that lost its hard state starts over). */
  onHardState(id: NodeId, term: number): void {
    const view = this.#view(id);
    if (term < view.lastHardTerm) {
      fail("S7", `node ${id} persisted term ${term} after ${view.lastHardTerm}`);
    }
    view.lastHardTerm = term;
  }

  /** Events of one Ready, in order. */
  onEvents(id: NodeId, events: readonly RaftEvent[]): void {
    for (const event of events) this.#onEvent(id, event);
  }

  /** S7 and S8 on what a node actually sends. */
  onSend(id: NodeId, message: Message): void {
    if (message.kind !== "voteReply" || !message.granted || message.pre) return;
    // A durable later term also forecloses this vote: the node can never vote in it again.
    const durable = this.#world.disk(id).hardState;
    const recorded = durable?.term === message.term && durable.votedFor === message.to;
    const rules = !this.#world.endToEndOnly;
    if (rules && (!durable || !(recorded || durable.term > message.term))) {
      fail(
        "S7",
        `node ${id} sent a vote for ${message.to} in term ${message.term} before persisting it`,
      );
    }
    const key = `${id}:${message.term}`;
    const earlier = this.#votes.get(key);
    if (earlier !== undefined && earlier !== message.to) {
      fail("S7", `node ${id} voted for ${earlier} and ${message.to} in term ${message.term}`);
    }
    this.#votes.set(key, message.to);
  }

  /** S9, part one: an "ok" is only given for bytes already committed at that offset. */
  onOk(offset: number, bytes: Uint8Array): void {
    const committed = this.#entries.get(offset);
    if (!committed || !sameBytes(committed, bytes)) {
      fail("S9", `a proposal at ${offset} was acknowledged but is not committed there`);
    }
  }

  #onEvent(id: NodeId, event: RaftEvent): void {
    const view = this.#view(id);
    const rules = !this.#world.endToEndOnly;
    switch (event.kind) {
      case "role":
        if (event.role === "leader") this.#onElected(id, event.term);
        else view.leaderTerm = 0;
        return;
      case "truncated":
      case "reset":
        if (view.leaderTerm > 0) fail("S2", `leader ${id} of term ${view.leaderTerm} cut its log`);
        return;
      case "campaign":
        if (view.repairing && rules) fail("S8", `node ${id} campaigned in repair mode`);
        return;
      case "voted":
        if (view.repairing && rules) fail("S8", `node ${id} granted a vote in repair mode`);
        return;
      case "repairEntered":
        view.repairing = true;
        view.formerEnd = event.formerEndOffset;
        return;
      case "repairExited":
        if (!rules) view.repairing = false;
        else this.#onRepairExit(id, event.target);
        return;
      case "committed":
        return this.#onCommit(id, event.position, event.leader);
      default:
        return;
    }
  }

  /** S1 one leader per term; S4 the new leader holds everything committed in earlier terms. */
  #onElected(id: NodeId, term: number): void {
    const other = this.#leaders.get(term);
    if (other !== undefined && other !== id) {
      fail("S1", `nodes ${other} and ${id} led term ${term}`);
    }
    this.#leaders.set(term, id);
    this.#electedAt.set(term, this.#world.now());
    this.#view(id).leaderTerm = term;
    this.electionCount++;
    let best: { position: Position; hash: number } | undefined;
    for (const [committedTerm, commit] of this.#leaderCommits) {
      if (committedTerm >= term) continue;
      if (!best || comparePositions(commit.position, best.position) > 0) best = commit;
    }
    if (!best) return;
    const disk = this.#world.disk(id);
    if (comparePositions(best.position, disk.base) < 0) return;
    if (disk.hashAt(best.position) !== best.hash) {
      fail("S4", `leader ${id} of term ${term} lacks committed ${show(best.position)}`);
    }
  }

  /** S5, S6: commits never go back, never pass the log, and the chain of commits is one. */
  #onCommit(id: NodeId, position: Position, byLeader: boolean): void {
    const view = this.#view(id);
    const disk = this.#world.disk(id);
    if (view.commit && comparePositions(position, view.commit) <= 0) {
      fail("S6", `node ${id} moved its commit from ${show(view.commit)} to ${show(position)}`);
    }
    view.commit = position;
    // A reset later in the same Ready can leave an earlier commit below the new base: such a
    // position can only be checked against the chain.
    const below = comparePositions(position, disk.base) < 0;
    const hash = below ? this.#committed.get(positionKey(position)) : disk.hashAt(position);
    if (hash === undefined) {
      const where = below ? "below its base, off the chain" : "beyond its log";
      fail(below ? "S5" : "S6", `node ${id} committed ${show(position)} ${where}`);
    }
    this.commitCount++;
    if (byLeader) this.#checkLeaderCommit(id, view, position, hash);
    if (comparePositions(position, this.#tip.position) <= 0) {
      if (this.#committed.get(positionKey(position)) !== hash) {
        fail("S5", `node ${id} committed ${show(position)}, which is off the committed chain`);
      }
      return;
    }
    if (!byLeader) fail("S5", `follower ${id} committed ${show(position)} beyond every leader`);
    this.#extendChain(id, position);
  }

  /**
   * S6: a leader commits only positions of its own term that a quorum holds durably, counting
   * no replica in repair mode (a replica damaged since the election may have held it then).
   */
  #checkLeaderCommit(id: NodeId, view: NodeView, position: Position, hash: number): void {
    const term = view.leaderTerm;
    if (term === 0) fail("S6", `node ${id} committed as leader without leading`);
    if (!this.#world.endToEndOnly) this.#checkCommitRule(id, term, position, hash);
    const best = this.#leaderCommits.get(term);
    if (!best || comparePositions(position, best.position) > 0) {
      this.#leaderCommits.set(term, { position, hash });
    }
  }

  #checkCommitRule(id: NodeId, term: number, position: Position, hash: number): void {
    if (position.epoch !== term) {
      fail("S6", `leader ${id} of term ${term} committed ${show(position)} of an older term`);
    }
    const electedAt = this.#electedAt.get(term) ?? 0;
    let holders = 0;
    for (const voter of this.#world.voters) {
      const other = this.#view(voter);
      if (other.damagedAt >= electedAt) holders++;
      else if (!other.repairing && this.#world.disk(voter).durablyHolds(position, hash)) holders++;
    }
    if (holders < quorumSize(this.#world.voters.length)) {
      fail("S6", `leader ${id} committed ${show(position)} held durably by ${holders} voters`);
    }
  }

  /** Moves the committed tip to `position` along node `id`'s log, which must contain the tip. */
  #extendChain(id: NodeId, position: Position): void {
    const disk = this.#world.disk(id);
    const tip = this.#tip;
    let index = 0;
    if (comparePositions(tip.position, disk.base) >= 0) {
      if (disk.hashAt(tip.position) !== tip.hash) {
        fail("S5", `node ${id} committed ${show(position)} on a log that forks below the tip`);
      }
      index = comparePositions(tip.position, disk.base) === 0 ? 0 : disk.indexOf(tip.position)! + 1;
    } else if (this.#committed.get(positionKey(disk.base)) === undefined) {
      fail("S5", `node ${id} committed from base ${show(disk.base)} off the chain`);
    }
    for (; index < disk.items.length; index++) {
      const stored = disk.items[index];
      if (comparePositions(stored.end, position) > 0) break;
      this.#committed.set(positionKey(stored.end), stored.hash);
      if (stored.item.kind === "entry") this.#entries.set(stored.item.offset, stored.item.bytes);
    }
    this.#tip = { position, hash: disk.hashAt(position)! };
  }

  /** S8: leaving repair needs a durable, committed own-term target and the former end. */
  #onRepairExit(id: NodeId, target: Position): void {
    const view = this.#view(id);
    const disk = this.#world.disk(id);
    const hash = this.#committed.get(positionKey(target));
    if (hash === undefined) fail("S8", `node ${id} left repair at uncommitted ${show(target)}`);
    if (!disk.durablyHolds(target, hash)) {
      fail("S8", `node ${id} left repair without holding ${show(target)} durably`);
    }
    if (view.formerEnd !== undefined && disk.durableEnd.offset < view.formerEnd) {
      fail("S8", `node ${id} left repair below its former end ${view.formerEnd}`);
    }
    view.repairing = false;
  }

  #view(id: NodeId): NodeView {
    const view = this.#views.get(id);
    if (!view) throw new Error(`no node ${id}`);
    return view;
  }
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index++) if (a[index] !== b[index]) return false;
  return true;
}

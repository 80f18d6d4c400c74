/**
 * @module Raft: the pure consensus core of one replicated byte log ("Raft-lite"; the rules and
 * their reasons are in docs/replication.md, section "Raft core"). The same core runs the
 * metadata group and every partition group.
 *
 * Synchronous and deterministic: `tick()`, `step()`, `propose()` and `persisted()` change state;
 * `ready()` hands the driver what to persist, send and report. No timers, sockets, disk or
 * Math.random: time is a count of ticks, randomness an injected Random, the log a read-only view
 * plus the items the core has not yet seen persisted.
 *
 * Membership: a group's voters are those named by the last epoch marker in its log (the
 * configured ones before any marker names them), so a configuration takes effect where it is
 * written and is undone by a truncation that drops its marker. It changes one voter at a time,
 * only in a new leader's marker, and only on the word of a leader that had committed in its own
 * term: that leader hands leadership to a voter of both configurations (itself included) with
 * the next configuration, which the winner writes in its marker. Learners (set by the driver)
 * receive the log and never vote or count. Details and the argument: docs/replication.md.
 *
 * Not here: snapshots (a follower whose log ends below the leader's log start is told to reset
 * to it), read index or leases, parsing of record bytes, and any I/O. The driver contract is on
 * `Ready`.
 */
import { assert } from "../assert.ts";
import type { Random } from "../prng.ts";
import {
  type AppendMessage,
  type AppendReplyMessage,
  ENTRY_BYTES_MAX,
  type HardState,
  HINT_EPOCHS_MAX,
  type Message,
  type NodeId,
  type RejectHint,
  type RepairState,
  type TimeoutNowMessage,
  type VoteMessage,
  type VoteReplyMessage,
} from "./messages.ts";
import { hasQuorum, quorumValue, VOTERS_MAX } from "./quorum.ts";
import { UnstableLog } from "./unstable_log.ts";
import {
  commonPosition,
  comparePositions,
  compareRecency,
  type EpochStart,
  epochsThrough,
  itemEnd,
  type LogItem,
  maxPosition,
  minPosition,
  type Position,
  type RaftLogView,
  runEnd,
  samePosition,
  votersOf,
} from "./raft_log.ts";

export type Role = "follower" | "preCandidate" | "candidate" | "leader";

/**
 * Deliberate bugs for the simulator's mutation tests (reliability-plan 3.4). Each one breaks
 * one rule; the simulator must catch every one. Never set outside tests.
 */
export type Canary =
  | "skipVotePersist"
  | "commitOldTerms"
  | "noPrevCheck"
  | "truncateBelowCommit"
  | "noUpToDateCheck"
  | "ackBeforeLeaderPersist"
  | "repairVotes"
  | "removedVotes";

/** Timeouts in ticks; the driver turns milliseconds into ticks (replication.md 5.5). */
export interface RaftTiming {
  readonly heartbeatTicks: number;
  /** A follower campaigns after a random timeout in [min, max] without hearing a leader. */
  readonly electionTicksMin: number;
  readonly electionTicksMax: number;
  /** A leader steps down after this long without hearing a quorum; below electionTicksMin. */
  readonly checkQuorumTicks: number;
}

/** What the driver read from disk at start. */
export interface DurableState {
  /** The stored hard state (`{ term: 0, votedFor: 0 }` on first start), or "unreadable". */
  readonly hardState: HardState | "unreadable";
  /** Set when the driver found the log damaged and cut it at this start (repair mode). */
  readonly repair?: RepairState;
}

export interface RaftOptions {
  readonly id: NodeId;
  /**
   * The group's voters until its log names others (a marker written by a leader). A node that
   * joins an existing group as a learner is not among them.
   */
  readonly voters: readonly NodeId[];
  /** Nodes that receive the log without voting (the driver may change them: setLearners). */
  readonly learners?: readonly NodeId[];
  readonly log: RaftLogView;
  readonly random: Random;
  readonly timing: RaftTiming;
  readonly durable: DurableState;
  /**
   * Start without voting rights: never vote, never campaign, acks not counted. The driver sets
   * it for a node that came back with an empty disk (it may not vote as its old self).
   */
  readonly nonVoting?: boolean;
  /** Bytes of entries per append message (at least one entry is always sent). */
  readonly appendBytesMax?: number;
  /** Bytes sent to one follower and not yet durable there. */
  readonly inflightBytesMax?: number;
  /** Proposals appended and not yet answered; beyond it propose() answers "busy". */
  readonly proposalsMax?: number;
  readonly canary?: Canary;
  /**
   * Let the group sleep when idle (quiescence): no heartbeats, no ticks. Only for a driver that
   * watches its peers' nodes and calls `leaderUnreachable()` when the leader's node goes
   * silent: a sleeping follower counts no time of its own.
   */
  readonly quiesce?: boolean;
}

export type ProposeResult =
  | {
    readonly kind: "appended";
    readonly offset: number;
    readonly endOffset: number;
    readonly term: number;
  }
  | { readonly kind: "notLeader"; readonly leaderId: NodeId }
  | { readonly kind: "busy" };

/**
 * The fate of an appended proposal. "ok": committed in the term it was appended in.
 * "indeterminate": this node stopped leading first; the bytes may or may not survive.
 */
export interface ProposalOutcome {
  readonly clientTag: number;
  readonly kind: "ok" | "indeterminate";
  readonly offset: number;
  readonly endOffset: number;
  readonly term: number;
}

/**
 * Trace events, in the order things happened: for logs, status and the simulator's checker.
 * The driver need not act on them (everything it must do is in the other Ready fields).
 */
export type RaftEvent =
  | { readonly kind: "role"; readonly role: Role; readonly term: number; readonly leaderId: NodeId }
  | { readonly kind: "campaign"; readonly term: number; readonly pre: boolean }
  | {
    readonly kind: "voted";
    readonly term: number;
    readonly candidate: NodeId;
    readonly pre: boolean;
  }
  | { readonly kind: "committed"; readonly position: Position; readonly leader: boolean }
  | { readonly kind: "truncated"; readonly to: Position }
  | { readonly kind: "reset"; readonly to: Position }
  | { readonly kind: "checkQuorumLost"; readonly term: number }
  | { readonly kind: "repairEntered"; readonly formerEndOffset?: number }
  | { readonly kind: "repairExited"; readonly target: Position; readonly term: number }
  | { readonly kind: "votesForgotten"; readonly floor: number }
  | { readonly kind: "votesRecovered"; readonly voteFloor: number }
  /** The group went to sleep here (quiescence), or woke up. */
  | { readonly kind: "quiet"; readonly quiet: boolean }
  /**
   * A configuration that names `voters` is committed (its marker is below the commit). With
   * `removed`, this node was a voter before it and is not in it: its copy is no longer needed.
   */
  | {
    readonly kind: "configurationCommitted";
    readonly epoch: number;
    readonly voters: readonly NodeId[];
    readonly removed: boolean;
  }
  | {
    readonly kind: "transfer";
    readonly target: NodeId;
    readonly step: "started" | "timeoutNowSent" | "aborted";
  };

/**
 * What the driver must do, in this order:
 *
 * 1. `hardState`: persist it (fsync, atomic replace) before anything below is sent.
 * 2. `resetTo` (drop the whole log, start empty at the position, epoch list = [that position])
 *    or `truncateTo` (cut bytes at the offset, drop the markers after the position): apply and
 *    make durable before sending. Never both.
 * 3. `appends`: write them in order (markers into the epoch checkpoint before the bytes that
 *    follow them); start the fsync, but do not wait for it: when everything up to
 *    `appendsEnd` is durable, call `persisted(appendsEnd)`.
 * 4. `messages`: send (they depend on 1 and 2 only; acks are produced after `persisted()`).
 * 5. `commit`, `outcomes`: serve bytes below `commit.offset` to readers; answer clients.
 * 6. `advance(ready)`, then call `ready()` again when `hasReady()`.
 */
export interface Ready {
  readonly hardState?: HardState;
  readonly resetTo?: Position;
  /** With `resetTo`: the voters in force at it (the base marker names them). */
  readonly resetVoters?: readonly NodeId[];
  readonly truncateTo?: Position;
  readonly appends: readonly LogItem[];
  readonly appendsEnd?: Position;
  readonly messages: readonly Message[];
  readonly commit?: Position;
  readonly outcomes: readonly ProposalOutcome[];
  readonly events: readonly RaftEvent[];
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly leaderId: NodeId;
  readonly votedFor: NodeId;
  readonly commit: Position;
  readonly durable: Position;
  readonly last: Position;
  readonly startOffset: number;
  readonly repair?: RepairState;
  readonly votesForgotten: boolean;
  readonly voteFloor: number;
  readonly nonVoting: boolean;
  /** The log start the leader last announced (followers delete below min(it, commit)). */
  readonly leaderStartOffset: number;
  readonly transferTarget?: NodeId;
  /** Asleep: the driver need not tick it (see quiescence in the module comment). */
  readonly quiet: boolean;
  /** Leader only: each follower's durable position as last reported (undefined: unknown). */
  readonly matches?: Readonly<Record<string, Position | undefined>>;
}

const APPEND_BYTES_DEFAULT = 1024 * 1024;
const INFLIGHT_BYTES_DEFAULT = 4 * 1024 * 1024;
const PROPOSALS_DEFAULT = 64 * 1024;
/** Append messages one replicate() call may send to one follower. */
const APPENDS_PER_CALL_MAX = 64;

/** The leader's view of one follower. */
interface Progress {
  /** Durable on the follower: what counts toward commit (when `counted`). */
  match?: Position;
  /** Held by the follower, durable or not: where a heartbeat may start. */
  appended?: Position;
  /** Where the next append starts. */
  next: Position;
  /** `next` is a guess: one append per heartbeat until the follower answers ok. */
  probing: boolean;
  probeSentTick: number;
  /** The next append tells the follower to drop its log and start at our base. */
  reset: boolean;
  /** False while the follower reports repair mode or no voting rights. */
  counted: boolean;
  lastHeardTick: number;
  lastProgressTick: number;
}

interface Proposal {
  readonly clientTag: number;
  readonly offset: number;
  readonly endOffset: number;
}

/** State of a node whose hard state was unreadable (replication.md 5.7 rule 3). */
interface Amnesia {
  ticksLeft: number;
  /** Highest term seen from any peer since start. */
  floor: number;
  heard: Set<NodeId>;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type Outgoing = DistributiveOmit<Message, "from" | "term"> & { readonly term?: number };

export class Raft {
  readonly id: NodeId;
  /** The voters before any marker names them. */
  readonly #seedVoters: readonly NodeId[];
  /** The voters in force (of the last marker naming them), and the learners; kept in step. */
  #voters: readonly NodeId[] = [];
  #learners: readonly NodeId[] = [];
  /** Everyone this node replicates to when it leads: voters and learners but itself. */
  #replicas: readonly NodeId[] = [];
  /** The voters the driver wants (from the cluster's placement); changed one at a time. */
  #targetVoters: readonly NodeId[] | undefined;
  /** Set while this node campaigns to write the next configuration in its marker. */
  #nextVoters: readonly NodeId[] | undefined;
  /** Asleep: nothing in flight, every copy settled; no ticks until something happens. */
  #quiet = false;
  /** Set when the driver reported the voters' nodes silent: no sleep until a majority answers. */
  #confirmQuorumAfterTick: number | undefined;
  /** Leader: voters our marker dropped, still sent to until the marker commits. */
  #departing: readonly NodeId[] = [];
  #departingUntilTick: number | undefined;
  readonly #timing: RaftTiming;
  readonly #random: Random;
  readonly #canary?: Canary;
  readonly #quiesce: boolean;
  readonly #nonVoting: boolean;
  readonly #appendBytesMax: number;
  readonly #inflightBytesMax: number;
  readonly #proposalsMax: number;
  #log!: UnstableLog;

  // Hard state.
  #term = 0;
  #votedFor: NodeId = 0;
  #repair: RepairState | undefined;
  #voteFloor = 0;
  #hardStateDirty = false;

  #commit: Position = { offset: 0, epoch: 0 };
  #commitChanged = false;

  // Role and timers.
  #role: Role = "follower";
  #leaderId: NodeId = 0;
  #tickCount = 0;
  #electionElapsed = 0;
  #electionTimeoutTicks = 0;
  #leaderContactTicks = 0;
  #votes = new Map<NodeId, boolean>();

  // Follower, for the current term's leader.
  #matched: Position | undefined;
  #ackSent: Position | undefined;
  #ackDue = false;
  #repairTarget: Position | undefined;
  #leaderStartOffset = 0;
  #amnesia: Amnesia | undefined;

  // Leader.
  #progress = new Map<NodeId, Progress>();
  #proposals: Proposal[] = [];
  #heartbeatElapsed = 0;
  /** A leadership hand-over in progress; `voters`: the configuration the winner writes. */
  #transfer:
    | { target: NodeId; elapsedTicks: number; sent: boolean; voters?: readonly NodeId[] }
    | undefined;

  // Output for the next Ready.
  #messages: Message[] = [];
  #outcomes: ProposalOutcome[] = [];
  #events: RaftEvent[] = [];
  #readyOutstanding = false;

  constructor(options: RaftOptions) {
    checkTiming(options.timing);
    const voters = checkVoters(options.voters);
    this.id = options.id;
    this.#seedVoters = voters;
    this.#learners = checkLearners(options.learners ?? []);
    this.#timing = options.timing;
    this.#random = options.random;
    this.#canary = options.canary;
    this.#quiesce = options.quiesce === true;
    this.#nonVoting = options.nonVoting === true;
    this.#appendBytesMax = options.appendBytesMax ?? APPEND_BYTES_DEFAULT;
    this.#inflightBytesMax = options.inflightBytesMax ?? INFLIGHT_BYTES_DEFAULT;
    this.#proposalsMax = options.proposalsMax ?? PROPOSALS_DEFAULT;
    assert(this.#appendBytesMax >= 1 && this.#appendBytesMax <= ENTRY_BYTES_MAX);
    assert(this.#inflightBytesMax >= this.#appendBytesMax);
    assert(this.#proposalsMax >= 1);
    this.#start(options.durable, options.log);
  }

  /** Forgets all volatile state and starts again from what the driver read from disk. */
  restart(durable: DurableState, log: RaftLogView): void {
    this.#start(durable, log);
  }

  /** Advances time by one tick. */
  tick(): void {
    if (this.#quiet) return;
    this.#tickCount++;
    if (this.#amnesia) this.#tickAmnesia(this.#amnesia);
    if (this.#role === "leader") this.#tickLeader();
    else this.#tickElection();
  }

  /**
   * The driver saw bytes of a message from `from` still arriving (a large append on the wire):
   * a follower of that leader counts it as contact, so it does not call an election while its
   * leader's entry is in transit. Liveness only: it changes no state but the election timer.
   */
  leaderAlive(from: NodeId): void {
    if (this.#role !== "follower" || from === 0 || from !== this.#leaderId) return;
    this.#electionElapsed = 0;
    this.#leaderContactTicks = 0;
  }

  /**
   * Handles one message from a peer. Votes asked by a node that is not a voter here are
   * ignored (a removed node cannot disrupt the group), as is anything from this node itself.
   */
  step(message: Message): void {
    assert(message.to === this.id, `message for ${message.to} stepped on ${this.id}`);
    if (message.from === this.id || message.from === 0) return;
    if (message.kind === "vote" && !this.#voters.includes(message.from)) return;
    if (this.#quiet) this.#wakeFor(message);
    if (this.#amnesia) observeTerm(this.#amnesia, message);
    // Term queries change no one's term, whatever terms they carry.
    if (message.kind === "termQuery") return this.#send({ kind: "termReply", to: message.from });
    if (message.kind === "termReply") return;
    if (message.term > this.#term && !this.#acceptHigherTerm(message)) return;
    if (message.term < this.#term) return this.#answerStale(message);
    switch (message.kind) {
      case "append":
        return this.#handleAppend(message);
      case "appendReply":
        return this.#handleAppendReply(message);
      case "vote":
        return this.#handleVote(message);
      case "voteReply":
        return this.#handleVoteReply(message);
      case "timeoutNow":
        return this.#handleTimeoutNow(message);
    }
  }

  /**
   * Appends `bytes` (one whole entry) if this node leads and is not handing leadership over.
   * The outcome arrives later in a Ready, keyed by `clientTag`.
   */
  propose(bytes: Uint8Array, clientTag: number, atomic = false): ProposeResult {
    if (this.#role !== "leader") return { kind: "notLeader", leaderId: this.#leaderId };
    this.#wake();
    if (this.#transfer) {
      // Handing over (to another node, or to ourselves in a new term for a new configuration).
      const target = this.#transfer.target;
      return { kind: "notLeader", leaderId: target === this.id ? 0 : target };
    }
    if (this.#proposals.length >= this.#proposalsMax) return { kind: "busy" };
    assert(bytes.length > 0 && bytes.length <= ENTRY_BYTES_MAX, `entry of ${bytes.length} bytes`);
    const offset = this.#log.endOffset;
    this.#appendItem({
      kind: "entry",
      offset,
      epoch: this.#term,
      bytes,
      ...(atomic ? { atomic: true } : {}),
    });
    const endOffset = this.#log.endOffset;
    this.#proposals.push({ clientTag, offset, endOffset });
    for (const peer of this.#replicas) this.#replicate(peer, false);
    this.#maybeCommit();
    return { kind: "appended", offset, endOffset, term: this.#term };
  }

  /** The group's voters now (those of the last marker in the log that names them). */
  get voters(): readonly NodeId[] {
    return this.#voters;
  }

  get learners(): readonly NodeId[] {
    return this.#learners;
  }

  /** The voters the driver asked for (undefined: none asked). */
  get targetVoters(): readonly NodeId[] | undefined {
    return this.#targetVoters;
  }

  /**
   * Who else receives the log without voting (a new replica catching up). A leader starts
   * sending to a new learner at once and stops sending to one no longer listed.
   */
  setLearners(learners: readonly NodeId[]): void {
    const next = checkLearners(learners);
    if (String(next) !== String(this.#learners)) this.#wake();
    this.#learners = next;
    this.#refreshMembers();
  }

  /**
   * The voters the group should have (from the cluster's placement). The leader moves there one
   * voter at a time: it adds a learner once it has caught up, then removes voters not wanted,
   * each change written by the marker of a new term (see the module comment).
   */
  setTargetVoters(voters: readonly NodeId[] | undefined): void {
    const next = voters === undefined ? undefined : checkVoters(voters);
    if (String(next) !== String(this.#targetVoters)) this.#wake();
    this.#targetVoters = next;
  }

  /** The repair state while this copy is in repair mode (cheaper than `status()`). */
  get repair(): RepairState | undefined {
    return this.#repair;
  }

  /** Whether the group sleeps here: the driver need not tick it until something happens. */
  get quiet(): boolean {
    return this.#quiet;
  }

  /**
   * The driver lost contact with the node of this group's leader. A sleeping follower wakes with
   * its lease over (it counted no time while asleep), so it votes and, after an election
   * timeout of its own, campaigns; the group elects as if the leader had just gone silent.
   */
  leaderUnreachable(): void {
    if (!this.#quiet || this.#role === "leader") return;
    this.#wake();
    this.#leaderContactTicks = this.#timing.electionTicksMin;
  }

  /**
   * The driver lost contact with the nodes of a majority of this group's voters. A sleeping
   * leader wakes so that check-quorum runs again: cut off, it steps down instead of leading on
   * in its sleep while the others elect a new leader.
   */
  quorumUnreachable(): void {
    if (!this.#quiet || this.#role !== "leader") return;
    this.#wake();
    // Stay awake until a majority answers again: going back to sleep at the next heartbeat
    // would skip the check-quorum this wake is for.
    this.#confirmQuorumAfterTick = this.#tickCount;
  }

  /**
   * The driver saw `peer`'s node change (it restarted, was replaced, or repairs a copy): a
   * sleeping leader wakes to learn where that copy stands (its heartbeat finds a shorter log
   * and catches it up before the group sleeps again).
   */
  peerChanged(peer: NodeId): void {
    if (!this.#quiet || this.#role !== "leader" || !this.#replicas.includes(peer)) return;
    this.#wake();
  }

  /**
   * Starts handing leadership to `target` (graceful shutdown): proposals are refused, the
   * target is caught up, then told to campaign at once. Gives up after electionTicksMin.
   */
  transferLeadership(target: NodeId): boolean {
    this.#wake();
    if (this.#role !== "leader" || target === this.id || !this.#voters.includes(target)) {
      return false;
    }
    if (this.#transfer) return false;
    this.#transfer = { target, elapsedTicks: 0, sent: false };
    this.#events.push({ kind: "transfer", target, step: "started" });
    this.#maybeSendTimeoutNow(target);
    if (!this.#transfer.sent) this.#replicate(target, true);
    return true;
  }

  /**
   * The driver made every appended item up to `upTo` durable (an `appendsEnd` it was given).
   * Reports about items since cut off by a truncation are recognised and ignored.
   */
  persisted(upTo: Position): void {
    if (!this.#log.persisted(upTo)) return;
    if (this.#role === "leader") {
      this.#maybeCommit();
      return;
    }
    const ack = this.#ackPosition();
    const following = this.#role === "follower" && this.#leaderId !== 0;
    const advanced = ack && (!this.#ackSent || comparePositions(ack, this.#ackSent) > 0);
    if (this.#ackDue && following && advanced) this.#sendAck();
    this.#checkRepairExit();
  }

  /**
   * Asks whether the driver may drop the log prefix before `base` (retention): only committed,
   * durable data may go. On true the core forgets the prefix too; the driver then deletes it
   * and rewrites its epoch checkpoint from `base`.
   */
  compact(base: Position): boolean {
    if (!this.#log.holds(base) || this.#log.cutPending) return false;
    if (comparePositions(base, this.#commit) > 0) return false;
    if (comparePositions(base, this.#log.durable) > 0) return false;
    this.#log.compact(base);
    return true;
  }

  hasReady(): boolean {
    return this.#hardStateDirty || this.#log.hasOutput || this.#messages.length > 0 ||
      this.#commitChanged || this.#outcomes.length > 0 || this.#events.length > 0;
  }

  /** Takes everything the driver must do now; see `Ready` for the order. */
  ready(): Ready {
    assert(!this.#readyOutstanding, "ready() called again before advance()");
    const { cut, appends, appendsEnd } = this.#log.take();
    const ready: Ready = {
      ...(this.#hardStateDirty ? { hardState: this.#hardState() } : {}),
      ...(cut?.kind === "reset" ? { resetTo: cut.position } : {}),
      ...(cut?.kind === "reset" && cut.voters ? { resetVoters: cut.voters } : {}),
      ...(cut?.kind === "truncate" ? { truncateTo: cut.position } : {}),
      appends,
      ...(appendsEnd ? { appendsEnd } : {}),
      messages: this.#messages,
      ...(this.#commitChanged ? { commit: this.#commit } : {}),
      outcomes: this.#outcomes,
      events: this.#events,
    };
    this.#hardStateDirty = false;
    this.#commitChanged = false;
    this.#messages = [];
    this.#outcomes = [];
    this.#events = [];
    this.#readyOutstanding = true;
    return ready;
  }

  /** The driver finished steps 1-5 of the last Ready. */
  advance(_ready: Ready): void {
    assert(this.#readyOutstanding, "advance() without ready()");
    this.#readyOutstanding = false;
  }

  status(): RaftStatus {
    return {
      id: this.id,
      role: this.#role,
      term: this.#term,
      leaderId: this.#leaderId,
      votedFor: this.#votedFor,
      commit: this.#commit,
      durable: this.#log.durable,
      last: this.#log.last,
      startOffset: this.#log.startOffset,
      ...(this.#repair ? { repair: this.#repair } : {}),
      votesForgotten: this.#amnesia !== undefined,
      voteFloor: this.#voteFloor,
      nonVoting: this.#nonVoting,
      leaderStartOffset: this.#leaderStartOffset,
      ...(this.#transfer ? { transferTarget: this.#transfer.target } : {}),
      quiet: this.#quiet,
      ...(this.#role === "leader"
        ? {
          matches: Object.fromEntries(
            [...this.#progress].map(([peer, progress]) => [String(peer), progress.match]),
          ),
        }
        : {}),
    };
  }

  // ---------------------------------------------------------------------------------------
  // Start and hard state.

  #start(durable: DurableState, log: RaftLogView): void {
    this.#log = new UnstableLog(log);
    this.#quiet = false;
    this.#role = "follower";
    this.#progress.clear();
    this.#nextVoters = undefined;
    this.#refreshMembers();
    // Only the base is known to be committed after a restart; leaders tell us the rest.
    this.#commit = this.#log.base;
    this.#commitChanged = false;
    this.#role = "follower";
    this.#leaderId = 0;
    this.#tickCount = 0;
    this.#leaderContactTicks = this.#timing.electionTicksMin;
    this.#votes.clear();
    this.#clearFollowerState();
    this.#leaderStartOffset = 0;
    this.#progress.clear();
    this.#proposals = [];
    this.#transfer = undefined;
    this.#messages = [];
    this.#outcomes = [];
    this.#events = [];
    this.#readyOutstanding = false;
    this.#loadHardState(durable);
    this.#resetElectionTimer();
  }

  #loadHardState(durable: DurableState): void {
    const lastEpoch = this.#lastPosition().epoch;
    const stored = durable.hardState;
    this.#amnesia = undefined;
    if (stored === "unreadable") {
      // Rule 3: we may have voted in any term up to one we have not seen yet.
      this.#term = lastEpoch;
      this.#votedFor = this.id;
      this.#repair = undefined;
      this.#voteFloor = 0;
      this.#beginAmnesia();
    } else {
      assert(stored.term >= lastEpoch, `term ${stored.term} is below log epoch ${lastEpoch}`);
      this.#term = stored.term;
      this.#votedFor = stored.votedFor;
      this.#repair = stored.repair;
      this.#voteFloor = stored.voteFloor ?? 0;
      this.#hardStateDirty = false;
      if (stored.votesForgotten) this.#beginAmnesia();
    }
    if (durable.repair) {
      this.#repair = mergeRepair(this.#repair, durable.repair);
      this.#hardStateDirty = true;
    }
    if (this.#repair) {
      this.#events.push({ kind: "repairEntered", formerEndOffset: this.#repair.formerEndOffset });
    }
  }

  #beginAmnesia(): void {
    this.#amnesia = {
      ticksLeft: this.#timing.electionTicksMax,
      floor: Math.max(this.#term, this.#voteFloor),
      heard: new Set(),
    };
    this.#votedFor = this.id;
    this.#hardStateDirty = true;
    this.#events.push({ kind: "votesForgotten", floor: this.#amnesia.floor });
  }

  /**
   * While our votes are forgotten, ask the peers we have not heard from for their terms. The
   * window ends once it lasted an election timeout and every peer answered: any candidate we
   * voted for keeps a term at least that high, so the highest term seen bounds our old votes.
   */
  #tickAmnesia(amnesia: Amnesia): void {
    amnesia.ticksLeft = Math.max(0, amnesia.ticksLeft - 1);
    const peers = this.#voters.filter((voter) => voter !== this.id);
    if (peers.some((peer) => !amnesia.heard.has(peer))) {
      if (this.#tickCount % this.#timing.heartbeatTicks === 0) {
        for (const peer of peers) {
          if (!amnesia.heard.has(peer)) this.#send({ kind: "termQuery", to: peer });
        }
      }
      return;
    }
    if (amnesia.ticksLeft > 0) return;
    this.#amnesia = undefined;
    this.#voteFloor = Math.max(this.#voteFloor, amnesia.floor);
    // Catch up to the floor as if we had voted there: we reject leaders of older terms again.
    if (this.#term < this.#voteFloor) this.#becomeFollower(this.#voteFloor, 0);
    this.#hardStateDirty = true;
    this.#events.push({ kind: "votesRecovered", voteFloor: this.#voteFloor });
  }

  #hardState(): HardState {
    // The canary forgets to persist votes for others, as a driver that skipped the fsync would.
    const skipVote = this.#canary === "skipVotePersist" && this.#votedFor !== this.id;
    return {
      term: this.#term,
      votedFor: skipVote ? 0 : this.#votedFor,
      ...(this.#repair ? { repair: this.#repair } : {}),
      ...(this.#amnesia ? { votesForgotten: true } : {}),
      ...(this.#voteFloor > 0 ? { voteFloor: this.#voteFloor } : {}),
    };
  }

  // ---------------------------------------------------------------------------------------
  // Terms and roles.

  /** A message from a later term. Returns whether to go on and handle it. */
  #acceptHigherTerm(message: Message): boolean {
    if (message.kind === "vote") {
      // A follower that hears a live leader ignores candidates: pre-vote and check-quorum keep
      // a rejoining node from deposing a healthy leader. A transfer overrides this.
      if (!message.transfer && this.#inLease()) return false;
      if (!message.pre) this.#becomeFollower(message.term, 0);
      return true;
    }
    // A granted pre-vote echoes the term we would campaign in; it is not a newer term.
    if (message.kind === "voteReply" && message.pre && message.granted) return true;
    const fromLeader = message.kind === "append" || message.kind === "timeoutNow";
    this.#becomeFollower(message.term, fromLeader ? message.from : 0);
    return fromLeader;
  }

  /** A message from an earlier term: tell the sender our term so it steps down or catches up. */
  #answerStale(message: Message): void {
    if (message.kind === "append") {
      this.#send({ kind: "appendReply", to: message.from, ok: false, counted: this.#counted() });
    } else if (message.kind === "vote") {
      this.#send({ kind: "voteReply", to: message.from, pre: message.pre, granted: false });
    }
  }

  #inLease(): boolean {
    if (this.#leaderId === 0) return false;
    return this.#role === "leader" || this.#leaderContactTicks < this.#timing.electionTicksMin;
  }

  #becomeFollower(term: number, leaderId: NodeId): void {
    assert(term >= this.#term);
    if (this.#role === "leader") this.#stepDown();
    this.#nextVoters = undefined;
    this.#confirmQuorumAfterTick = undefined;
    const changed = term > this.#term || this.#role !== "follower" || this.#leaderId !== leaderId;
    if (term > this.#term) this.#enterTerm(term, this.#amnesia ? this.id : 0);
    this.#role = "follower";
    this.#leaderId = leaderId;
    this.#votes.clear();
    this.#resetElectionTimer();
    if (leaderId !== 0) this.#leaderContactTicks = 0;
    if (changed) this.#events.push({ kind: "role", role: "follower", term, leaderId });
  }

  #enterTerm(term: number, votedFor: NodeId): void {
    assert(term > this.#term);
    this.#term = term;
    this.#votedFor = votedFor;
    this.#hardStateDirty = true;
    this.#clearFollowerState();
  }

  #clearFollowerState(): void {
    this.#matched = undefined;
    this.#ackSent = undefined;
    this.#ackDue = false;
    this.#repairTarget = undefined;
  }

  /** Leaving leadership: every proposal not yet committed may or may not survive. */
  #stepDown(): void {
    this.#departing = [];
    this.#departingUntilTick = undefined;
    for (const proposal of this.#proposals) {
      this.#outcomes.push({ ...proposal, kind: "indeterminate", term: this.#term });
    }
    this.#proposals = [];
    if (this.#transfer) {
      this.#events.push({ kind: "transfer", target: this.#transfer.target, step: "aborted" });
    }
    this.#transfer = undefined;
    this.#progress.clear();
  }

  #resetElectionTimer(): void {
    const { electionTicksMin, electionTicksMax } = this.#timing;
    this.#electionElapsed = 0;
    this.#electionTimeoutTicks = this.#random.int(electionTicksMin, electionTicksMax + 1);
  }

  #tickElection(): void {
    this.#electionElapsed++;
    this.#leaderContactTicks++;
    if (this.#electionElapsed < this.#electionTimeoutTicks) return;
    if (this.#mayCampaign()) return this.#campaign(true, false);
    this.#resetElectionTimer();
    if (this.#repair && this.#isVoter()) this.#callLeader();
  }

  /**
   * A copy in repair may not campaign, yet only its leader can repair it: a sleeping leader
   * that missed its restart (the driver's peerChanged came before the copy was open here, or
   * the heartbeat it woke for was lost) would sleep on and leave it in repair for good. So it
   * asks the voters for pre-votes it will not follow up (it stays a follower, their replies
   * are ignored): what any follower that lost patience sends, and what wakes a sleeping leader
   * (#wakeFor). It changes no term, and a live leader refuses it.
   */
  #callLeader(): void {
    this.#askVotes(this.#campaignTerm(), true, false);
  }

  /** Sends a vote request for `term` to every other voter. */
  #askVotes(term: number, pre: boolean, transfer: boolean): void {
    const last = this.#lastPosition();
    for (const peer of this.#voters) {
      if (peer !== this.id) this.#send({ kind: "vote", to: peer, term, pre, transfer, last });
    }
  }

  #tickLeader(): void {
    this.#heartbeatElapsed++;
    const transfer = this.#transfer;
    if (transfer && ++transfer.elapsedTicks >= this.#timing.electionTicksMin) {
      this.#events.push({ kind: "transfer", target: transfer.target, step: "aborted" });
      this.#transfer = undefined;
    }
    if (!this.#quorumActive()) {
      // Check-quorum: a leader cut off from a majority stops acting as one before any other
      // node can be elected (checkQuorumTicks < electionTicksMin).
      this.#events.push({ kind: "checkQuorumLost", term: this.#term });
      this.#becomeFollower(this.#term, 0);
      return;
    }
    const confirmAfter = this.#confirmQuorumAfterTick;
    if (confirmAfter !== undefined && this.#heardSince(confirmAfter)) {
      this.#confirmQuorumAfterTick = undefined;
    }
    if (this.#departingUntilTick !== undefined && this.#tickCount >= this.#departingUntilTick) {
      this.#departing = [];
      this.#departingUntilTick = undefined;
      this.#refreshMembers();
    }
    if (this.#transfer?.target === this.id) this.#maybeReelect();
    else if (!this.#transfer) this.#maybeReconfigure();
    if (this.#role !== "leader") return;
    if (this.#heartbeatElapsed < this.#timing.heartbeatTicks) return;
    this.#heartbeatElapsed = 0;
    if (this.#maySleep()) {
      // Quiescence: one last heartbeat, marked quiet and carrying the commit, then nothing
      // until a proposal or a peer's message. A copy that misses it campaigns after its
      // timeout, which wakes us.
      for (const peer of this.#replicas) {
        this.#sendAppend(peer, this.#progress.get(peer)!.appended!, false, false, true);
      }
      this.#sleep();
      return;
    }
    for (const peer of this.#replicas) this.#heartbeat(peer);
  }

  /**
   * A leader may put its group to sleep when nothing is in flight or changing, and every copy
   * holds the whole log durably and has been told it is committed.
   */
  #maySleep(): boolean {
    if (!this.#quiesce) return false;
    if (this.#proposals.length > 0 || this.#transfer || this.#departing.length > 0) return false;
    if (this.#confirmQuorumAfterTick !== undefined) return false;
    if (this.#amnesia || this.#repair || this.#canary !== undefined) return false;
    const target = this.#targetVoters;
    if (target && !sameMembers(target, this.#voters)) return false;
    const last = this.#lastPosition();
    if (!samePosition(this.#commit, last) || !samePosition(this.#log.durable, last)) return false;
    for (const peer of this.#replicas) {
      const progress = this.#progress.get(peer);
      if (!progress || progress.probing || progress.reset) return false;
      if (!progress.match || !samePosition(progress.match, last)) return false;
    }
    return true;
  }

  #sleep(): void {
    this.#quiet = true;
    this.#events.push({ kind: "quiet", quiet: true });
  }

  /** Wakes the group for `message`, unless the message is one a sleeping group ignores. */
  #wakeFor(message: Message): void {
    if (this.#role === "leader") {
      // Acks of our quiet heartbeat change nothing; anything else does (a vote request: a
      // copy that missed the quiet heartbeat lost patience).
      if (message.kind === "appendReply" && message.ok) return;
      return this.#wake();
    }
    // Our own leader asking for votes has lost its leadership (it restarted, say): the lease
    // we kept while asleep is over.
    if (message.kind === "vote" && message.from === this.#leaderId) {
      return this.leaderUnreachable();
    }
    // A vote request wakes a follower too (its lease still refuses this one): asleep, its lease
    // would never run out, and a group whose leader is gone without going silent (it left the
    // group but its node still beats) could never elect again. Awake, it counts time: a live
    // leader, woken by the same request, heartbeats; a gone one lets the lease lapse.
    if (message.kind === "termQuery") return;
    if (message.kind === "append" && message.quiet && message.entries.length === 0) return;
    this.#wake();
    // The leader sleeps too and did not hear the candidate (its link from the candidate may
    // still be down when ours is back): ask it something, which wakes it, so that a live one
    // heartbeats before our lease runs out. A term query changes nobody's term; a gone leader
    // does not answer, and the lease lapses as it should.
    if (message.kind === "vote" && this.#leaderId !== 0) {
      this.#send({ kind: "termQuery", to: this.#leaderId });
    }
  }

  #wake(): void {
    if (!this.#quiet) return;
    this.#quiet = false;
    this.#events.push({ kind: "quiet", quiet: false });
    if (this.#role === "leader") {
      // Time stood still while asleep: nobody is overdue for check-quorum.
      this.#heartbeatElapsed = this.#timing.heartbeatTicks;
      for (const progress of this.#progress.values()) progress.lastHeardTick = this.#tickCount;
    } else {
      this.#electionElapsed = 0;
    }
  }

  /**
   * One step toward the target voters, when one is due and safe: our own term is committed
   * (so no configuration other than ours can still commit), and a voter to add has caught up.
   */
  #maybeReconfigure(): void {
    const target = this.#targetVoters;
    if (!target || sameMembers(target, this.#voters)) return;
    if (this.#commit.epoch !== this.#term) return;
    const next = this.#nextConfiguration(target);
    if (!next) return;
    // Hand over to a voter of both configurations: ourselves when we stay, in a new term.
    const successor = next.includes(this.id) ? this.id : this.#bestSuccessor(next);
    if (successor === undefined) return;
    this.#transfer = { target: successor, elapsedTicks: 0, sent: false, voters: next };
    this.#events.push({ kind: "transfer", target: successor, step: "started" });
    if (successor === this.id) this.#maybeReelect();
    else {
      this.#maybeSendTimeoutNow(successor);
      if (!this.#transfer?.sent) this.#replicate(successor, true);
    }
  }

  /** The configuration one change from ours toward `target`, or undefined when none may go yet. */
  #nextConfiguration(target: readonly NodeId[]): NodeId[] | undefined {
    const current = this.#voters;
    const toAdd = target.filter((id) => !current.includes(id));
    for (const id of toAdd) {
      if (current.length >= VOTERS_MAX) break;
      const progress = this.#progress.get(id);
      if (progress && this.#caughtUp(progress)) return [...current, id].sort((a, b) => a - b);
    }
    // Add before removing, so the group never has fewer copies than it should: wait for the
    // learners to catch up.
    if (toAdd.length > 0 && current.length < VOTERS_MAX) return undefined;
    const toRemove = current.filter((id) => !target.includes(id));
    if (toRemove.length === 0 || current.length <= 1) return undefined;
    // Remove others before ourselves: our own removal costs a change of leader.
    const remove = toRemove.find((id) => id !== this.id) ?? toRemove[0];
    return current.filter((id) => id !== remove);
  }

  /** A learner has what we committed (less than one append message behind). */
  #caughtUp(progress: Progress): boolean {
    return progress.match !== undefined && !progress.probing &&
      progress.match.offset + this.#appendBytesMax >= this.#commit.offset;
  }

  /** The most caught-up counted voter of `next` other than us, if any is in contact. */
  #bestSuccessor(next: readonly NodeId[]): NodeId | undefined {
    let best: NodeId | undefined;
    let bestMatch: Position | undefined;
    for (const id of next) {
      const progress = this.#progress.get(id);
      if (id === this.id || !progress?.counted || !progress.match) continue;
      if (!this.#voters.includes(id)) continue;
      if (!bestMatch || comparePositions(progress.match, bestMatch) > 0) {
        best = id;
        bestMatch = progress.match;
      }
    }
    return best;
  }

  /**
   * Our hand-over to ourselves: once every proposal of this term is answered, campaign in the
   * next term (marked as a transfer, so followers that hear us still vote) to write the next
   * configuration in our marker.
   */
  #maybeReelect(): void {
    const transfer = this.#transfer;
    if (!transfer || transfer.target !== this.id || this.#proposals.length > 0) return;
    const voters = transfer.voters;
    this.#events.push({ kind: "transfer", target: this.id, step: "timeoutNowSent" });
    this.#transfer = undefined;
    this.#becomeFollower(this.#term, 0);
    if (!this.#mayCampaign()) return;
    this.#nextVoters = voters;
    this.#campaign(false, true);
  }

  /** Whether a majority of voters (this one included) was heard after `tick`. */
  #heardSince(tick: number): boolean {
    let heard = this.#voters.includes(this.id) ? 1 : 0;
    for (const voter of this.#voters) {
      const progress = this.#progress.get(voter);
      if (progress?.counted && progress.lastHeardTick > tick) heard++;
    }
    return hasQuorum(heard, this.#voters.length);
  }

  #quorumActive(): boolean {
    let active = this.#voters.includes(this.id) ? 1 : 0;
    for (const voter of this.#voters) {
      const progress = this.#progress.get(voter);
      if (!progress) continue;
      const recent = this.#tickCount - progress.lastHeardTick < this.#timing.checkQuorumTicks;
      if (progress.counted && recent) active++;
    }
    return hasQuorum(active, this.#voters.length);
  }

  // ---------------------------------------------------------------------------------------
  // Elections.

  #mayCampaign(): boolean {
    return !this.#nonVoting && !this.#repair && !this.#amnesia && this.#isVoter();
  }

  /** Whether our own log names us a voter (a learner, or a removed node, is not). */
  #isVoter(): boolean {
    return this.#voters.includes(this.id) || this.#canary === "removedVotes";
  }

  #mayVote(term: number, candidate: NodeId): boolean {
    if (this.#nonVoting || this.#amnesia || !this.#isVoter()) return false;
    if (this.#repair && !this.#followsBase(candidate) && this.#canary !== "repairVotes") {
      return false;
    }
    return term > this.#voteFloor;
  }

  /**
   * Whether `node` is the base an operator chose for this copy in repair (force-recover): the
   * one candidate it votes for, whatever its log, and the one leader its acks count for.
   */
  #followsBase(node: NodeId): boolean {
    return node !== 0 && this.#repair?.base === node;
  }

  /** The term of our next campaign: never one we may already have voted in (rule 3's floor). */
  #campaignTerm(): number {
    return Math.max(this.#term, this.#voteFloor) + 1;
  }

  #campaign(pre: boolean, transfer: boolean): void {
    assert(this.#mayCampaign() && this.#role !== "leader");
    const term = this.#campaignTerm();
    if (pre) {
      this.#role = "preCandidate";
    } else {
      this.#enterTerm(term, this.id);
      this.#role = "candidate";
    }
    this.#leaderId = 0;
    this.#votes.clear();
    this.#votes.set(this.id, true);
    this.#resetElectionTimer();
    this.#events.push({ kind: "campaign", term, pre });
    if (!pre) this.#events.push({ kind: "role", role: "candidate", term, leaderId: 0 });
    this.#askVotes(term, pre, transfer);
    if (!hasQuorum(1, this.#voters.length)) return;
    if (pre) this.#campaign(false, transfer);
    else this.#becomeLeader();
  }

  #handleVote(message: VoteMessage): void {
    // The operator's base wins even with a shorter log: what only we hold is given up.
    const upToDate = this.#canary === "noUpToDateCheck" || this.#followsBase(message.from) ||
      compareRecency(message.last, this.#lastPosition()) >= 0;
    const eligible = this.#mayVote(message.term, message.from);
    if (message.pre) {
      const granted = eligible && upToDate && message.term > this.#term;
      const term = granted ? message.term : this.#term;
      if (granted) {
        this.#events.push({ kind: "voted", term, candidate: message.from, pre: true });
      }
      this.#send({ kind: "voteReply", to: message.from, term, pre: true, granted });
      return;
    }
    assert(message.term === this.#term);
    const free = this.#votedFor === 0 || this.#votedFor === message.from;
    const granted = free && eligible && upToDate;
    if (granted && this.#votedFor !== message.from) {
      this.#votedFor = message.from;
      this.#hardStateDirty = true;
      this.#electionElapsed = 0;
      this.#events.push({ kind: "voted", term: this.#term, candidate: message.from, pre: false });
    }
    this.#send({ kind: "voteReply", to: message.from, pre: false, granted });
  }

  #handleVoteReply(message: VoteReplyMessage): void {
    const expectedTerm = message.pre && message.granted ? this.#campaignTerm() : this.#term;
    const expectedRole = message.pre ? "preCandidate" : "candidate";
    if (this.#role !== expectedRole || message.term !== expectedTerm) return;
    if (!this.#voters.includes(message.from)) return;
    this.#votes.set(message.from, message.granted);
    let granted = 0;
    for (const vote of this.#votes.values()) if (vote) granted++;
    const rejected = this.#votes.size - granted;
    if (hasQuorum(granted, this.#voters.length)) {
      if (message.pre) this.#campaign(false, false);
      else this.#becomeLeader();
    } else if (hasQuorum(rejected, this.#voters.length)) {
      this.#becomeFollower(this.#term, 0);
    }
  }

  #handleTimeoutNow(message: TimeoutNowMessage): void {
    if (this.#role !== "follower" || this.#leaderId !== message.from) return;
    if (!this.#mayCampaign()) return;
    // The next configuration comes from a leader that committed in its term: write it in our
    // marker if we win, provided it is one change from ours and names us.
    const next = message.voters;
    const valid = next !== undefined && next.includes(this.id) &&
      oneChangeApart(next, this.#voters);
    this.#nextVoters = valid ? next : undefined;
    this.#campaign(false, true);
  }

  #becomeLeader(): void {
    assert(this.#role === "candidate");
    this.#role = "leader";
    this.#leaderId = this.id;
    this.#heartbeatElapsed = 0;
    this.#transfer = undefined;
    this.#proposals = [];
    const before = this.#lastPosition();
    // The epoch marker is our no-op: once a quorum holds it, our commit covers our own term.
    // It names the voters: ours, or the next configuration we campaigned to write.
    const voters = this.#nextVoters ?? this.#voters;
    this.#nextVoters = undefined;
    this.#departing = this.#voters.filter((id) => !voters.includes(id) && id !== this.id);
    this.#departingUntilTick = undefined;
    this.#progress.clear();
    this.#log.append({ kind: "marker", offset: this.#log.endOffset, epoch: this.#term, voters });
    this.#refreshMembers(false);
    for (const peer of this.#replicas) this.#progress.set(peer, this.#newProgress(before));
    this.#events.push({ kind: "role", role: "leader", term: this.#term, leaderId: this.id });
    for (const peer of this.#replicas) this.#replicate(peer, true);
    this.#maybeCommit();
  }

  // ---------------------------------------------------------------------------------------
  // Follower: appends.

  #handleAppend(message: AppendMessage): void {
    assert(this.#role !== "leader", `two leaders in term ${this.#term}`);
    if (this.#role !== "follower" || this.#leaderId !== message.from) {
      this.#becomeFollower(message.term, message.from);
    }
    this.#electionElapsed = 0;
    this.#leaderContactTicks = 0;
    this.#leaderStartOffset = message.leaderStartOffset;
    // A reset aimed at or below our commit is stale (we were reset past it): nothing to drop.
    const behind = comparePositions(message.prev, this.#commit) <= 0;
    if (message.reset && !behind && !this.#holds(message.prev)) {
      this.#resetLog(message.prev, message.baseVoters);
    }
    if (!this.#prevMatches(message.prev)) {
      const hint = this.#rejectHint(message.prev);
      this.#send({
        kind: "appendReply",
        to: message.from,
        ok: false,
        counted: this.#counted(),
        hint,
      });
      return;
    }
    const blind = this.#canary === "noPrevCheck" && !this.#holds(message.prev) &&
      comparePositions(message.prev, this.#commit) > 0;
    const end = blind ? this.#acceptBlindly(message) : this.#acceptItems(message);
    this.#matched = this.#matched ? maxPosition(this.#matched, end) : end;
    const commit = minPosition(message.commit, end);
    if (comparePositions(commit, this.#commit) > 0) this.#setCommit(commit);
    // Only a commit that covers the leader's own term covers everything committed before it.
    if (message.commit.epoch === message.term) this.#repairTarget = message.commit;
    this.#sendAck();
    this.#checkRepairExit();
    // The leader put the group to sleep: so do we, if we hold all of it and know its commit.
    const last = this.#lastPosition();
    if (
      this.#quiesce && message.quiet && message.entries.length === 0 && this.#counted() &&
      !this.#repair &&
      samePosition(end, last) && samePosition(this.#commit, last)
    ) {
      this.#sleep();
    }
  }

  /** We hold `prev`, or it is below our commit (a prefix every log of this term shares). */
  #prevMatches(prev: Position): boolean {
    if (this.#holds(prev) || comparePositions(prev, this.#commit) <= 0) return true;
    const inside = prev.offset >= this.#log.startOffset && prev.offset <= this.#log.endOffset;
    return this.#canary === "noPrevCheck" && inside;
  }

  /**
   * Takes the items after `prev` that we lack. Items we hold are skipped (log matching makes
   * them equal); at the first item we do not hold, whatever we have after it is cut (it can
   * never be committed: the leader's log differs there) and the rest is appended.
   */
  #acceptItems(message: AppendMessage): Position {
    const items = appendItems(message);
    const end = items.length > 0 ? itemEnd(items[items.length - 1]) : message.prev;
    let index = 0;
    let position = message.prev;
    if (this.#canary === "truncateBelowCommit") {
      // The canary cuts eagerly at every append, even one that is stale and below our commit.
      const behind = comparePositions(position, this.#lastPosition()) < 0;
      if (items.length > 0 && behind && this.#holds(position)) this.#truncate(position);
    } else {
      // Items at or below our commit match by definition, even if retention removed them here.
      while (index < items.length && comparePositions(itemEnd(items[index]), this.#commit) <= 0) {
        position = itemEnd(items[index++]);
      }
    }
    while (index < items.length && this.#holds(itemEnd(items[index]))) {
      position = itemEnd(items[index++]);
    }
    if (index === items.length) return end;
    if (comparePositions(position, this.#lastPosition()) < 0) this.#truncate(position);
    for (; index < items.length; index++) this.#appendItem(items[index]);
    return end;
  }

  /**
   * The noPrevCheck canary: a follower that matched on offset alone cuts its log there and
   * writes the leader's items after it, relabelling entries with its own epoch where needed.
   */
  #acceptBlindly(message: AppendMessage): Position {
    const items = appendItems(message);
    const offset = message.prev.offset;
    const cut = {
      offset,
      epoch: epochsThrough(this.#log.epochs, { offset, epoch: Infinity }).at(-1)!.epoch,
    };
    if (comparePositions(cut, this.#lastPosition()) < 0) this.#truncate(cut);
    for (const item of items) {
      const lastEpoch = this.#lastPosition().epoch;
      if (item.kind === "marker" && item.epoch <= lastEpoch) continue;
      this.#appendItem(item.kind === "entry" ? { ...item, epoch: lastEpoch } : item);
    }
    return this.#lastPosition();
  }

  /** Our epochs up to the rejected one, so the leader can find where our logs part. */
  #rejectHint(prev: Position): RejectHint {
    const { epochs, endOffset } = this.#log;
    let count = 0;
    while (count < epochs.length && epochs[count].epoch <= prev.epoch) count++;
    const from = Math.max(0, count - HINT_EPOCHS_MAX);
    return {
      epochs: epochs.slice(from, count),
      endOffset: runEnd(epochs, count - 1, endOffset),
      partial: from > 0,
    };
  }

  #ackPosition(): Position | undefined {
    return this.#matched && minPosition(this.#matched, this.#log.durable);
  }

  /** Tells the leader what we hold and what of it is durable; again once more is durable. */
  #sendAck(): void {
    const match = this.#ackPosition();
    const appended = this.#matched;
    assert(match !== undefined && appended !== undefined && this.#leaderId !== 0);
    this.#send({
      kind: "appendReply",
      to: this.#leaderId,
      ok: true,
      counted: this.#counted(),
      match,
      appended,
    });
    this.#ackSent = match;
    this.#ackDue = comparePositions(match, appended) < 0;
  }

  /**
   * Our acks may count toward commit: not in repair mode (unless the leader is the base an
   * operator chose for us), not while our votes are forgotten.
   */
  #counted(): boolean {
    if (this.#nonVoting || this.#amnesia || !this.#isVoter()) return false;
    return !this.#repair || this.#followsBase(this.#leaderId);
  }

  /**
   * Repair mode ends when our durable log, matched against this term's leader, reaches a commit
   * of that leader covering its own term, and our former end (replication.md 5.7 rule 2).
   */
  #checkRepairExit(): void {
    const target = this.#repairTarget;
    if (!this.#repair || !target) return;
    const ack = this.#ackPosition();
    if (!ack || comparePositions(ack, target) < 0) return;
    const former = this.#repair.formerEndOffset;
    if (former !== undefined && ack.offset < former) return;
    this.#events.push({ kind: "repairExited", target, term: this.#term });
    this.#repair = undefined;
    this.#hardStateDirty = true;
    if (this.#leaderId !== 0 && this.#role === "follower") this.#sendAck();
  }

  // ---------------------------------------------------------------------------------------
  // Leader: replication and commit.

  #handleAppendReply(message: AppendReplyMessage): void {
    if (this.#role !== "leader") return;
    const progress = this.#progress.get(message.from);
    if (!progress) return; // no longer a replica of ours (a learner dropped)
    progress.lastHeardTick = this.#tickCount;
    progress.counted = message.counted;
    if (message.ok) this.#onAck(message.from, progress, message);
    else if (message.hint) this.#onReject(message.from, progress, message.hint);
  }

  #onAck(peer: NodeId, progress: Progress, message: AppendReplyMessage): void {
    const { match, appended } = message;
    assert(match !== undefined && appended !== undefined, "ok reply without positions");
    // Retention may have dropped what a lagging follower acks; that is still our log's prefix.
    const belowBase = comparePositions(appended, this.#log.base) < 0;
    assert(belowBase || this.#holds(appended), `peer ${peer} acked a position we do not hold`);
    assert(comparePositions(match, appended) <= 0);
    if (!progress.appended || comparePositions(appended, progress.appended) > 0) {
      progress.appended = appended;
      progress.lastProgressTick = this.#tickCount;
    }
    if (!progress.match || comparePositions(match, progress.match) > 0) progress.match = match;
    if (progress.probing) {
      progress.probing = false;
      progress.reset = false;
      progress.next = progress.appended;
    } else if (comparePositions(progress.next, progress.appended) < 0) {
      progress.next = progress.appended;
    }
    this.#maybeCommit();
    this.#maybeSendTimeoutNow(peer);
    this.#replicate(peer, false);
  }

  /** The follower lacked our prev: probe from where our logs part, or reset it to our base. */
  #onReject(peer: NodeId, progress: Progress, hint: RejectHint): void {
    let next = commonPosition(this.#log, hint);
    if (!next && hint.partial && hint.epochs.length > 0) next = this.#probeBelow(hint.epochs[0]);
    if (!next || next.offset < this.#log.startOffset || !this.#holds(next)) {
      this.#startReset(progress);
      this.#replicate(peer, true);
      return;
    }
    progress.next = next;
    progress.reset = false;
    progress.probing = true;
    progress.probeSentTick = -Infinity;
    // What the follower reported before may be gone (a restart cut an unsynced tail).
    if (progress.match && comparePositions(progress.match, progress.next) > 0) {
      progress.match = progress.next;
    }
    if (progress.appended && comparePositions(progress.appended, progress.next) > 0) {
      progress.appended = progress.next;
    }
    this.#replicate(peer, true);
  }

  /** The follower shares nothing we still store: its next append resets it to our base. */
  #startReset(progress: Progress): void {
    progress.next = this.#log.base;
    progress.reset = true;
    progress.probing = true;
    progress.probeSentTick = -Infinity;
    progress.match = undefined;
    progress.appended = undefined;
  }

  /** The end of our last run older than `oldest`: where to probe when a hint was cut short. */
  #probeBelow(oldest: EpochStart): Position | undefined {
    const { epochs, endOffset } = this.#log;
    for (let index = epochs.length - 1; index >= 0; index--) {
      if (epochs[index].epoch < oldest.epoch) {
        return { offset: runEnd(epochs, index, endOffset), epoch: epochs[index].epoch };
      }
    }
    return undefined;
  }

  #heartbeat(peer: NodeId): void {
    const progress = this.#progress.get(peer)!;
    const appended = progress.appended;
    const stalled = this.#tickCount - progress.lastProgressTick >= 2 * this.#timing.heartbeatTicks;
    if (!progress.probing && appended && comparePositions(progress.next, appended) > 0 && stalled) {
      // Nothing we sent beyond `appended` arrived for two heartbeats: send it again.
      progress.next = appended;
    }
    this.#replicate(peer, true);
  }

  /**
   * Sends what the follower lacks: while probing one append per heartbeat, otherwise as many as
   * the in-flight window allows. `force` sends at least a heartbeat.
   */
  #replicate(peer: NodeId, force: boolean): void {
    const progress = this.#progress.get(peer)!;
    if (comparePositions(progress.next, this.#log.base) < 0) {
      // Retention dropped what this follower needs next (or the base a reset was aiming at):
      // it must start over at our current base.
      this.#startReset(progress);
    }
    if (progress.probing) {
      const recent = this.#tickCount - progress.probeSentTick < this.#timing.heartbeatTicks;
      if (!force && recent) return;
      progress.probeSentTick = this.#tickCount;
      this.#sendAppend(peer, progress.next, progress.reset);
      return;
    }
    const acked = progress.match ?? progress.appended!;
    const last = this.#lastPosition();
    let sent = 0;
    while (
      sent < APPENDS_PER_CALL_MAX && comparePositions(progress.next, last) < 0 &&
      progress.next.offset - acked.offset < this.#inflightBytesMax
    ) {
      progress.next = this.#sendAppend(peer, progress.next, false);
      sent++;
    }
    if (sent === 0 && force) this.#sendAppend(peer, progress.appended!, false, false);
  }

  /** Sends one append with the items after `prev` (none for a heartbeat); returns its end. */
  #sendAppend(
    peer: NodeId,
    prev: Position,
    reset: boolean,
    withItems = true,
    quiet = false,
  ): Position {
    const { entries, atomicEntries, markers, end } = withItems
      ? this.#log.itemsAfter(prev, this.#appendBytesMax)
      : { entries: [], atomicEntries: [], markers: [], end: prev };
    this.#send({
      kind: "append",
      to: peer,
      prev,
      entries,
      ...(atomicEntries.length > 0 ? { atomicEntries } : {}),
      markers,
      commit: this.#commit,
      leaderStartOffset: this.#log.startOffset,
      reset,
      // A follower reset to our base must know the voters in force there.
      ...(reset ? { baseVoters: this.#votersAt(prev) } : {}),
      ...(quiet ? { quiet: true } : {}),
    });
    return end;
  }

  /**
   * Commit what a quorum holds durably, counting ourselves only once our own write is durable,
   * and only once that quorum position lies in our own term (Raft's figure 8).
   */
  #maybeCommit(): void {
    if (this.#role !== "leader") return;
    const own = this.#canary === "ackBeforeLeaderPersist" ? this.#log.last : this.#log.durable;
    const positions = this.#voters.includes(this.id) ? [own] : [];
    for (const voter of this.#voters) {
      const progress = this.#progress.get(voter);
      if (progress?.counted && progress.match) positions.push(progress.match);
    }
    const quorum = quorumValue(positions, this.#voters.length, comparePositions);
    if (!quorum || comparePositions(quorum, this.#commit) <= 0) return;
    if (quorum.epoch !== this.#term && this.#canary !== "commitOldTerms") return;
    this.#setCommit(quorum);
    let count = 0;
    while (count < this.#proposals.length && this.#proposals[count].endOffset <= quorum.offset) {
      this.#outcomes.push({ ...this.#proposals[count], kind: "ok", term: this.#term });
      count++;
    }
    this.#proposals.splice(0, count);
  }

  #maybeSendTimeoutNow(peer: NodeId): void {
    const transfer = this.#transfer;
    if (!transfer || transfer.target !== peer || transfer.sent) return;
    const progress = this.#progress.get(peer)!;
    if (!progress.counted || !progress.match) return;
    if (!samePosition(progress.match, this.#lastPosition())) return;
    transfer.sent = true;
    this.#send({
      kind: "timeoutNow",
      to: peer,
      ...(transfer.voters ? { voters: transfer.voters } : {}),
    });
    this.#events.push({ kind: "transfer", target: peer, step: "timeoutNowSent" });
  }

  // ---------------------------------------------------------------------------------------
  // The log.

  #holds(position: Position): boolean {
    return this.#log.holds(position);
  }

  #lastPosition(): Position {
    return this.#log.last;
  }

  #appendItem(item: LogItem): void {
    assert(item.kind === "entry" || item.epoch <= this.#term, "marker from a future term");
    this.#log.append(item);
    if (item.kind === "marker" && item.voters) this.#refreshMembers();
  }

  /** A follower we know nothing about yet: probe from `next`. */
  #newProgress(next: Position): Progress {
    return {
      next,
      probing: true,
      probeSentTick: -Infinity,
      reset: false,
      counted: true,
      lastHeardTick: this.#tickCount,
      lastProgressTick: this.#tickCount,
    };
  }

  /** The voters in force at `position` of our log. */
  #votersAt(position: Position): readonly NodeId[] {
    return votersOf(epochsThrough(this.#log.epochs, position)) ?? this.#seedVoters;
  }

  /**
   * Recomputes the voters from the log, and who a leader replicates to: after every change of
   * the epoch list (a marker, a truncation, a reset, a start) or of the learners.
   */
  #refreshMembers(updateProgress = true): void {
    const voters = votersOf(this.#log.epochs) ?? this.#seedVoters;
    this.#voters = voters;
    const departing = this.#role === "leader" ? this.#departing : [];
    const replicas = [...new Set([...voters, ...this.#learners, ...departing])]
      .filter((id) => id !== this.id)
      .sort((a, b) => a - b);
    this.#replicas = replicas;
    if (this.#role !== "leader" || !updateProgress) return;
    // A leader's configuration is fixed for its term; learners come and go.
    for (const peer of [...this.#progress.keys()]) {
      if (!replicas.includes(peer)) this.#progress.delete(peer);
    }
    for (const peer of replicas) {
      if (this.#progress.has(peer)) continue;
      this.#progress.set(peer, this.#newProgress(this.#lastPosition()));
      this.#replicate(peer, true);
    }
  }

  /** Removes everything after `position`; never a committed or leader-confirmed item. */
  #truncate(position: Position): void {
    assert(this.#role !== "leader", "a leader never truncates its own log");
    if (this.#canary !== "truncateBelowCommit") {
      assert(comparePositions(position, this.#commit) >= 0, "truncate below commit");
      const matched = this.#matched;
      assert(!matched || comparePositions(matched, position) <= 0, "truncate leader's items");
    }
    this.#log.truncate(position);
    this.#refreshMembers();
    this.#events.push({ kind: "truncated", to: position });
  }

  /** Drops the whole log and starts at the leader's base (we end below its log start). */
  #resetLog(base: Position, voters: readonly NodeId[] | undefined): void {
    if (this.#canary !== "truncateBelowCommit") {
      const detail = `commit ${show(this.#commit)}, base ${show(base)}, end ${
        show(this.#lastPosition())
      }`;
      assert(comparePositions(this.#commit, base) <= 0, `reset below commit: ${detail}`);
    }
    this.#log.reset(base, voters);
    this.#refreshMembers();
    this.#matched = undefined;
    this.#events.push({ kind: "reset", to: base });
    if (comparePositions(base, this.#commit) > 0) this.#setCommit(base);
  }

  #setCommit(position: Position): void {
    assert(comparePositions(position, this.#commit) > 0, "commit moves backwards");
    assert(this.#holds(position), "commit beyond the log");
    const before = this.#commit;
    this.#commit = position;
    this.#commitChanged = true;
    this.#events.push({ kind: "committed", position, leader: this.#role === "leader" });
    this.#reportConfigurations(before, position);
    // Nodes our own marker dropped get it while it is on its way, and then a few heartbeats
    // telling them it is committed (so they know they may go).
    if (this.#departing.length > 0 && position.epoch === this.#term) {
      this.#departingUntilTick ??= this.#tickCount + this.#timing.electionTicksMin;
    }
  }

  /** Events for the configurations whose markers the commit passed, in (from, to]. */
  #reportConfigurations(from: Position, to: Position): void {
    const epochs = this.#log.epochs;
    let previous = this.#votersAt(from);
    for (const pair of epochs) {
      if (!pair.voters) continue;
      const at = { offset: pair.startOffset, epoch: pair.epoch };
      if (comparePositions(at, from) <= 0) continue;
      if (comparePositions(at, to) > 0) break;
      const removed = previous.includes(this.id) && !pair.voters.includes(this.id);
      this.#events.push({
        kind: "configurationCommitted",
        epoch: pair.epoch,
        voters: pair.voters,
        removed,
      });
      previous = pair.voters;
    }
  }

  #send(message: Outgoing): void {
    // The spread keeps the message's own fields; the cast restores the union lost by Omit.
    this.#messages.push({ ...message, from: this.id, term: message.term ?? this.#term } as Message);
  }
}

/** The items of an append in log order: markers before the entries that start at them. */
export function appendItems(message: AppendMessage): LogItem[] {
  const items: LogItem[] = [];
  let offset = message.prev.offset;
  let epoch = message.prev.epoch;
  let marker = 0;
  const takeMarkers = () => {
    while (
      marker < message.markers.length && message.markers[marker].startOffset === offset
    ) {
      const { voters } = message.markers[marker];
      epoch = message.markers[marker].epoch;
      items.push({ kind: "marker", offset, epoch, ...(voters ? { voters } : {}) });
      marker++;
    }
  };
  const atomicIndexes = message.atomicEntries ?? []; // ascending
  let nextAtomic = 0;
  message.entries.forEach((bytes, index) => {
    takeMarkers();
    const atomic = atomicIndexes[nextAtomic] === index;
    if (atomic) nextAtomic++;
    items.push({ kind: "entry", offset, epoch, bytes, ...(atomic ? { atomic } : {}) });
    offset += bytes.length;
  });
  takeMarkers();
  assert(marker === message.markers.length, "append markers outside its entries");
  return items;
}

function show(position: Position): string {
  return `${position.offset}@${position.epoch}`;
}

function checkTiming(timing: RaftTiming): void {
  const { heartbeatTicks, electionTicksMin, electionTicksMax, checkQuorumTicks } = timing;
  assert(Number.isInteger(heartbeatTicks) && heartbeatTicks >= 1, "heartbeatTicks");
  assert(Number.isInteger(electionTicksMin) && electionTicksMin > heartbeatTicks, "election min");
  assert(Number.isInteger(electionTicksMax) && electionTicksMax >= electionTicksMin, "max");
  assert(Number.isInteger(checkQuorumTicks) && checkQuorumTicks > heartbeatTicks, "checkQuorum");
  assert(checkQuorumTicks < electionTicksMin, "check-quorum must be below the election timeout");
}

/** Records the highest real term a peer showed us while our vote history is unknown. */
function observeTerm(amnesia: Amnesia, message: Message): void {
  // Pre-vote requests carry the sender's term plus one, which nobody has voted in yet.
  const term = message.kind === "vote" && message.pre ? message.term - 1 : message.term;
  const echo = message.kind === "voteReply" && message.pre && message.granted;
  if (!echo) amnesia.floor = Math.max(amnesia.floor, term);
  amnesia.heard.add(message.from);
}

function mergeRepair(known: RepairState | undefined, found: RepairState): RepairState {
  const ends = [known?.formerEndOffset, found.formerEndOffset].filter((end) => end !== undefined);
  const base = found.base ?? known?.base;
  return {
    ...(ends.length > 0 ? { formerEndOffset: Math.max(...ends) } : {}),
    ...(base !== undefined ? { base } : {}),
  };
}

/** Checks a voter list and returns it sorted. */
function checkVoters(input: readonly NodeId[]): NodeId[] {
  const voters = [...new Set(input)].sort((a, b) => a - b);
  assert(voters.length === input.length, "voters repeat");
  assert(voters.length >= 1 && voters.length <= VOTERS_MAX, `${voters.length} voters`);
  assert(voters.every((voter) => Number.isInteger(voter) && voter >= 1), "voter ids");
  return voters;
}

function checkLearners(input: readonly NodeId[]): NodeId[] {
  const learners = [...new Set(input)].sort((a, b) => a - b);
  assert(learners.every((id) => Number.isInteger(id) && id >= 1), "learner ids");
  return learners;
}

function sameMembers(a: readonly NodeId[], b: readonly NodeId[]): boolean {
  return a.length === b.length && a.every((id) => b.includes(id));
}

/** Whether two voter sets differ by exactly one voter added or removed. */
function oneChangeApart(a: readonly NodeId[], b: readonly NodeId[]): boolean {
  const added = a.filter((id) => !b.includes(id)).length;
  const removed = b.filter((id) => !a.includes(id)).length;
  return added + removed === 1;
}

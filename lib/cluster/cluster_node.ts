/**
 * @module ClusterNode: one metaq node of a Raft-lite cluster. Owns the peer transport, the
 * replicas of the partitions this node holds (placement.ts) with their ReplicatedLogs (it is
 * the cluster's `Logs`), the clock that ticks them, and what nodes tell each other about
 * themselves (client address, identity, groups they lead). It knows no topics' meaning and no
 * requests: forwarding client requests is the edge's job (lib/server), which hands this node
 * its frames through `PeerLink` and hears them back through `onForwarded`.
 */
import { type Clock } from "../clock.ts";
import { describeError } from "../errors.ts";
import { PEER_QUESTIONS_PENDING_MAX } from "../limits.ts";
import type { Logger } from "../log.ts";
import type { Random } from "../prng.ts";
import { type CancelTimer, sleep, type Timers } from "../timers.ts";
import type { ClusterSettings } from "./cluster_config.ts";
import {
  decodeEnvelope,
  encodeEnvelopeParts,
  type Envelope,
  type NodeInfo,
  type Question,
} from "./envelope.ts";
import type { Config } from "../config/config.ts";
import { BrokerError } from "../errors.ts";
import type { Log, LogEntry, Logs } from "../store/log.ts";
import type { MessageStore } from "../store/message_store.ts";
import { ReplicatedLog } from "./replicated_log.ts";
import type { Membership } from "./membership.ts";
import type { Message, NodeId } from "./messages.ts";
import type { PeerNetwork, PeerNetworkFactory } from "./peer_network.ts";
import { PEER_FRAME_HEADER_BYTES } from "./peer_transport.ts";
import { isInternalTopic, META_TOPIC, replicasOf } from "./placement.ts";
import { CLUSTER_GROUP, CLUSTER_TOPIC, ClusterMetadata } from "./metadata.ts";
import { reassignmentsLed } from "./status.ts";
import type { MessageIdGenerator } from "../protocol/message_id.ts";
import type { PeerAddress } from "./cluster_config.ts";
import type { RaftTiming } from "./raft.ts";
import { type DriverCanary, Replica } from "./replica.ts";
import { crossCheck, type RangeDigest } from "./cross_check.ts";
import { answerRecovery } from "./force_recover.ts";
import { stuckCopies, stuckReason } from "./recovery_plan.ts";
import { digestOf, localCopyOf } from "./log_digest.ts";
import type { PartitionLog } from "../store/partition_log.ts";
import { splitPartitionKey } from "../store/message_store.ts";
import type { Storage } from "../store/storage.ts";
import type { RepairState } from "./messages.ts";
import {
  type ByteRange,
  EPOCHS_FILE,
  readEpochs,
  readHardState,
  writeHardState,
} from "./state_files.ts";
import { settleAtomicEntries } from "./atomic_entries.ts";
import { votersOf } from "./raft_log.ts";
import { clearCleanStop, markCleanStop, type StartupState } from "./startup_state.ts";
import type { Tracer } from "./trace.ts";
import { silentRedialMs, StalledLinks } from "./stalled_links.ts";

/** How often the node tells its peers about itself even when nothing changed. */
const INFO_INTERVAL_MS = 1000;
/** Every this often a node's self-description carries every figure, changed or not. */
const FIGURES_REFRESH_MS = 30_000;
/** How long a question to another node waits for its answer. */
const QUESTION_TIMEOUT_MS = 2000;
/** How long a replica a storage error stopped waits before it starts again from its files. */
const STOPPED_RETRY_MS = 2000;

/** Forwarded requests and replies arriving from other nodes, for the edge's forwarder. */
export type ForwardedFrame =
  | {
    readonly kind: "request";
    readonly requestId: number;
    readonly connectionId: number;
    readonly bytes: Uint8Array;
  }
  | { readonly kind: "reply"; readonly requestId: number; readonly bytes: Uint8Array }
  | { readonly kind: "closed"; readonly connectionId: number };

export interface ClusterNodeOptions {
  readonly settings: ClusterSettings;
  readonly config: Config;
  /** The segment logs under every replica (and the data directory's files). */
  readonly store: MessageStore;
  readonly membership: Membership;
  readonly tracer: Tracer;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Every timer of the node, its replicas and their logs (virtual in the simulator). */
  readonly timers: Timers;
  /** Election jitter of every replica on this node. */
  readonly random: Random;
  /** Names this run of the node to its peers: a new one tells them it restarted. */
  readonly incarnation: string;
  /** The links to the other nodes (PeerTransport over TCP; an in-memory network in the simulator). */
  readonly network: PeerNetworkFactory;
  /** Message ids for the records this node writes to the cluster's metadata group. */
  readonly ids: MessageIdGenerator;
  /** How the previous run ended (clean stop marker, boot id). */
  readonly startup: StartupState;
  /** Whether a topic exists for this broker (a Raft group of another topic is never opened). */
  readonly accepts: (topic: string) => boolean;
  /** `host:port` of this node's client port, once it listens. */
  readonly clientAddress: () => string;
  /** This node's HTTP port, when it serves HTTP. */
  readonly httpPort: () => number | undefined;
  /** Frames of forwarded client requests, for the edge (lib/server/forwarder.ts). */
  readonly onForwarded: (from: NodeId, frame: ForwardedFrame) => void;
  /** A node restarted or stayed unreachable: the requests it forwarded have no client any more. */
  readonly onPeerGone: (node: NodeId) => void;
  /** Figures of a group this node leads, shared with every node (cluster-wide views). */
  readonly figuresOf?: (group: string) => readonly number[] | undefined;
  /** TEST ONLY: a deliberate bug in every replica's driver (the simulator's canaries). */
  readonly canary?: DriverCanary;
}

/** What a scrub found, per group: damage (and the repair started), ranges compared, or why not. */
export interface ScrubReport {
  readonly damaged: { group: string; offset: number; reason: string }[];
  readonly checked: { group: string; from: number; to: number }[];
  readonly skipped: { group: string; reason: string }[];
}

/** Who leads a group, as far as this node knows. */
export interface LeaderInfo {
  readonly nodeId: NodeId;
  readonly clientAddress?: string;
}

export class ClusterNode implements Logs {
  readonly settings: ClusterSettings;
  readonly membership: Membership;
  readonly logger: Logger;
  readonly timing: RaftTiming;
  readonly tickMs: number;
  readonly #options: ClusterNodeOptions;
  readonly #replicas = new Map<string, Replica>();
  readonly #logs = new Map<string, ReplicatedLog>();
  /** Group names of held partitions, by topic and partition (see #groupName). */
  readonly #groupNames = new Map<string, string[]>();
  /** `list()`'s answer, until #logs changes. */
  #listed: readonly LogEntry[] | undefined;
  readonly #opening = new Map<string, Promise<Replica | undefined>>();
  /** When each replica stopped by a storage error was first seen stopped (monotonic ms). */
  readonly #stoppedSince = new Map<string, number>();
  readonly #openListeners = new Set<(entry: LogEntry) => void>();
  readonly #questions = new Map<number, (answer: unknown) => void>();
  #nextQuestionId = 1;
  /** When each peer's link went down (for `onPeerGone` after a grace period). */
  readonly #downSince = new Map<NodeId, number>();
  readonly #peers = new Map<NodeId, NodeInfo>();
  readonly #timers: Timers;
  #transport: PeerNetwork | undefined;
  #stopTicker: CancelTimer | undefined;
  /** The tick's period now: tickMs while any group is awake, heartbeatMs while all sleep. */
  #tickEveryMs = 0;
  #stopInfoTimer: CancelTimer | undefined;
  #infoDue = false;
  #closed = false;
  #roleListeners = new Set<() => void>();
  /** The cluster's state from its metadata group, once this node holds a copy of it. */
  #metadata: ClusterMetadata | undefined;
  /** Peer addresses nodes told us about themselves (a joining node learns its peers so). */
  readonly #toldAddresses = new Map<NodeId, PeerAddress>();
  #reaping = false;
  /** The metadata version and copy count of the last reaping pass that found nothing to do. */
  #reapedVersion = -1;
  #reapedCopies = -1;
  /** When each peer was last heard (any frame), and when this node last sent its beats. */
  readonly #lastHeard = new Map<NodeId, number>();
  /** Figures last sent per led group (counters without the time), for changed-only infos. */
  #figuresSent = new Map<string, { values: readonly number[]; repeat: boolean }>();
  #figuresSentAt = 0;
  #figuresRefreshDue = true;
  /** What each peer last said of itself that matters to a sleeping leader (see #onInfo). */
  readonly #peerSignatures = new Map<NodeId, string>();
  /** Outgoing links that look up but carry nothing, to be dialed again (stalled_links.ts). */
  readonly #stalledLinks: StalledLinks;
  /** When the tick last ran, and since when it has run without a stall (see #unheard). */
  #lastTickAt = 0;
  #runningSince = 0;
  #lastBeatAt = 0;
  readonly #groupListeners = new Map<string, (() => void)[]>();
  peerPort = 0;

  constructor(options: ClusterNodeOptions) {
    this.#options = options;
    this.settings = options.settings;
    this.membership = options.membership;
    this.logger = options.logger;
    this.#timers = options.timers;
    this.#stalledLinks = new StalledLinks({
      silenceMs: options.settings.electionMinMs,
      silentRedialMs: silentRedialMs(options.settings.electionMaxMs),
    });
    this.tickMs = Math.max(5, Math.round(options.settings.heartbeatMs / 3));
    this.timing = {
      heartbeatTicks: Math.max(1, Math.round(options.settings.heartbeatMs / this.tickMs)),
      electionTicksMin: Math.round(options.settings.electionMinMs / this.tickMs),
      electionTicksMax: Math.round(options.settings.electionMaxMs / this.tickMs),
      checkQuorumTicks: Math.round(options.settings.checkQuorumMs / this.tickMs),
    };
  }

  get nodeId(): NodeId {
    return this.settings.nodeId;
  }

  /**
   * The cluster's voting members: the metadata group's active members once this node has
   * applied them, the `--peers` seed before (a joining node knows only itself).
   */
  get voters(): readonly NodeId[] {
    const state = this.#metadata?.state;
    if (state?.initialized) return state.activeIds();
    return this.settings.peers.map((peer) => peer.id);
  }

  /** The cluster's state as this node has applied it (undefined before it holds a copy). */
  get metadata(): ClusterMetadata | undefined {
    return this.#metadata;
  }

  /** Whether this node joined with `--join` and has not yet applied the cluster's metadata. */
  get joining(): boolean {
    return this.settings.join !== undefined && !this.#metadata?.state.initialized;
  }

  /**
   * Every node this node links to: the members (leaving ones too), or the seed and the nodes
   * heard of before the metadata is applied. A member's address is the one `--peers` gives for
   * it (the operator's word for this run: it may route through a proxy), else where it last
   * said it listens, else what the metadata recorded (a node may have moved since).
   */
  #peerAddresses(): PeerAddress[] {
    const addresses = new Map<NodeId, PeerAddress>();
    const state = this.#metadata?.state;
    if (state?.initialized) {
      for (const member of state.members()) {
        const address = this.settings.peers.find((peer) => peer.id === member.id) ??
          this.#toldAddresses.get(member.id) ?? parseAddress(member.id, member.peer);
        if (address) addresses.set(member.id, address);
      }
    } else {
      for (const peer of this.settings.peers) addresses.set(peer.id, peer);
      // A joining node dials those that reached it, so it can answer them.
      for (const [id, address] of this.#toldAddresses) {
        if (!addresses.has(id)) addresses.set(id, address);
      }
    }
    addresses.delete(this.nodeId);
    return [...addresses.values()].sort((a, b) => a.id - b.id);
  }

  /** Starts the peer port and the clock, and opens the replicas found on disk. */
  async start(): Promise<void> {
    this.#transport = this.#options.network({
      onFrame: (from, payload) => this.#receive(from, payload),
      onConnected: (peer) => {
        // A peer that (re)connects knows nothing of our figures: the next info has them all.
        this.#infoDue = true;
        this.#figuresRefreshDue = true;
        this.#stalledLinks.connected(peer, this.#options.clock.monotonicMs());
      },
      onFrameProgress: (from) => {
        // Heard: a large frame on a slow link is on its way (not a stalled link, stalled_links.ts).
        this.#lastHeard.set(from, this.#options.clock.monotonicMs());
        for (const replica of this.#replicas.values()) {
          if (replica.leaderId === from) replica.leaderAlive(from);
        }
      },
    });
    this.peerPort = await this.#transport.listen();
    this.#tickAt(this.tickMs);
    this.#stopInfoTimer = this.#timers.every(INFO_INTERVAL_MS, () => this.#sendInfo());
    if (this.membership.mayParticipate(this.voters)) await this.#openHostedReplicas();
    // Acted on: a crash from now on must not look like a clean stop.
    await clearCleanStop(this.#options.store.options.storage, this.#options.config.system.dataPath);
  }

  // The Logs port: the partitions this node holds, each a ReplicatedLog.

  get(topic: string, partition: number): Log | undefined {
    return this.#logs.get(this.#groupName(topic, partition));
  }

  /**
   * `${topic}-${partition}`, remembered for the partitions this node holds: a put looks its
   * group up three times (the checks, the log, the leader), and a string made anew is hashed
   * anew each time. Only partitions this node has held are remembered (a dropped one's name
   * stays), so requests for made-up names cannot grow it.
   */
  #groupName(topic: string, partition: number): string {
    const known = this.#groupNames.get(topic)?.[partition];
    if (known !== undefined) return known;
    const name = `${topic}-${partition}`;
    if (this.#replicas.has(name)) {
      let names = this.#groupNames.get(topic);
      if (!names) this.#groupNames.set(topic, names = []);
      names[partition] = name;
    }
    return name;
  }

  async open(topic: string, partition: number): Promise<Log> {
    const name = `${topic}-${partition}`;
    if (!this.hosts(topic, partition)) {
      throw new BrokerError("unavailable", `node ${this.nodeId} does not hold ${name}`);
    }
    await this.ensureReplica(topic, partition);
    const log = this.#logs.get(name);
    if (!log) throw new BrokerError("unavailable", `node ${this.nodeId} cannot open ${name} now`);
    return log;
  }

  failure(topic: string, partition: number): Error | undefined {
    return this.#options.store.failure(topic, partition);
  }

  failures(): ReadonlyMap<string, Error> {
    return this.#options.store.failures();
  }

  list(): readonly LogEntry[] {
    // Kept until a log opens or goes: periodic callers ask every second, with thousands of logs.
    this.#listed ??= [...this.#logs.values()]
      .map((log) => ({ ...splitGroup(log.name), log }))
      .sort((a, b) => a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition);
    return this.#listed;
  }

  onOpen(listener: (entry: LogEntry) => void): () => void {
    this.#openListeners.add(listener);
    return () => this.#openListeners.delete(listener);
  }

  // Links to the other nodes, for the edge's forwarder.

  /** Sends a client request to node `to` (`connectionId` is the client's connection here). */
  sendRequest(to: NodeId, requestId: number, connectionId: number, bytes: Uint8Array): boolean {
    return this.send(to, { kind: "forward", requestId, connectionId, request: bytes });
  }

  sendReply(to: NodeId, requestId: number, bytes: Uint8Array): void {
    this.send(to, { kind: "reply", requestId, reply: bytes });
  }

  /** Tells node `to` that a client connection whose requests went there has closed. */
  sendClosed(to: NodeId, connectionId: number): void {
    this.send(to, { kind: "closed", connectionId });
  }

  /** Asks node `to` a question; resolves with its answer, or undefined (no answer in time). */
  ask(to: NodeId, question: Question): Promise<unknown> {
    if (!this.isConnected(to) || this.#questions.size >= PEER_QUESTIONS_PENDING_MAX) {
      return Promise.resolve(undefined);
    }
    const questionId = this.#nextQuestionId;
    this.#nextQuestionId = questionId >= 0xffff_fffe ? 1 : questionId + 1;
    const { promise, resolve } = Promise.withResolvers<unknown>();
    const cancel = this.#timers.after(QUESTION_TIMEOUT_MS, () => {
      this.#questions.delete(questionId);
      resolve(undefined);
    });
    this.#questions.set(questionId, (answer) => {
      cancel();
      this.#questions.delete(questionId);
      resolve(answer);
    });
    this.send(to, { kind: "ask", questionId, question });
    return promise;
  }

  /** Asks node `to` a question, answering it here when `to` is this node. */
  question(to: NodeId, question: Question): Promise<unknown> {
    return to === this.nodeId ? Promise.resolve(this.#answer(question)) : this.ask(to, question);
  }

  /**
   * Why `group` cannot elect a leader without an operator (too many of its copies wait in
   * repair mode; see recovery_plan.ts), or undefined. Status, puts and reads name the command
   * that brings it back.
   */
  stuckReason(group: string): string | undefined {
    const { topic, partition } = splitGroup(group);
    const repairing = stuckCopies(
      this.replicasOf(topic, partition),
      this.leaderOf(group) !== undefined,
      (id) => {
        if (id === this.nodeId) return waitsInRepair(this.#replicas.get(group));
        return this.isConnected(id) && (this.#peers.get(id)?.repairing?.includes(group) ?? false);
      },
    );
    return repairing ? stuckReason(group, repairing) : undefined;
  }

  /** Why `topic`-`partition` cannot elect a leader by itself, if so (Placement, for the edge). */
  whyLeaderless(topic: string, partition: number): string | undefined {
    return this.stuckReason(`${topic}-${partition}`);
  }

  /** Whether this node holds `topic`-`partition`. */
  hosts(topic: string, partition: number): boolean {
    return this.replicasOf(topic, partition).includes(this.nodeId);
  }

  replicasOf(topic: string, partition: number): NodeId[] {
    const state = this.#metadata?.state;
    if (state?.initialized) return state.replicasOf(topic, partition);
    // A joining node holds nothing until the cluster's metadata says so.
    if (this.settings.join !== undefined) return [];
    return replicasOf(topic, partition, this.voters, this.settings.replicas);
  }

  replica(topic: string, partition: number): Replica | undefined {
    return this.#replicas.get(`${topic}-${partition}`);
  }

  replicas(): Replica[] {
    return [...this.#replicas.values()];
  }

  /** The replica of a hosted partition, opening it (and its log) on first use. */
  ensureReplica(topic: string, partition: number): Promise<Replica | undefined> {
    const name = `${topic}-${partition}`;
    const existing = this.#replicas.get(name);
    if (existing) return Promise.resolve(existing);
    if (this.#closed || !this.hosts(topic, partition) || !this.membership.identity.admitted) {
      return Promise.resolve(undefined);
    }
    let opening = this.#opening.get(name);
    if (!opening) {
      opening = this.#openReplica(topic, partition).finally(() => this.#opening.delete(name));
      this.#opening.set(name, opening);
    }
    return opening;
  }

  /**
   * Who leads `group`: this node's replica knows best (it hears the current term's leader);
   * otherwise what connected peers last said they lead.
   */
  leaderOf(group: string): LeaderInfo | undefined {
    const local = this.#replicas.get(group);
    if (local?.isLeader) return { nodeId: this.nodeId, clientAddress: this.clientAddress };
    if (local) {
      const known = local.leaderId;
      return known ? { nodeId: known, clientAddress: this.clientAddressOf(known) } : undefined;
    }
    for (const info of this.#peers.values()) {
      if (info.leads?.includes(group) && this.isConnected(info.nodeId)) {
        return { nodeId: info.nodeId, clientAddress: info.clientAddress };
      }
    }
    return undefined;
  }

  /** Client address of node `id`, when known. */
  clientAddressOf(id: NodeId): string | undefined {
    return id === this.nodeId ? this.clientAddress : this.#peers.get(id)?.clientAddress;
  }

  get clientAddress(): string {
    return this.#options.clientAddress();
  }

  /** The node that leads `topic`-`partition` as far as this node knows (Placement, for the edge). */
  leaderNodeOf(topic: string, partition: number): NodeId | undefined {
    const name = this.#groupName(topic, partition);
    // Asked for every request a client sends: no LeaderInfo (and client address) is made.
    if (this.#replicas.get(name)?.isLeader) return this.nodeId;
    return this.leaderOf(name)?.nodeId;
  }

  /** Nodes holding `topic`-`partition` (Placement). */
  holdersOf(topic: string, partition: number): NodeId[] {
    return this.replicasOf(topic, partition);
  }

  /**
   * Opens the partition's replica if this node holds it, and lets a brand-new group elect at
   * once instead of after a full election timeout (a client is waiting). Placement, for the edge.
   */
  prepare(topic: string, partition: number): Promise<void> | undefined {
    const name = `${topic}-${partition}`;
    if (!this.hosts(topic, partition)) {
      // Its holders may never have heard of it (a first put arriving elsewhere): wake them.
      if (this.leaderOf(name)) return undefined;
      for (const holder of this.replicasOf(topic, partition)) {
        void this.ask(holder, { kind: "open", group: name });
      }
      return undefined;
    }
    if (this.#replicas.has(name) && this.leaderOf(name)) return undefined;
    return this.ensureReplica(topic, partition).then((replica) => {
      if (replica && !this.leaderOf(replica.name)) replica.campaignIfNew();
    });
  }

  /** Nodes heard from, with what they said last. */
  peerInfos(): NodeInfo[] {
    return [...this.#peers.values()];
  }

  isConnected(id: NodeId): boolean {
    return id === this.nodeId || (this.#transport?.isConnected(id) ?? false);
  }

  /** Calls `listener` after every commit advance and role change of `group` on this node. */
  onGroupEvent(group: string, listener: () => void): void {
    const listeners = this.#groupListeners.get(group) ?? [];
    listeners.push(listener);
    this.#groupListeners.set(group, listeners);
  }

  /** Resolves when a role changes anywhere on this node, or after `timeoutMs`. */
  roleChanged(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        cancel();
        this.#roleListeners.delete(done);
        resolve();
      };
      const cancel = this.#timers.after(timeoutMs, done);
      this.#roleListeners.add(done);
    });
  }

  /**
   * Sends `envelope` to node `to`; false when it was dropped (see PeerTransport.send). Raft
   * messages and self-descriptions are sent again anyway; everything else must be delivered.
   */
  send(to: NodeId, envelope: Envelope): boolean {
    const mustDeliver = envelope.kind !== "raft" && envelope.kind !== "info" &&
      envelope.kind !== "beat";
    const transport = this.#transport;
    // Asked first: encoding a large append only to drop it would copy it for nothing.
    if (!transport?.canSend(to, mustDeliver)) return false;
    const framed = encodeEnvelopeParts(envelope, PEER_FRAME_HEADER_BYTES);
    return transport.sendFramed(to, framed.length === 1 ? framed[0] : framed, mustDeliver);
  }

  /** Hands leadership away (graceful stop), waits briefly, then stops everything. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#handOverLeadership();
    this.#closed = true;
    this.#stopTicker?.();
    this.#stopInfoTimer?.();
    await Promise.allSettled([...this.#opening.values()]);
    this.#metadata?.stop();
    for (const replica of this.#replicas.values()) await replica.close();
    await this.#transport?.close();
    for (const answer of [...this.#questions.values()]) answer(undefined);
    await this.membership.flush();
    const store = this.#options.store;
    await Promise.all(store.logs().map((log) => log.flush()));
    await markCleanStop(store.options.storage, this.#options.config.system.dataPath);
  }

  #tick(): void {
    const now = this.#options.clock.monotonicMs();
    // A late tick means this process stood still (a pause, a long collection): what it did not
    // hear meanwhile may be waiting in its own sockets, so silence counts from now (#unheard).
    if (now - this.#lastTickAt > this.settings.electionMinMs / 2) this.#runningSince = now;
    this.#lastTickAt = now;
    this.#restartStopped(now);
    const peers = this.#peerAddresses();
    if (now - this.#lastBeatAt >= this.settings.heartbeatMs) {
      // One beat per peer per heartbeat interval, however many groups sleep.
      this.#lastBeatAt = now;
      for (const peer of peers) this.send(peer.id, { kind: "beat" });
    }
    // Peers silent for longer than an election timeout (usually none).
    const silent = new Set<NodeId>();
    const linked = new Set<NodeId>();
    for (const peer of peers) {
      linked.add(peer.id);
      if (this.#silent(peer.id, now)) silent.add(peer.id);
      if (
        this.#unheard(peer.id, now) &&
        this.#stalledLinks.peerSilent(peer.id, now, this.isConnected(peer.id))
      ) {
        this.#redial(peer.id, "nothing heard from the peer");
      }
    }
    for (const replica of this.#replicas.values()) {
      if (!replica.quiet) {
        replica.tick();
        continue;
      }
      // A sleeping copy counts no time: a follower wakes when its leader's node goes silent (or
      // is no member any more), a leader when it can no longer hear a majority of its voters.
      const leader = replica.leaderId;
      if (leader === this.nodeId) {
        if (silent.size === 0) continue;
        const heard = replica.voters.filter((id) => !silent.has(id)).length;
        if (heard * 2 <= replica.voters.length) replica.quorumUnreachable();
      } else if (leader !== 0 && (silent.has(leader) || !linked.has(leader))) {
        replica.leaderUnreachable();
      }
    }
    if (this.#infoDue) this.#sendInfo();
    this.#watchPeers();
    // All groups asleep: nothing counts ticks, so wake up only as often as beats are due and
    // silences are checked. A group that wakes (its event) brings the fast tick back.
    if (this.#tickEveryMs === this.tickMs && this.#allQuiet()) {
      this.#tickAt(this.settings.heartbeatMs);
    }
    if (!this.membership.identity.admitted && this.membership.mayParticipate(this.voters)) {
      this.logger.log("info", "Node admitted to the cluster", {
        node: this.nodeId,
        replaced: this.membership.identity.replaced,
      });
      void this.#openHostedReplicas();
    }
  }

  #receive(from: NodeId, payload: Uint8Array): void {
    const envelope = decodeEnvelope(payload, { bodyVerified: true }); // PeerHandlers.onFrame
    if (typeof envelope === "string") {
      this.logger.log("warn", "Dropping malformed peer message", { peer: from, reason: envelope });
      return;
    }
    this.#lastHeard.set(from, this.#options.clock.monotonicMs());
    if (envelope.kind === "beat") return;
    if (envelope.kind === "info") return this.#onInfo(from, envelope.info);
    const info = this.#peers.get(from);
    // A node that came back with another identity is a stranger until an operator admits it.
    if (!info || !this.membership.accepts(from, info.uuid)) return;
    switch (envelope.kind) {
      case "raft":
        return this.#onRaft(envelope.group, envelope.message);
      case "forward":
        return this.#options.onForwarded(from, {
          kind: "request",
          requestId: envelope.requestId,
          connectionId: envelope.connectionId,
          bytes: envelope.request,
        });
      case "reply":
        return this.#options.onForwarded(from, {
          kind: "reply",
          requestId: envelope.requestId,
          bytes: envelope.reply,
        });
      case "closed":
        return this.#options.onForwarded(from, {
          kind: "closed",
          connectionId: envelope.connectionId,
        });
      case "ask": {
        const questionId = envelope.questionId;
        // Most answers are at hand; a recovery's restarts a replica first.
        void Promise.resolve(this.#answer(envelope.question)).catch(() => null).then((answer) =>
          this.send(from, { kind: "answer", questionId, answer })
        );
        return;
      }
      case "answer":
        return this.#questions.get(envelope.questionId)?.(envelope.answer);
    }
  }

  /**
   * Names of the partition groups (not the broker's own logs) any reachable member holds: open
   * here or on disk, and the same asked of every other member. For placement plans.
   */
  async groupsHeldAnywhere(): Promise<string[]> {
    const names = new Set(this.#heldHere());
    const others = this.voters.filter((id) => id !== this.nodeId);
    const answers = await Promise.all(others.map((id) => this.ask(id, { kind: "held" })));
    for (const answer of answers) {
      if (!Array.isArray(answer)) continue;
      for (const name of answer) if (typeof name === "string") names.add(name);
    }
    return [...names].sort();
  }

  /** Partition groups with a copy on this node (open, or on disk). */
  #heldHere(): string[] {
    const names = new Set(this.replicas().map((replica) => replica.name));
    for (const [topic, partitions] of this.#options.store.topics()) {
      for (const { partition } of partitions) names.add(`${topic}-${partition}`);
    }
    return [...names].filter((name) => !isInternalTopic(splitGroup(name).topic));
  }

  /** This node's answer to another's question; null when it cannot tell. */
  #answer(question: Question): unknown {
    if (question.kind === "survey" || question.kind === "recover") {
      return answerRecovery(this, question);
    }
    if (question.kind === "held") return this.#heldHere();
    if (question.kind === "open") {
      const { topic, partition } = splitGroup(question.group);
      if (!Number.isSafeInteger(partition) || !this.#options.accepts(topic)) return null;
      void this.prepare(topic, partition);
      return true;
    }
    const replica = this.#replicas.get(question.group);
    if (!replica) return null;
    if (question.kind === "bounds") return [replica.log.startOffset, replica.commitOffset];
    if (question.kind === "voters") {
      // The leader's configuration is committed once its commit covers its own term's marker.
      const status = replica.status();
      return replica.isLeader && status.commit.epoch === status.term ? replica.voters : null;
    }
    if (question.kind === "commit") {
      // Only a leader that committed in its own term knows how far the commit has gone.
      const status = replica.status();
      return replica.isLeader && status.commit.epoch === status.term ? replica.commitOffset : null;
    }
    const { from, to } = question;
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to)) return null;
    return digestOf(replica.log, replica.commitOffset, from, to);
  }

  /**
   * Start and committed end of `topic`-`partition`, asked of its leader (or, with no leader
   * known, of its first holder); undefined when nobody answers.
   */
  async askBounds(
    topic: string,
    partition: number,
  ): Promise<{ start: number; end: number } | undefined> {
    const group = `${topic}-${partition}`;
    const target = this.leaderOf(group)?.nodeId ?? this.replicasOf(topic, partition)[0];
    const answer = target === this.nodeId
      ? this.#answer({ kind: "bounds", group })
      : await this.ask(target, { kind: "bounds", group });
    if (!Array.isArray(answer) || answer.length !== 2) return undefined;
    const [start, end] = answer;
    return Number.isSafeInteger(start) && Number.isSafeInteger(end) ? { start, end } : undefined;
  }

  /** The commit offset of `group` as its leader knows it; undefined when no leader answers. */
  async #askLeaderCommit(group: string): Promise<number | undefined> {
    const leader = this.leaderOf(group)?.nodeId;
    if (leader === undefined) return undefined;
    if (leader === this.nodeId) return this.#replicas.get(group)?.commitOffset;
    const answer = await this.ask(leader, { kind: "commit", group });
    return typeof answer === "number" ? answer : undefined;
  }

  /** Tells the edge about nodes that restarted or stayed unreachable past the session timeout. */
  #watchPeers(): void {
    const now = this.#options.clock.monotonicMs();
    const graceMs = this.#options.config.system.groupSessionTimeoutMs;
    for (const peer of this.#peerAddresses()) {
      if (this.isConnected(peer.id)) {
        this.#downSince.delete(peer.id);
        continue;
      }
      const since = this.#downSince.get(peer.id);
      if (since === undefined) this.#downSince.set(peer.id, now);
      else if (since !== -1 && now - since >= graceMs) {
        this.#downSince.set(peer.id, -1); // told once per outage
        this.#options.onPeerGone(peer.id);
      }
    }
  }

  #onInfo(from: NodeId, received: NodeInfo): void {
    if (received.nodeId !== from) return;
    if (Array.isArray(received.unheard) && received.unheard.includes(this.nodeId)) {
      const now = this.#options.clock.monotonicMs();
      // Not while this process may itself have stood still: then it sent nothing, whatever the
      // link (a 64 MiB put's checks held a node's loop past an election timeout).
      if (
        this.#steadyFor(now, this.settings.electionMinMs) &&
        this.#stalledLinks.peerHearsNothing(from, now, this.isConnected(from))
      ) {
        this.#redial(from, "the peer hears nothing on it");
      }
    }
    const previous = this.#peers.get(from);
    const info = withFiguresOf(previous, received);
    this.#peers.set(from, info);
    const told = info.peer ? parseAddress(from, info.peer) : undefined;
    const known = this.#toldAddresses.get(from);
    if (told && (known?.host !== told.host || known?.port !== told.port)) {
      // Where a node says it listens now (a joining node learns its peers so, and a node that
      // restarted elsewhere is reached there, unless --peers names it).
      this.#toldAddresses.set(from, told);
      this.#transport?.setPeers(this.#peerAddresses());
    }
    if (previous?.incarnation && info.incarnation && previous.incarnation !== info.incarnation) {
      this.#options.onPeerGone(from);
    }
    // Sleeping groups (quiescence) hear nothing from a copy that restarted, lost its data or was
    // replaced: wake the ones this node leads so their heartbeats find out. Its admission counts
    // too: a replaced node drops what it is sent until it learns it was admitted, which may be
    // after this node accepted it and woke its groups once already (they slept on with a stale
    // view of its copies, and a copy it never had on disk was never opened there).
    const signature = [
      info.incarnation,
      info.uuid,
      this.membership.accepts(from, info.uuid),
      info.repairing?.join(","),
      info.admitted,
    ].join("|");
    if (this.#peerSignatures.get(from) !== signature) {
      this.#peerSignatures.set(from, signature);
      for (const replica of this.#replicas.values()) replica.peerChanged(from);
    }
    // A node back as a new process (or on an empty disk) leads nothing any more, though it
    // may never have looked silent: sleeping followers of its groups wake and elect (T14).
    if (
      previous && (previous.incarnation !== info.incarnation || previous.uuid !== info.uuid)
    ) {
      for (const replica of this.#replicas.values()) {
        if (replica.leaderId === from) replica.leaderUnreachable();
      }
    }
    if (String(previous?.leads) !== String(info.leads)) {
      for (const listener of [...this.#roleListeners]) {
        listener();
      }
    }
    this.membership.observe(from, info.members);
    if (!this.membership.accepts(from, info.uuid) && previous?.uuid !== info.uuid) {
      this.logger.log(
        "warn",
        "Ignoring a node with an unknown identity; run 'metaq cluster replace' if it replaced a node",
        {
          node: from,
          uuid: info.uuid,
        },
      );
    }
  }

  #onRaft(group: string, message: Message): void {
    if (message.to !== this.nodeId) return;
    const replica = this.#replicas.get(group);
    if (replica) return replica.step(message);
    const dash = group.lastIndexOf("-");
    const topic = group.slice(0, dash);
    const partition = Number(group.slice(dash + 1));
    if (!Number.isInteger(partition) || !this.#options.accepts(topic)) return;
    if (group === CLUSTER_GROUP && this.joining) {
      // The metadata group's leader sends to us: we were added. Its log tells us the rest.
      void this.#openJoining(message.from);
      return;
    }
    // A group this node holds but has not opened yet (a new partition): open it, then hand it
    // the message that woke it (a candidate's first vote request: without it the group would
    // wait an election timeout for the next one).
    void this.ensureReplica(topic, partition).then((opened) => opened?.step(message));
  }

  #sendInfo(): void {
    this.#infoDue = false;
    // Retries what waits for a quiet moment (the first record of a new cluster, snapshots).
    this.#metadata?.update();
    void this.#reapMovedCopies();
    // Links came up or went down since: removed members linked now receive the metadata group.
    const metadataCopy = this.#replicas.get(CLUSTER_GROUP);
    if (metadataCopy && this.#metadata?.state.initialized) {
      metadataCopy.setTarget(this.replicasOf(CLUSTER_TOPIC, 0), this.#alsoLearners(CLUSTER_GROUP));
    }
    const replicas = this.replicas();
    const leads = replicas.filter((replica) => replica.isLeader).map((r) => r.name);
    const now = this.#options.clock.monotonicMs();
    const complete = this.#figuresRefreshDue || now - this.#figuresSentAt >= FIGURES_REFRESH_MS;
    const figures = this.#figuresToSend(leads, complete);
    if (complete) {
      this.#figuresRefreshDue = false;
      this.#figuresSentAt = now;
    }
    const info: NodeInfo = {
      nodeId: this.nodeId,
      clientAddress: this.clientAddress,
      uuid: this.membership.identity.uuid,
      incarnation: this.#options.incarnation,
      members: this.membership.members,
      peer: this.#ownPeerAddress(),
      moving: reassignmentsLed(this.nodeId, replicas, 100),
      httpPort: this.#options.httpPort(),
      leads,
      figures,
      ...(complete ? {} : { figuresChangedOnly: true }),
      repairing: replicas.filter(waitsInRepair).map((replica) => replica.name),
      admitted: this.membership.identity.admitted,
      unheard: this.#peerAddresses().map((peer) => peer.id).filter((id) => this.#unheard(id, now)),
    };
    for (const peer of this.#peerAddresses()) this.send(peer.id, { kind: "info", info });
  }

  /**
   * The figures of the groups this node leads: all of them when `complete`, else only those
   * whose counters changed since they were last sent, and once more after they stop changing
   * (so peers deriving rates see them fall to zero). With thousands of idle partitions this
   * keeps the once-a-second self-description small.
   */
  #figuresToSend(leads: readonly string[], complete: boolean): Record<string, readonly number[]> {
    const figures: Record<string, readonly number[]> = {};
    const sent = new Map<string, { values: readonly number[]; repeat: boolean }>();
    for (const group of leads) {
      const values = this.#options.figuresOf?.(group);
      if (!values) continue;
      const last = this.#figuresSent.get(group);
      const changed = !last || !sameCounters(last.values, values);
      if (complete || changed || last?.repeat) figures[group] = values;
      sent.set(group, { values, repeat: changed });
    }
    this.#figuresSent = sent;
    return figures;
  }

  async #openHostedReplicas(): Promise<void> {
    // The metadata group first: it says what else this node holds. A joining node opens it
    // when the group's leader first sends to it (or from disk after a restart).
    const store = this.#options.store;
    if (!this.joining) await this.#openMetadataGroup();
    else if (store.get(CLUSTER_TOPIC, 0)) {
      // A joined node restarting before it applied the metadata again: its copy's markers name
      // the voters. Without any, it waits for the group's leader as a new joiner does.
      const voters = this.#votersOnDisk(CLUSTER_TOPIC, 0);
      if (voters) await this.#openMetadataGroup(voters);
    }
    for (const topic of INTERNAL_TOPICS) await this.ensureReplica(topic, 0);
    const found = [...store.topics()].flatMap(([topic, partitions]) =>
      partitions.map(({ partition }) => ({ topic, partition }))
    );
    // Partitions refused as damaged at start are opened too: that cuts them and starts repair.
    for (const key of store.failures().keys()) {
      const parts = splitPartitionKey(key);
      if (parts) found.push(parts);
    }
    const catalogue = this.#metadata?.state.topics;
    for (const { topic, partition } of found) {
      if (isInternalTopic(topic)) continue; // opened above when placed here (see #dropReplica)
      if (catalogue?.entry(topic)?.deleted) continue; // its files go (#onMetadata)
      if (this.hosts(topic, partition)) await this.ensureReplica(topic, partition);
      else await this.#openLeftover(topic, partition);
    }
  }

  /** The voters the newest marker in the leader-epochs file on disk names, if it names any. */
  #votersOnDisk(topic: string, partition: number): NodeId[] | undefined {
    const store = this.#options.store;
    try {
      const epochs = readEpochs(store.options.storage, store.dirOf(topic, partition)) ?? [];
      const voters = votersOf(epochs);
      return voters && voters.length > 0 ? [...voters] : undefined;
    } catch {
      return undefined; // damaged: the group's leader sends to this node, as to a new joiner
    }
  }

  /**
   * Opens a copy found on disk of a group placed on other nodes: its node was down, cut off or
   * not yet told the cluster's state when the group moved away (or its node was removed). Left
   * closed it would never be deleted, and while its group's committed voters still count on it
   * (a move not finished) it must take part. Opened, it goes as any moved copy does: at once if
   * it never was a voter, else once the group's leader says its committed voters leave it out.
   * Only with the cluster's state applied: before that, where a group belongs is not known.
   */
  async #openLeftover(topic: string, partition: number): Promise<void> {
    const name = `${topic}-${partition}`;
    if (!this.#metadata?.state.initialized || this.#closed) return;
    if (this.#replicas.has(name) || !this.membership.identity.admitted) return;
    let opening = this.#opening.get(name);
    if (!opening) {
      opening = this.#openReplica(topic, partition).finally(() => this.#opening.delete(name));
      this.#opening.set(name, opening);
    }
    const replica = await opening;
    if (replica && !replica.everVoter && !this.hosts(topic, partition)) {
      await this.#dropReplica(name);
    }
    this.#infoDue = true;
  }

  /** Opens this node's copy of the metadata group, whatever the placement says. */
  #openMetadataGroup(seedVoters?: readonly NodeId[]): Promise<Replica | undefined> {
    const existing = this.#replicas.get(CLUSTER_GROUP);
    if (existing) return Promise.resolve(existing);
    if (this.#closed || !this.membership.identity.admitted) return Promise.resolve(undefined);
    let opening = this.#opening.get(CLUSTER_GROUP);
    if (!opening) {
      opening = this.#openReplica(CLUSTER_TOPIC, 0, seedVoters)
        .finally(() => this.#opening.delete(CLUSTER_GROUP));
      this.#opening.set(CLUSTER_GROUP, opening);
    }
    return opening;
  }

  /** A joining node was added: open the metadata group as a learner of its sender's group. */
  async #openJoining(leader: NodeId): Promise<void> {
    if (this.#replicas.has(CLUSTER_GROUP) || this.#opening.has(CLUSTER_GROUP)) return;
    this.logger.log("info", "Joining the cluster: receiving its metadata", { from: leader });
    await this.#openMetadataGroup([leader]);
  }

  #attachMetadata(log: ReplicatedLog): void {
    const peers = this.settings.peers;
    const metadata = new ClusterMetadata({
      log,
      ids: this.#options.ids,
      logger: this.logger,
      now: () => this.#options.clock.monotonicMs(),
      // The node that first leads a new cluster's metadata group records its seed members.
      seed: this.settings.join !== undefined ? undefined : {
        kind: "init",
        members: peers.map((peer) => ({ id: peer.id, peer: `${peer.host}:${peer.port}` })),
        replicas: this.settings.replicas,
      },
    });
    this.#metadata = metadata;
    metadata.onChange(() => this.#onMetadata());
    if (metadata.state.initialized) this.#onMetadata();
  }

  /**
   * The cluster's state changed: link to its members, give every copy its group's placement
   * (the leader moves the voters there), open copies placed here and drop those moved away.
   */
  #onMetadata(): void {
    if (this.#closed) return;
    this.#transport?.setPeers(this.#peerAddresses());
    const catalogue = this.#metadata?.state.topics;
    for (const replica of this.replicas()) {
      const { topic, partition } = splitGroup(replica.name);
      // A deleted topic's copies go at once on every node (the operator asked for it).
      if (catalogue?.entry(topic)?.deleted) {
        void this.#dropReplica(replica.name, "Topic deleted: copy removed");
        continue;
      }
      const target = this.replicasOf(topic, partition);
      if (target.length > 0) replica.setTarget(target, this.#alsoLearners(replica.name));
      // A copy that was only ever a learner hears no removal: it goes when placed elsewhere. A
      // copy that was a voter waits until a configuration without it is committed (its own
      // log's newest marker may leave it out and still be cut): it may hold records that the
      // committed configuration's majority needs.
      if (!target.includes(this.nodeId) && !replica.everVoter) {
        void this.#dropReplica(replica.name);
      }
    }
    // Files of a deleted topic this node holds without a copy open (found on disk at start).
    for (const [topic, partitions] of this.#options.store.topics()) {
      if (!catalogue?.entry(topic)?.deleted) continue;
      for (const { partition } of partitions) {
        if (this.#replicas.has(`${topic}-${partition}`)) continue;
        void this.#options.store.drop(topic, partition);
      }
    }
    if (this.membership.mayParticipate(this.voters)) void this.#openHostedReplicas();
    this.#infoDue = true;
  }

  /**
   * Copies that receive `group`'s log without being placed: removed members still linked to us
   * receive the metadata group. A removed node that restarts knows no commit of its copy (it is
   * not persisted) and, no voter any more, would hear no leader: it would never learn that it was
   * removed, and could go on leading the broker's own groups toward its old placement, so their
   * removal of it never completes. As a learner it applies the records and hands them over.
   */
  #alsoLearners(group: string): NodeId[] {
    const state = this.#metadata?.state;
    if (group !== CLUSTER_GROUP || !state?.initialized) return [];
    return state.members()
      .filter((member) =>
        member.leaving && member.id !== this.nodeId && this.isConnected(member.id)
      )
      .map((member) => member.id);
  }

  /**
   * Closes and deletes this node's copy of `group`: its placement moved it to other nodes and
   * the group's committed configuration no longer counts on it.
   */
  async #dropReplica(name: string, why = "Copy moved to other nodes: removed here"): Promise<void> {
    // The broker's own logs (the metadata group, groups, transactions, delayed messages) stay
    // with the node until it stops (an operator stops a removed node): the broker's parts read
    // them for as long as it runs and do not expect them to vanish (T19: a removed node whose
    // __tx-0 copy was deleted exited on the journal's next read).
    const { topic, partition } = splitGroup(name);
    if (isInternalTopic(topic)) return;
    const replica = this.#replicas.get(name);
    if (!replica || this.#opening.has(name)) return;
    const dropping = (async () => {
      this.#replicas.delete(name);
      this.#logs.delete(name);
      this.#listed = undefined;
      await replica.close();
      await this.#options.store.drop(topic, partition);
      this.logger.log("info", why, { group: name });
      return undefined;
    })().finally(() => this.#opening.delete(name));
    this.#opening.set(name, dropping);
    await dropping;
  }

  /**
   * Copies placed elsewhere go once their group's leader says its committed voters leave this
   * node out (a removal this node may not have heard committed).
   */
  async #reapMovedCopies(): Promise<void> {
    const state = this.#metadata?.state;
    if (this.#reaping || !state?.initialized) return;
    // Only placement changes make copies movable: skip the pass over every copy when nothing
    // changed since a pass that left none behind.
    if (state.version === this.#reapedVersion && this.#replicas.size === this.#reapedCopies) return;
    this.#reaping = true;
    const version = state.version;
    const copies = this.#replicas.size;
    let pending = false;
    try {
      for (const replica of this.replicas()) {
        const { topic, partition } = splitGroup(replica.name);
        if (isInternalTopic(topic) || this.hosts(topic, partition)) continue; // see #dropReplica
        pending = true;
        // A copy left out of its group hears no leader any more: the leader it last knew may
        // lead no longer (asleep, the copy keeps it), so whoever connected peers say leads is
        // asked too (driver simulator seed 54: a removed node kept asking its old leader).
        const leaders = new Set(
          [replica.leaderId, this.#leaderFromPeers(replica.name)].filter((id): id is NodeId =>
            id !== undefined && id !== 0 && id !== this.nodeId
          ),
        );
        for (const leader of leaders) {
          const voters = await this.ask(leader, { kind: "voters", group: replica.name });
          if (!Array.isArray(voters)) continue; // not its leader (or not in its own term yet)
          if (!voters.includes(this.nodeId)) await this.#dropReplica(replica.name);
          break;
        }
      }
    } finally {
      this.#reaping = false;
    }
    // A copy still waiting for its group to let it go keeps the passes coming.
    this.#reapedVersion = pending ? -1 : version;
    this.#reapedCopies = copies;
  }

  /** Restarts the tick with period `ms` (nothing happens when it already runs so). */
  #tickAt(ms: number): void {
    if (this.#closed || (this.#stopTicker && this.#tickEveryMs === ms)) return;
    this.#stopTicker?.();
    this.#tickEveryMs = ms;
    this.#stopTicker = this.#timers.every(ms, () => this.#tick());
  }

  #allQuiet(): boolean {
    for (const replica of this.#replicas.values()) if (!replica.quiet) return false;
    return true;
  }

  /** Drops the outgoing link to `peer`, which looks up but carries nothing, and dials again. */
  #redial(peer: NodeId, why: string): void {
    const transport = this.#transport;
    if (!transport?.redial) return; // a network without such links (the simulator's)
    this.logger.log("info", "Dialing a peer again: its link looks up but carries nothing", {
      peer,
      why,
    });
    transport.redial(peer);
  }

  /**
   * Whether this node, running without a stall, has heard nothing from `peer` for an election
   * timeout: the sign of a stalled link (stalled_links.ts). Unlike #silent, a stall of this
   * process does not count: frames that came meanwhile are still in its sockets.
   */
  #unheard(peer: NodeId, now: number): boolean {
    if (!this.#steadyFor(now, 0)) return false;
    const heard = Math.max(this.#lastHeard.get(peer) ?? -Infinity, this.#runningSince);
    return now - heard > this.settings.electionMinMs;
  }

  /**
   * Whether this process has run without standing still for the last `ms`: its tick is not late
   * now (a timer or a socket can run before the late tick after a pause) and was not since.
   */
  #steadyFor(now: number, ms: number): boolean {
    if (now - this.#lastTickAt > this.settings.electionMinMs / 2) return false;
    return now - this.#runningSince >= ms;
  }

  /** Whether `peer` has been silent for longer than an election timeout (or never heard). */
  #silent(peer: NodeId, now: number): boolean {
    const heard = this.#lastHeard.get(peer);
    return heard === undefined || now - heard > this.settings.electionMinMs;
  }

  /** The node that says it leads `group` (what connected peers last told us). */
  #leaderFromPeers(group: string): NodeId | undefined {
    for (const info of this.#peers.values()) {
      if (info.leads?.includes(group) && this.isConnected(info.nodeId)) return info.nodeId;
    }
    return undefined;
  }

  /** `host:port` other nodes reach this node's peer port at. */
  #ownPeerAddress(): string | undefined {
    const self = this.settings.peers.find((peer) => peer.id === this.nodeId);
    return self ? `${self.host}:${this.peerPort || self.port}` : undefined;
  }

  async #openReplica(
    topic: string,
    partition: number,
    seedVoters?: readonly NodeId[],
  ): Promise<Replica | undefined> {
    const name = `${topic}-${partition}`;
    const store = this.#options.store;
    const storage = store.options.storage;
    try {
      let log;
      let repair: RepairState | undefined;
      if (store.failure(topic, partition)) {
        // Damage found at start (5.7 rule 2): record "repairing" and the former end, then cut.
        repair = { formerEndOffset: store.filesEndOffset(topic, partition) };
        await persistRepair(storage, store.dirOf(topic, partition), repair);
        log = await store.repair(topic, partition);
      } else {
        log = await store.getOrCreate(topic, partition);
        repair = (await this.#repairUnreadableEpochs(log)) ??
          (await this.#repairLostPrefix(log)) ?? this.#repairAfterStart(log);
        if (repair) await persistRepair(storage, log.options.dir, repair);
      }
      const atomicEntries = await settleAtomicEntries(storage, log, this.logger);
      const replica = this.#createReplica(
        topic,
        partition,
        log,
        repair,
        atomicEntries,
        seedVoters,
      );
      this.#replicas.set(name, replica);
      this.#tickAt(this.tickMs); // a new copy is awake
      const replicated = new ReplicatedLog(replica, {
        storage,
        logger: this.logger,
        timers: this.#timers,
        askLeaderCommit: () => this.#askLeaderCommit(name),
        retained: !isInternalTopic(topic),
        whyLeaderless: () => this.stuckReason(name),
      });
      this.#logs.set(name, replicated);
      this.#listed = undefined;
      if (name === CLUSTER_GROUP) this.#attachMetadata(replicated);
      for (const listener of this.#openListeners) listener({ topic, partition, log: replicated });
      if (repair) {
        this.logger.log("warn", "Replica starts in repair mode", {
          group: name,
          formerEndOffset: repair.formerEndOffset,
        });
      }
      return replica;
    } catch (error) {
      this.logger.log("error", "Cannot open replica", {
        group: name,
        reason: describeError(error),
      });
      return undefined;
    }
  }

  #createReplica(
    topic: string,
    partition: number,
    log: PartitionLog,
    repair: RepairState | undefined,
    atomicEntries: readonly ByteRange[],
    seedVoters?: readonly NodeId[],
  ): Replica {
    const name = `${topic}-${partition}`;
    const state = this.#metadata?.state;
    const placed = state?.initialized === true;
    return Replica.open({
      name,
      nodeId: this.nodeId,
      voters: seedVoters ??
        (placed
          ? state!.seedVotersOf(topic, partition, this.nodeId)
          : this.replicasOf(topic, partition)),
      target: placed ? this.replicasOf(topic, partition) : undefined,
      log,
      storage: this.#options.store.options.storage,
      timing: this.timing,
      random: this.#options.random,
      clock: this.#options.clock,
      ack: isInternalTopic(topic) ? "quorum" : this.settings.ack,
      logger: this.logger,
      tracer: this.#options.tracer,
      send: (to, message) => this.send(to, { kind: "raft", group: name, message }),
      repair,
      atomicEntries,
      canary: this.#options.canary,
      quiesce: true,
      onQuiet: (quiet) => {
        if (!quiet) this.#tickAt(this.tickMs);
      },
      onRole: () => {
        this.#infoDue = true;
        for (const listener of [...this.#roleListeners]) listener();
        this.#logs.get(name)?.changed();
        for (const listener of this.#groupListeners.get(name) ?? []) listener();
      },
      onCommit: () => {
        this.#logs.get(name)?.changed();
        for (const listener of this.#groupListeners.get(name) ?? []) listener();
      },
      onConfiguration: (_voters, removed) => {
        if (removed && !this.hosts(topic, partition)) void this.#dropReplica(name);
      },
    });
  }

  /**
   * A scrub: re-reads every replica's durable records and checks their checksums, then compares
   * the committed bytes with the group's other copies (cross_check.ts), which finds damage the
   * checksums do not cover (a header's message id or flag). A damaged replica is cut at the
   * damage (copies kept as `.damaged`) and restarted in repair mode: it stops voting and is
   * filled again from the leader. Waits up to `waitMs` per group for its peers and leader.
   */
  async scrub(waitMs = 5000): Promise<ScrubReport> {
    const report: ScrubReport = { damaged: [], checked: [], skipped: [] };
    // Right after a start, damaged partitions may still be opening (cut and in repair).
    if (this.membership.mayParticipate(this.voters)) await this.#openHostedReplicas();
    for (const replica of this.replicas()) {
      const damage = replica.log.verifyDurable() ?? await this.#crossCheck(replica, waitMs, report);
      if (!damage) continue;
      report.damaged.push({ group: replica.name, ...damage });
      this.logger.log("warn", "Scrub found damage: repairing the replica from its peers", {
        group: replica.name,
        offset: damage.offset,
        reason: damage.reason,
      });
      await this.#repairOnline(replica, damage.offset);
    }
    this.logger.log("info", "Scrub finished", {
      damaged: report.damaged.map((damage) => damage.group).join(","),
      agreeing: report.checked.map((range) => range.group).join(","),
      notCompared: report.skipped.map((skip) => skip.group).join(","),
    });
    return report;
  }

  /** The replica named `group` (`<topic>-<partition>`), if this node holds it. */
  replicaNamed(group: string): Replica | undefined {
    return this.#replicas.get(group);
  }

  async #crossCheck(
    replica: Replica,
    waitMs: number,
    report: ScrubReport,
  ): Promise<{ offset: number; reason: string } | undefined> {
    const peers = replica.voters.filter((id) => id !== this.nodeId);
    if (peers.length === 0) return undefined;
    const ask = (peer: NodeId, group: string, from: number, to: number) =>
      this.ask(peer, { kind: "digest", group, from, to }).then((answer) => digestOf_(answer));
    const clock = this.#options.clock;
    const deadline = clock.monotonicMs() + waitMs;
    const ready = () =>
      replica.leaderId !== 0 && replica.status().repair === undefined &&
      peers.every((id) => this.isConnected(id));
    while (!ready() && clock.monotonicMs() < deadline && !replica.stopped) {
      await sleep(this.#timers, this.tickMs);
    }
    if (replica.status().repair !== undefined) {
      report.skipped.push({ group: replica.name, reason: "replica in repair mode" });
      return undefined;
    }
    const outcome = await crossCheck({
      local: localCopyOf(replica.log, replica.commitOffset),
      peers: peers.filter((id) => this.isConnected(id)),
      needed: Math.floor(replica.voters.length / 2) + 1,
      ask: (peer, from, to) => ask(peer, replica.name, from, to),
    });
    if (outcome.kind === "skipped") {
      report.skipped.push({ group: replica.name, reason: outcome.reason });
      return undefined;
    }
    if (outcome.kind === "agrees") {
      report.checked.push({ group: replica.name, from: outcome.from, to: outcome.to });
      return undefined;
    }
    return {
      offset: outcome.offset,
      reason: `the record differs from the copies on nodes ${outcome.nodes.join(", ")}`,
    };
  }

  async #repairOnline(replica: Replica, offset: number): Promise<void> {
    await this.#reopen(replica, async (log) => {
      const repair = { formerEndOffset: log.writtenEnd };
      await persistRepair(this.#options.store.options.storage, log.options.dir, repair);
      await log.keepDamagedCopies(offset);
      await log.truncate(Math.max(offset, log.startOffset));
      return repair;
    });
  }

  /**
   * Stops `group`'s replica, runs `rewrite` (which replaces its hard state), and starts it
   * again from its files (force-recover); false when this node has no open copy of the group.
   */
  async restartReplica(
    group: string,
    rewrite: (log: PartitionLog) => Promise<void>,
  ): Promise<boolean> {
    const replica = this.#replicas.get(group);
    if (!replica) return false;
    const repairing = replica.status().repair !== undefined;
    await this.#reopen(replica, async (log) => {
      await rewrite(log);
      return undefined;
    });
    // A copy that force-recover takes out of repair mode starts without it: no Raft event says
    // so, and the trace would show it in repair for good (T05b's repair periods, I12).
    const reopened = this.#replicas.get(group);
    if (repairing && reopened && reopened.status().repair === undefined) {
      if (this.#options.tracer.enabled) {
        this.#options.tracer.record(group, { event: "repair", enter: false });
      }
      this.logger.log("warn", "Replica left repair mode", { group, by: "force-recover" });
    }
    this.#infoDue = true;
    return true;
  }

  /**
   * A replica a storage error stopped (a full disk, a failed fsync: its log was cut back to its
   * durable end) starts again on that log after STOPPED_RETRY_MS, as after a crash of this
   * process: nothing it acknowledged was lost, so it takes part normally and catches up once the
   * disk takes writes again (T13); a disk still full stops it again, and it waits again.
   */
  #restartStopped(now: number): void {
    const stopped = [...this.#replicas.values()].filter((replica) => replica.stopped);
    if (stopped.length === 0 && this.#stoppedSince.size === 0) return;
    for (const name of [...this.#stoppedSince.keys()]) {
      if (!stopped.some((replica) => replica.name === name)) this.#stoppedSince.delete(name);
    }
    for (const replica of stopped) {
      const since = this.#stoppedSince.get(replica.name);
      if (since === undefined) {
        this.#stoppedSince.set(replica.name, now);
        continue;
      }
      if (now - since < STOPPED_RETRY_MS || this.#closed) continue;
      this.#stoppedSince.delete(replica.name);
      this.logger.log("info", "Restarting a replica stopped by a storage error", {
        group: replica.name,
      });
      this.#reopen(replica, () => Promise.resolve(undefined)).catch((error) =>
        this.logger.log("error", "Cannot restart a stopped replica", {
          group: replica.name,
          reason: describeError(error),
        })
      );
    }
  }

  /** Stops `replica`, lets `prepare` change its files, and opens a new replica on its log. */
  async #reopen(
    replica: Replica,
    prepare: (log: PartitionLog) => Promise<RepairState | undefined>,
  ): Promise<Replica> {
    const log = replica.log;
    const name = replica.name;
    const { topic, partition } = splitGroup(name);
    // Listed as opening before it leaves #replicas, so a Raft message arriving meanwhile waits
    // for this replica instead of opening a second one on the same log.
    const reopened = (async () => {
      await replica.close();
      const repair = await prepare(log);
      const storage = this.#options.store.options.storage;
      const atomicEntries = await settleAtomicEntries(storage, log, this.logger);
      const next = this.#createReplica(topic, partition, log, repair, atomicEntries);
      this.#replicas.set(name, next);
      this.#tickAt(this.tickMs);
      this.#logs.get(name)?.replaceReplica(next);
      return next;
    })().finally(() => this.#opening.delete(name));
    this.#opening.set(name, reopened);
    this.#replicas.delete(name);
    return await reopened;
  }

  /**
   * The leader-epochs file fails its checksum (or does not parse): which term wrote which bytes,
   * and the group's voters, are unknown. The copy must not refuse to open for good (its group
   * would run on two copies, T12 subcase j), nor vote on a log whose terms it made up: the file
   * is kept as `leader-epochs.damaged`, the log counts as written in epoch 0 (as with no file), and
   * the copy repairs: it votes only once its leader has matched and refilled it.
   */
  async #repairUnreadableEpochs(log: PartitionLog): Promise<RepairState | undefined> {
    const storage = this.#options.store.options.storage;
    try {
      readEpochs(storage, log.options.dir);
      return undefined;
    } catch (error) {
      this.logger.log(
        "warn",
        "Replica's leader-epochs file is damaged: repairing from its leader",
        {
          group: log.name,
          reason: describeError(error),
        },
      );
    }
    const repair = { formerEndOffset: log.writtenEnd };
    await persistRepair(storage, log.options.dir, repair);
    const file = `${log.options.dir}/${EPOCHS_FILE}`;
    storage.rename(file, `${file}.damaged`);
    await storage.syncDir(log.options.dir);
    return repair;
  }

  /**
   * Segments at the front of the log vanished without retention, which moves the leader-epochs
   * base before it deletes anything: this copy lost its prefix. Left alone it would take part
   * with a later log start, and as leader serve (and announce to its followers) that start as if
   * retention had passed (T12 subcase l). Its files are kept as `.damaged` copies, the log
   * starts again empty at the base, and the copy repairs from its leader.
   */
  async #repairLostPrefix(log: PartitionLog): Promise<RepairState | undefined> {
    const storage = this.#options.store.options.storage;
    const base = readEpochs(storage, log.options.dir)?.[0]?.startOffset;
    if (base === undefined || base >= log.startOffset) return undefined;
    this.logger.log("warn", "Replica lost the front of its log: refilling it from its leader", {
      group: log.name,
      expectedStart: base,
      start: log.startOffset,
    });
    const repair = { formerEndOffset: log.writtenEnd };
    await persistRepair(storage, log.options.dir, repair);
    await log.keepDamagedCopies(log.startOffset);
    await log.resetTo(base);
    return repair;
  }

  /**
   * Whether a log that opened cleanly must still be repaired: its tail was cut although the
   * last stop was clean (damage, not a torn write); the machine rebooted while this log was
   * synced on a timer (acknowledged data may be gone; a log synced before every ack, such as
   * `__meta-0`, lost nothing acknowledged); or this node replaced a wiped one.
   */
  #repairAfterStart(log: PartitionLog): RepairState | undefined {
    const { startup } = this.#options;
    if (this.membership.identity.replaced && log.writtenEnd === log.startOffset) return {};
    if (startup.cleanStop && log.recovery.bytesCut > 0) {
      return { formerEndOffset: log.writtenEnd + log.recovery.bytesCut };
    }
    if (log.options.flush.kind !== "group" && startup.rebooted && !startup.cleanStop) return {};
    return undefined;
  }

  async #handOverLeadership(): Promise<void> {
    const led = this.replicas().filter((replica) => replica.isLeader);
    if (led.length === 0) return;
    for (const replica of led) {
      const target = replica.voters.find((id) => id !== this.nodeId && this.isConnected(id));
      if (target) replica.transferLeadership(target);
    }
    const clock = this.#options.clock;
    const deadline = clock.monotonicMs() + Math.min(2000, this.settings.electionMinMs);
    while (clock.monotonicMs() < deadline && led.some((replica) => replica.isLeader)) {
      await sleep(this.#timers, this.tickMs);
    }
  }
}

/** The broker's own logs every node holds: group offsets and the transaction journal. */
export const INTERNAL_TOPICS: readonly string[] = [CLUSTER_TOPIC, META_TOPIC, "__tx", "__delay"];

function splitGroup(name: string): { topic: string; partition: number } {
  const dash = name.lastIndexOf("-");
  return { topic: name.slice(0, dash), partition: Number(name.slice(dash + 1)) };
}

/** A copy in repair mode that waits for a leader and votes for nobody (no force-recover base). */
function waitsInRepair(replica: Replica | undefined): boolean {
  const repair = replica?.raft.repair;
  return repair !== undefined && repair.base === undefined;
}

/** Whether two figure arrays hold the same counters (index 0, the time taken, always differs). */
function sameCounters(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let index = 1; index < a.length; index++) if (a[index] !== b[index]) return false;
  return true;
}

/**
 * `received` with complete figures: an info carrying only changed figures keeps the previous
 * ones for the other groups the peer still leads.
 */
function withFiguresOf(previous: NodeInfo | undefined, received: NodeInfo): NodeInfo {
  if (!received.figuresChangedOnly) return received;
  const figures: Record<string, readonly number[]> = {};
  for (const group of received.leads ?? []) {
    const values = received.figures?.[group] ?? previous?.figures?.[group];
    if (values) figures[group] = values;
  }
  return { ...received, figures, figuresChangedOnly: false };
}

/** A peer's answer to a digest question, when it is one. */
function digestOf_(answer: unknown): RangeDigest | undefined {
  const digest = answer as RangeDigest | null | undefined;
  return typeof digest?.start === "number" && typeof digest.end === "number" ? digest : undefined;
}

/** Records "repairing" in the hard state before the log is cut (unless the state is unreadable). */
async function persistRepair(storage: Storage, dir: string, repair: RepairState): Promise<void> {
  const current = readHardState(storage, dir);
  if (current === "unreadable") return; // rule 3 applies: the core forgets its votes anyway
  await writeHardState(storage, dir, { ...(current ?? { term: 0, votedFor: 0 }), repair });
}

/** A peer address from `host:port`, or undefined when it is not one. */
function parseAddress(id: NodeId, address: string): PeerAddress | undefined {
  const match = /^(.+):(\d{1,5})$/.exec(address);
  if (!match) return undefined;
  const port = Number(match[2]);
  return port >= 1 && port <= 65535 ? { id, host: match[1], port } : undefined;
}

/**
 * @module ClusterNode: one metaq node of a Raft-lite cluster. Owns the peer transport, the
 * replicas of the partitions this node holds (placement.ts), the clock that ticks them, and
 * what nodes tell each other about themselves (client address, identity, groups they lead).
 * Request routing (which node serves a request) is in routing.ts; forwarding in forwarding.ts.
 */
import process from "node:process";
import { type Clock } from "../clock.ts";
import { describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { Prng } from "../prng.ts";
import type { RunningBroker } from "../server/start_broker.ts";
import type { ClusterSettings } from "./cluster_config.ts";
import { decodeEnvelope, encodeEnvelope, type Envelope, type NodeInfo } from "./envelope.ts";
import type { Membership } from "./membership.ts";
import type { OffsetsSummary } from "./meta_state.ts";
import type { Message, NodeId } from "./messages.ts";
import { PeerTransport } from "./peer_transport.ts";
import { clusterSecretOf, tlsFor } from "../security/tls.ts";
import { isInternalTopic, META_GROUP, META_TOPIC, replicasOf } from "./placement.ts";
import type { RaftTiming } from "./raft.ts";
import { Replica } from "./replica.ts";
import { crossCheck, type RangeDigest } from "./cross_check.ts";
import { localCopyOf } from "./log_digest.ts";
import type { PartitionLog } from "../store/partition_log.ts";
import { splitPartitionKey } from "../store/message_store.ts";
import type { Storage } from "../store/storage.ts";
import type { RepairState } from "./messages.ts";
import { readHardState, writeHardState } from "./state_files.ts";
import { clearCleanStop, markCleanStop, type StartupState } from "./startup_state.ts";
import type { Tracer } from "./trace.ts";

/** How often the node tells its peers about itself even when nothing changed. */
const INFO_INTERVAL_MS = 1000;

export interface ClusterNodeOptions {
  readonly settings: ClusterSettings;
  readonly running: RunningBroker;
  readonly membership: Membership;
  readonly tracer: Tracer;
  readonly logger: Logger;
  readonly clock: Clock;
  /** How the previous run ended (clean stop marker, boot id). */
  readonly startup: StartupState;
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

export class ClusterNode {
  readonly settings: ClusterSettings;
  readonly running: RunningBroker;
  readonly membership: Membership;
  readonly logger: Logger;
  readonly voters: readonly NodeId[];
  readonly timing: RaftTiming;
  readonly tickMs: number;
  readonly #options: ClusterNodeOptions;
  readonly #replicas = new Map<string, Replica>();
  readonly #opening = new Map<string, Promise<Replica | undefined>>();
  readonly #peers = new Map<NodeId, NodeInfo>();
  readonly #random: Prng;
  #transport: PeerTransport | undefined;
  #ticker: ReturnType<typeof setInterval> | undefined;
  #infoTimer: ReturnType<typeof setInterval> | undefined;
  #infoDue = false;
  #closed = false;
  #roleListeners = new Set<() => void>();
  readonly #groupListeners = new Map<string, (() => void)[]>();
  /** Handlers for forwarded requests and replies (forwarding.ts). */
  onForward: ((from: NodeId, requestId: number, request: Uint8Array) => void) | undefined;
  onForwardReply: ((requestId: number, reply: Uint8Array) => void) | undefined;
  /** Asks a peer for a digest of its copy of a group (`cluster digest`, set by plugin.ts). */
  askDigest:
    | ((peer: NodeId, group: string, from: number, to: number) => Promise<RangeDigest | undefined>)
    | undefined;
  /** This node's table of group offsets (`cluster status`; set by plugin.ts). */
  describeOffsets: (() => OffsetsSummary | undefined) | undefined;
  peerPort = 0;

  constructor(options: ClusterNodeOptions) {
    this.#options = options;
    this.settings = options.settings;
    this.running = options.running;
    this.membership = options.membership;
    this.logger = options.logger;
    this.voters = options.settings.peers.map((peer) => peer.id);
    this.#random = new Prng(Number(process.pid) * 7919 + options.settings.nodeId);
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

  /** Starts the peer port and the clock, and opens the replicas found on disk. */
  async start(): Promise<void> {
    const self = this.settings.peers.find((peer) => peer.id === this.nodeId)!;
    this.#transport = new PeerTransport({
      nodeId: this.nodeId,
      host: this.running.config.system.host === "0.0.0.0" ? "0.0.0.0" : self.host,
      port: self.port,
      peers: this.settings.peers,
      logger: this.logger,
      onFrame: (from, payload) => this.#receive(from, payload),
      onConnected: () => (this.#infoDue = true),
      secret: clusterSecretOf(this.running.config.system),
      tls: tlsFor(this.running.config.system, "peer"),
    });
    this.peerPort = await this.#transport.listen();
    this.#ticker = setInterval(() => this.#tick(), this.tickMs);
    this.#infoTimer = setInterval(() => this.#sendInfo(), INFO_INTERVAL_MS);
    if (this.membership.mayParticipate(this.voters)) await this.#openHostedReplicas();
    // Acted on: a crash from now on must not look like a clean stop.
    await clearCleanStop(this.running.store.options.storage, this.running.config.system.dataPath);
  }

  /** Whether this node holds `topic`-`partition`. */
  hosts(topic: string, partition: number): boolean {
    return this.replicasOf(topic, partition).includes(this.nodeId);
  }

  replicasOf(topic: string, partition: number): NodeId[] {
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
    const host = this.running.config.system.hostName || this.running.config.system.host;
    return `${host}:${this.running.port}`;
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
        clearTimeout(timer);
        this.#roleListeners.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#roleListeners.add(done);
    });
  }

  send(to: NodeId, envelope: Envelope): void {
    this.#transport?.send(to, encodeEnvelope(envelope));
  }

  /** Hands leadership away (graceful stop), waits briefly, then stops everything. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#handOverLeadership();
    this.#closed = true;
    if (this.#ticker) clearInterval(this.#ticker);
    if (this.#infoTimer) clearInterval(this.#infoTimer);
    await Promise.allSettled([...this.#opening.values()]);
    for (const replica of this.#replicas.values()) await replica.close();
    await this.#transport?.close();
    await this.membership.flush();
    const store = this.running.store;
    await Promise.all(store.logs().map((log) => log.flush()));
    await markCleanStop(store.options.storage, this.running.config.system.dataPath);
  }

  #tick(): void {
    for (const replica of this.#replicas.values()) replica.tick();
    if (this.#infoDue) this.#sendInfo();
    if (!this.membership.identity.admitted && this.membership.mayParticipate(this.voters)) {
      this.logger.log("info", "Node admitted to the cluster", {
        node: this.nodeId,
        replaced: this.membership.identity.replaced,
      });
      void this.#openHostedReplicas();
    }
  }

  #receive(from: NodeId, payload: Uint8Array): void {
    const envelope = decodeEnvelope(payload);
    if (typeof envelope === "string") {
      this.logger.log("warn", "Dropping malformed peer message", { peer: from, reason: envelope });
      return;
    }
    if (envelope.kind === "info") return this.#onInfo(from, envelope.info);
    const info = this.#peers.get(from);
    // A node that came back with another identity is a stranger until an operator admits it.
    if (!info || !this.membership.accepts(from, info.uuid)) return;
    if (envelope.kind === "raft") return this.#onRaft(envelope.group, envelope.message);
    if (envelope.kind === "forward") {
      return this.onForward?.(from, envelope.requestId, envelope.request);
    }
    this.onForwardReply?.(envelope.requestId, envelope.reply);
  }

  #onInfo(from: NodeId, info: NodeInfo): void {
    if (info.nodeId !== from) return;
    const previous = this.#peers.get(from);
    this.#peers.set(from, info);
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
    if (!Number.isInteger(partition) || !this.running.broker.topicSettings(topic)) return;
    // A group this node holds but has not opened yet (a new partition): open it; Raft resends.
    void this.ensureReplica(topic, partition);
  }

  #sendInfo(): void {
    this.#infoDue = false;
    const info: NodeInfo = {
      nodeId: this.nodeId,
      clientAddress: this.clientAddress,
      uuid: this.membership.identity.uuid,
      members: this.membership.members,
      httpPort: Number(this.running.facts.get("httpPort") ?? 0) || undefined,
      leads: this.replicas().filter((replica) => replica.isLeader).map((replica) => replica.name),
    };
    for (const peer of this.settings.peers) {
      if (peer.id !== this.nodeId) this.send(peer.id, { kind: "info", info });
    }
  }

  async #openHostedReplicas(): Promise<void> {
    await this.ensureReplica(META_TOPIC, 0);
    const store = this.running.store;
    const found = [...store.topics()].flatMap(([topic, partitions]) =>
      partitions.map(({ partition }) => ({ topic, partition }))
    );
    // Partitions refused as damaged at start are opened too: that cuts them and starts repair.
    for (const key of store.failures().keys()) {
      const parts = splitPartitionKey(key);
      if (parts) found.push(parts);
    }
    for (const { topic, partition } of found) {
      if (topic !== META_TOPIC && this.hosts(topic, partition)) {
        await this.ensureReplica(topic, partition);
      }
    }
  }

  async #openReplica(topic: string, partition: number): Promise<Replica | undefined> {
    const name = `${topic}-${partition}`;
    const store = this.running.store;
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
        repair = this.#repairAfterStart(log);
        if (repair) await persistRepair(storage, log.options.dir, repair);
      }
      const replica = this.#createReplica(topic, partition, log, repair);
      this.#replicas.set(name, replica);
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
  ): Replica {
    const name = `${topic}-${partition}`;
    return Replica.open({
      name,
      nodeId: this.nodeId,
      voters: this.replicasOf(topic, partition),
      log,
      storage: this.running.store.options.storage,
      timing: this.timing,
      random: this.#random,
      ack: isInternalTopic(topic) ? "quorum" : this.settings.ack,
      logger: this.logger,
      tracer: this.#options.tracer,
      send: (to, message) => this.send(to, { kind: "raft", group: name, message }),
      repair,
      onRole: () => {
        this.#infoDue = true;
        for (const listener of [...this.#roleListeners]) listener();
        for (const listener of this.#groupListeners.get(name) ?? []) listener();
      },
      onCommit: () => {
        for (const listener of this.#groupListeners.get(name) ?? []) listener();
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
    const ask = this.askDigest;
    const peers = replica.options.voters.filter((id) => id !== this.nodeId);
    if (!ask || peers.length === 0) return undefined;
    const deadline = Date.now() + waitMs;
    const ready = () =>
      replica.leaderId !== 0 && replica.status().repair === undefined &&
      peers.every((id) => this.isConnected(id));
    while (!ready() && Date.now() < deadline && !replica.stopped) {
      await new Promise((resolve) => setTimeout(resolve, this.tickMs));
    }
    if (replica.status().repair !== undefined) {
      report.skipped.push({ group: replica.name, reason: "replica in repair mode" });
      return undefined;
    }
    const outcome = await crossCheck({
      local: localCopyOf(replica.log, replica.commitOffset),
      peers: peers.filter((id) => this.isConnected(id)),
      needed: Math.floor(replica.options.voters.length / 2) + 1,
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
    const log = replica.log;
    const name = replica.name;
    const dash = name.lastIndexOf("-");
    const [topic, partition] = [name.slice(0, dash), Number(name.slice(dash + 1))];
    // Listed as opening before it leaves #replicas, so a Raft message arriving meanwhile waits
    // for this replica instead of opening a second one on the same log.
    const reopened = (async () => {
      await replica.close();
      const repair = { formerEndOffset: log.writtenEnd };
      await persistRepair(this.running.store.options.storage, log.options.dir, repair);
      await log.keepDamagedCopies(offset);
      await log.truncate(Math.max(offset, log.startOffset));
      const next = this.#createReplica(topic, partition, log, repair);
      this.#replicas.set(name, next);
      return next;
    })().finally(() => this.#opening.delete(name));
    this.#opening.set(name, reopened);
    this.#replicas.delete(name);
    await reopened;
  }

  /**
   * Whether a log that opened cleanly must still be repaired: its tail was cut although the
   * last stop was clean (damage, not a torn write); the machine rebooted while fsync ran on a
   * timer (acknowledged data may be gone); or this node replaced a wiped one.
   */
  #repairAfterStart(log: PartitionLog): RepairState | undefined {
    const { startup } = this.#options;
    if (this.membership.identity.replaced && log.writtenEnd === log.startOffset) return {};
    if (startup.cleanStop && log.recovery.bytesCut > 0) {
      return { formerEndOffset: log.writtenEnd + log.recovery.bytesCut };
    }
    if (this.settings.fsync.kind === "interval" && startup.rebooted && !startup.cleanStop) {
      return {};
    }
    return undefined;
  }

  async #handOverLeadership(): Promise<void> {
    const led = this.replicas().filter((replica) => replica.isLeader);
    if (led.length === 0) return;
    for (const replica of led) {
      const target = replica.options.voters.find((id) =>
        id !== this.nodeId && this.isConnected(id)
      );
      if (target) replica.transferLeadership(target);
    }
    const deadline = Date.now() + Math.min(2000, this.settings.electionMinMs);
    while (Date.now() < deadline && led.some((replica) => replica.isLeader)) {
      await new Promise((resolve) => setTimeout(resolve, this.tickMs));
    }
  }
}

export { META_GROUP };

/** Records "repairing" in the hard state before the log is cut (unless the state is unreadable). */
async function persistRepair(storage: Storage, dir: string, repair: RepairState): Promise<void> {
  const current = readHardState(storage, dir);
  if (current === "unreadable") return; // rule 3 applies: the core forgets its votes anyway
  await writeHardState(storage, dir, { ...(current ?? { term: 0, votedFor: 0 }), repair });
}

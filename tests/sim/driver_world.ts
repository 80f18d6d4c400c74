/**
 * @module The driver simulator: the real cluster driver (ClusterNode, Replica, ReplicatedLog,
 * the segment logs and state files under them) run in virtual time from one seed. Each node is
 * built as lib/app/assemble.ts builds it, over a fault-injecting in-memory disk (node_disk.ts:
 * fsyncs take time, a power cut loses or tears unsynced writes) and an in-memory network
 * (sim_network.ts: delay, drop, duplicate, reorder, partition). Nodes crash and restart from
 * their disks, lose power together, pause, and stop gracefully; the cluster's members and
 * placements change through the metadata group's leader (a user partition's copy moves to
 * another node, a node is removed with its copies placed elsewhere, a removed node is added
 * again); clients put records through the Log port of whichever node they think leads and
 * follow its hints.
 *
 * The checker (driver_checker.ts) sees the driver's trace, the frames it sends, its disks'
 * durable contents, what readers can read and which puts were acknowledged. A liveness phase
 * follows the faults: with the network whole and every node up, each group must settle on one
 * leader that every copy its placement names follows at the same commit, with those copies as
 * its voters, and every client must get a put through.
 */
import { AssertionError } from "../../lib/assert.ts";
import { concatBytes } from "../../lib/bytes.ts";
import { clusterSettings } from "../../lib/cluster/cluster_config.ts";
import { ClusterNode, INTERNAL_TOPICS } from "../../lib/cluster/cluster_node.ts";
import type { ClusterRecord, ClusterState } from "../../lib/cluster/cluster_state.ts";
import { loadMembership } from "../../lib/cluster/membership.ts";
import { CLUSTER_GROUP } from "../../lib/cluster/metadata.ts";
import type { NodeId } from "../../lib/cluster/messages.ts";
import { META_GROUP, replicasOf } from "../../lib/cluster/placement.ts";
import type { DriverCanary } from "../../lib/cluster/replica.ts";
import { readStartupState } from "../../lib/cluster/startup_state.ts";
import type { Tracer } from "../../lib/cluster/trace.ts";
import { buildConfig, type Config } from "../../lib/config/config.ts";
import { BrokerError, describeError } from "../../lib/errors.ts";
import { RECORD_HEADER_BYTES } from "../../lib/limits.ts";
import type { Logger } from "../../lib/log.ts";
import { Prng } from "../../lib/prng.ts";
import { type RecordInput, writeRecord } from "../../lib/protocol/record.ts";
import { MessageIdGenerator } from "../../lib/protocol/message_id.ts";
import { MessageStore } from "../../lib/store/message_store.ts";
import { joinPath } from "../../lib/store/storage.ts";
import { SafetyViolation } from "./checker.ts";
import { DriverChecker } from "./driver_checker.ts";
import { NodeDisk } from "./node_disk.ts";
import { linkKey, type PartitionMode, SimNetwork } from "./sim_network.ts";
import { NodeTime, VirtualTime } from "./virtual_time.ts";
import type { SimFailure } from "./world.ts";

const DATA = "/data";
const TOPIC = "sim";
/**
 * Partitions of the user topic: more with 5 nodes, where each has its own placement (with 3
 * nodes every node holds everything, as the broker's own logs `__meta-0` and `__tx-0` always do).
 */
const PARTITIONS_OF_3 = 1;
const PARTITIONS_OF_5 = 2;
/**
 * Raft timing of every node: a tick is 33 ms, a heartbeat 3 ticks, an election timeout 9-18
 * ticks. Short timeouts make elections frequent under the network's delays, which is the point.
 */
const HEARTBEAT_MS = 100;
const ELECTION_MS = "300-600";
const CHECK_QUORUM_MS = 250;
const WALL_BASE_MS = Date.UTC(2026, 0, 1);
const CLIENT_TIMEOUT_MS = 2000;
/** The share of a client's puts that are an atomic batch of 2-4 records (a commit's batch). */
const BATCH_SHARE = 0.2;
const DURATION_MS_DEFAULT = 3500;
/** How often a reader looks at what each copy serves (S10). */
const READ_CHECK_MS = 40;
const SETTLE_CHECK_MS = 100;
/** Virtual time the cluster gets after heal to settle before a liveness failure. */
const SETTLE_MS_MAX = 60_000;
const RECENT_LINES = 400;
/**
 * Errors a node may log after a power cut: a torn tail that mixes old and new bytes looks like
 * damage inside the log, which is refused at start and repaired from the peers. Any other error
 * is a failure (the simulated disk never fails; an assertion in the driver logs one).
 */
const EXPECTED_ERRORS: ReadonlySet<string> = new Set(["Refusing damaged partition"]);

export interface DriverSimOptions {
  readonly seed: number;
  /** Virtual milliseconds of the fault phase (the liveness phase follows). */
  readonly durationMs?: number;
  readonly canary?: DriverCanary;
  /** Fault indexes to skip (shrinking). */
  readonly disabledFaults?: ReadonlySet<number>;
  /**
   * A focused scenario instead of the seed's own: its number of nodes, its faults (a membership
   * fault may name its record), and looks at the nodes at given times (a look that throws fails
   * the run). The seed still drives the network, disks and clients.
   */
  readonly scenario?: {
    readonly nodes: 3 | 5;
    readonly faults: readonly Omit<DriverFault, "index">[];
    readonly looks?: readonly { readonly atMs: number; readonly look: (nodes: NodeLook) => void }[];
  };
  /** Receives every trace line as it happens. */
  readonly trace?: (line: string) => void;
  /** The share of puts that are atomic batches (default BATCH_SHARE). */
  readonly batchShare?: number;
}

export type DriverFaultKind =
  | "crash"
  | "powerCut"
  | "stop"
  | "pause"
  | "partition"
  /** A membership or placement change, proposed on the metadata group's leader. */
  | "membership";

/** What a scenario's look sees: each node's running ClusterNode (undefined while it is down). */
export type NodeLook = (id: NodeId) => ClusterNode | undefined;

export interface DriverFault {
  readonly index: number;
  readonly atMs: number;
  readonly kind: DriverFaultKind;
  readonly node: NodeId;
  readonly durationMs: number;
  /** Hit whichever node leads a partition when the fault fires, if any does. */
  readonly targetLeader: boolean;
  readonly shape: "split" | "oneWay" | "bridge" | "isolate";
  readonly mode: PartitionMode;
  readonly salt: number;
  /** A membership fault's record (scenarios); otherwise one is chosen from `salt`. */
  readonly record?: ClusterRecord;
}

export interface DriverSimResult {
  readonly seed: number;
  readonly failure?: SimFailure;
  readonly faults: readonly DriverFault[];
  readonly recent: readonly string[];
  readonly stats: {
    readonly nodes: number;
    readonly virtualMs: number;
    readonly events: number;
    readonly commits: number;
    readonly elections: number;
    readonly sleeps: number;
    readonly acked: number;
    readonly messages: number;
    readonly restarts: number;
    /** Membership and placement records the metadata group's leader accepted. */
    readonly reconfigurations: number;
  };
}

interface SimNode {
  readonly id: NodeId;
  readonly rate: number;
  readonly disk: NodeDisk;
  readonly config: Config;
  process: NodeTime;
  cluster: ClusterNode | undefined;
  up: boolean;
  incarnation: number;
}

interface SimClient {
  readonly id: number;
  guess: NodeId;
  /** The put in flight (0: none). */
  waiting: number;
  sequence: number;
  okAfterHeal: number;
  /**
   * An atomic batch not yet known to have landed: sent again (the same records, through
   * `appendMissing`) until one answer says it is in, as a transaction's coordinator completes
   * a journalled commit.
   */
  batch?: { readonly group: string; readonly bytes: Uint8Array };
}

class LivenessFailure extends Error {
  override readonly name = "LivenessFailure";
}

export function runDriverSimulation(options: DriverSimOptions): Promise<DriverSimResult> {
  return new DriverWorld(options).run();
}

class DriverWorld {
  readonly seed: number;
  readonly #options: DriverSimOptions;
  readonly #time = new VirtualTime();
  readonly #random: Prng;
  readonly #nodes = new Map<NodeId, SimNode>();
  readonly #ids: NodeId[];
  readonly #replicas: number;
  readonly #partitions: number;
  readonly #network: SimNetwork;
  readonly #checker: DriverChecker;
  readonly #clients: SimClient[] = [];
  readonly #faults: DriverFault[];
  readonly #durationMs: number;
  readonly #recent: string[] = [];
  #failure: unknown;
  #healed = false;
  #done = false;
  #nextPut = 1;
  #restarts = 0;
  #reconfigurations = 0;
  /** Removals proposed so far, taken or not (at most REMOVALS_MAX of 5 nodes). */
  #removals = 0;
  /** The cluster's state as the metadata group's leader last had it (placement hints). */
  #lastState: ClusterState | undefined;

  constructor(options: DriverSimOptions) {
    this.#options = options;
    this.seed = options.seed;
    const schedule = new Prng(options.seed);
    this.#random = new Prng(schedule.nextU32());
    this.#durationMs = options.durationMs ?? DURATION_MS_DEFAULT;
    const scenario = options.scenario;
    const drawn = schedule.chance(0.7) ? 3 : 5;
    const nodeCount = scenario?.nodes ?? drawn;
    this.#ids = Array.from({ length: nodeCount }, (_, index) => index + 1);
    this.#replicas = 3;
    this.#partitions = nodeCount === 3 ? PARTITIONS_OF_3 : PARTITIONS_OF_5;
    const faults = makeFaults(schedule, nodeCount, this.#durationMs);
    this.#faults = scenario ? scenario.faults.map((fault, index) => ({ ...fault, index })) : faults;
    this.#checker = new DriverChecker({
      holders: (group) => this.#initialHolders(group),
      disk: (id) => this.#node(id).disk.memory,
      dirOf: (group) => joinPath(DATA, group),
    });
    this.#network = new SimNetwork({
      time: this.#time,
      random: this.#random,
      nodes: this.#ids,
      observe: (from, _to, payload) => this.#check(() => this.#checker.onSend(from, payload)),
    });
    const weather = this.#network.weather;
    weather.dropRate = schedule.float() * 0.1;
    weather.dupRate = schedule.float() * 0.05;
    weather.reorderRate = schedule.float() * 0.1;
    weather.tailRate = 0.01;
    const peers = this.#ids.map((id) => `${id}=sim${id}:${id}`).join(",");
    for (const id of this.#ids) {
      const rate = 0.97 + schedule.float() * 0.06;
      const process = new NodeTime(this.#time, rate, WALL_BASE_MS);
      const slowRate = schedule.float() * 0.05;
      const disk = new NodeDisk(this.#time, process, {
        syncMs: () =>
          this.#random.chance(slowRate) ? this.#random.int(40, 200) : this.#random.int(1, 10),
      });
      this.#nodes.set(id, {
        id,
        rate,
        disk,
        config: nodeConfig(id, peers, this.#replicas),
        process,
        cluster: undefined,
        up: false,
        incarnation: 0,
      });
    }
    const clientCount = schedule.int(2, 5);
    for (let id = 0; id < clientCount; id++) {
      this.#clients.push({
        id,
        guess: schedule.pick(this.#ids),
        waiting: 0,
        sequence: 0,
        okAfterHeal: 0,
      });
    }
  }

  async run(): Promise<DriverSimResult> {
    let failure: SimFailure | undefined;
    try {
      for (const node of this.#nodes.values()) this.#start(node);
      for (const client of this.#clients) {
        this.#time.after(this.#random.int(100, 1000), () => this.#onClient(client));
      }
      for (const fault of this.#faults) {
        if (this.#options.disabledFaults?.has(fault.index)) continue;
        this.#time.at(fault.atMs, () => this.#onFault(fault));
      }
      this.#time.at(this.#durationMs, () => this.#onHeal());
      for (const { atMs, look } of this.#options.scenario?.looks ?? []) {
        this.#time.at(atMs, () =>
          this.#check(() =>
            look((id) => {
              const node = this.#node(id);
              return node.up ? node.cluster : undefined;
            })
          ));
      }
      this.#everyMs(READ_CHECK_MS, () => this.#checkReaders());
      await this.#time.run(() => this.#done || this.#failure !== undefined, this.#deadline());
      if (this.#failure !== undefined) throw this.#failure;
      if (!this.#done) {
        throw new LivenessFailure(
          `not settled ${SETTLE_MS_MAX} ms after heal: ${this.#unsettled()}`,
        );
      }
      this.#finalCheck();
    } catch (error) {
      failure = this.#describe(error);
    }
    return {
      seed: this.seed,
      ...(failure ? { failure } : {}),
      faults: this.#faults,
      recent: this.#recent,
      stats: {
        nodes: this.#ids.length,
        virtualMs: Math.round(this.#time.now),
        events: this.#time.events,
        commits: this.#checker.commits,
        elections: this.#checker.elections,
        sleeps: this.#checker.sleeps,
        acked: this.#checker.acks,
        messages: this.#network.frames,
        restarts: this.#restarts,
        reconfigurations: this.#reconfigurations,
      },
    };
  }

  #deadline(): number {
    return this.#durationMs + SETTLE_MS_MAX;
  }

  // -------------------------------------------------------------------------------------------
  // Nodes.

  /** Starts a run of `node` from its disk, as `metaq serve` would, over the simulated parts. */
  #start(node: SimNode): void {
    node.incarnation++;
    node.up = true;
    node.cluster = undefined;
    const process = new NodeTime(this.#time, node.rate, WALL_BASE_MS);
    node.process = process;
    const storage = node.disk.open(process);
    const { id, config } = node;
    const logger = this.#logger(node, process);
    const tracer: Tracer = {
      enabled: true,
      record: (group, event) => {
        if (!process.alive) return;
        if (event.event === "role") {
          this.#trace(`node ${id} ${group}: ${event.role} of term ${event.term}`);
        }
        this.#check(() => this.#checker.onTrace(id, group, event));
      },
    };
    const boot = async () => {
      const store = await MessageStore.open({
        storage,
        config,
        clock: process,
        logger,
        verifyAll: true,
        repair: false,
        flushFor: (topic) => topic.startsWith("__") ? { kind: "group" } : undefined,
      });
      const ids = new MessageIdGenerator({ brokerId: id, clock: process });
      if (store.lastRecoveredId !== undefined) ids.observe(store.lastRecoveredId);
      const cluster = new ClusterNode({
        settings: clusterSettings(config)!,
        ids,
        config,
        store,
        membership: await loadMembership(storage, DATA, id),
        startup: await readStartupState(storage, DATA),
        tracer,
        logger,
        clock: process,
        timers: process,
        random: new Prng((this.seed * 31 + id * 1009 + node.incarnation * 7) >>> 0),
        incarnation: `${id}.${node.incarnation}`,
        network: this.#network.endpoint(id, process),
        canary: this.#options.canary,
        accepts: (topic) => topic === TOPIC || topic.startsWith("__"),
        clientAddress: () => `sim${id}:${id}`,
        httpPort: () => undefined,
        onForwarded: () => {},
        onPeerGone: () => {},
      });
      await cluster.start();
      if (process.alive) node.cluster = cluster;
      return { cluster, store };
    };
    this.#trace(`node ${id} starts (run ${node.incarnation})`);
    this.#checker.onRestart(id);
    boot().catch((error) => {
      if (process.alive) this.#failure ??= error;
    });
  }

  /** A power cut of one node: its process dies and its disk keeps what was synced. */
  #crash(node: SimNode): void {
    if (!node.up) return;
    node.up = false;
    node.process.kill();
    node.cluster = undefined;
    this.#network.down(node.id);
    node.disk.crash(this.#random);
    this.#trace(`node ${node.id} loses power`);
    this.#check(() => this.#checker.onCrash(node.id));
  }

  /** A graceful stop (leadership handed over, logs flushed), then a restart later. */
  #stop(node: SimNode, downMs: number): void {
    const cluster = node.cluster;
    if (!node.up || !cluster || node.process.paused) return;
    const process = node.process;
    this.#trace(`node ${node.id} stops gracefully`);
    node.cluster = undefined;
    cluster.close().then(() => {
      if (!process.alive) return;
      process.kill();
      node.up = false;
      this.#network.down(node.id);
      this.#trace(`node ${node.id} stopped`);
      this.#time.after(downMs, () => this.#restart(node));
    }).catch((error) => {
      if (process.alive) this.#failure ??= error;
    });
  }

  #restart(node: SimNode): void {
    if (node.up) return;
    this.#restarts++;
    this.#start(node);
  }

  #logger(node: SimNode, process: NodeTime): Logger {
    return {
      log: (level, message, fields) => {
        if (!process.alive) return;
        // The simulated disk never fails: an error is the driver's own.
        if (level === "error" && !EXPECTED_ERRORS.has(message)) {
          this.#failure ??= new Error(
            `node ${node.id} logged an error: ${message} ${JSON.stringify(fields ?? {})}`,
          );
        } else if (level !== "debug" && level !== "info") {
          this.#trace(`node ${node.id} warns: ${message} ${JSON.stringify(fields ?? {})}`);
        }
      },
    };
  }

  // -------------------------------------------------------------------------------------------
  // Faults.

  #onFault(fault: DriverFault): void {
    if (this.#healed) return;
    const node = this.#target(fault);
    switch (fault.kind) {
      case "crash":
        if (!node.up) return;
        this.#crash(node);
        this.#time.after(fault.durationMs, () => this.#restart(node));
        return;
      case "powerCut":
        this.#trace("power cut: every node");
        for (const each of this.#nodes.values()) this.#crash(each);
        this.#time.after(fault.durationMs, () => {
          for (const each of this.#nodes.values()) this.#restart(each);
        });
        return;
      case "stop":
        return this.#stop(node, fault.durationMs);
      case "pause":
        if (!node.up || node.process.paused) return;
        this.#trace(`node ${node.id} pauses`);
        node.process.pause();
        this.#time.after(fault.durationMs, () => this.#resume(node, node.process));
        return;
      case "partition": {
        const links = partitionLinks(fault, node.id, this.#ids);
        const id = this.#network.partition(links, fault.mode);
        this.#trace(`partition ${id} (${fault.mode}): ${[...links].join(" ")}`);
        this.#time.after(fault.durationMs, () => this.#network.heal(id));
        return;
      }
      case "membership":
        return this.#reconfigure(fault);
    }
  }

  /**
   * Proposes a membership or placement record on the node leading the metadata group, as
   * `metaq cluster add|remove|rebalance` would there: the groups then move their copies on
   * their own, under whatever faults follow.
   */
  #reconfigure(fault: DriverFault): void {
    if (this.#healed) return;
    // A scenario's own record is proposed again until the state takes or refuses it.
    const again = () => fault.record && this.#time.after(100, () => this.#reconfigure(fault));
    const leader = this.#metadataLeader();
    const metadata = leader?.cluster?.metadata;
    if (!leader || !metadata?.state.initialized) {
      this.#trace("membership change skipped: no leader of the cluster's metadata");
      return void again();
    }
    const record = fault.record ?? this.#nextRecord(metadata.state, new Prng(fault.salt));
    if (!record) return this.#trace("membership change skipped: nothing to change");
    const text = JSON.stringify(record);
    this.#trace(`node ${leader.id} proposes ${text}`);
    const process = leader.process;
    metadata.propose(record).then(() => {
      this.#reconfigurations++;
      if (process.alive) this.#trace(`node ${leader.id} applied ${text}`);
    }, (error) => {
      if (process.alive) this.#trace(`node ${leader.id} refused ${text}: ${describeError(error)}`);
      if (!(error instanceof BrokerError && error.kind === "badRequest")) again();
    });
  }

  /**
   * A change the cluster's state allows (5 nodes): move one copy of a user partition to a
   * member that does not hold it, remove a member (its copies placed on the others in the same
   * record), or add a removed member again. At most two removals are proposed in a run, so at
   * least 3 members stay active whatever proposals race: fewer than 3 voters would make one
   * copy in repair mode after a torn write a majority, which only an operator's force-recover
   * ends (a documented limit, not something the simulator should trip over).
   */
  #nextRecord(state: ClusterState, random: Prng): ClusterRecord | undefined {
    const active = state.activeIds();
    const leaving = state.members().filter((member) => member.leaving).map((member) => member.id);
    const userGroups = this.#groups().filter((group) => splitGroup(group).topic === TOPIC);
    const roll = random.float();
    if (leaving.length > 0 && roll < 0.3) {
      const id = random.pick(leaving);
      return { kind: "add", id, peer: `sim${id}:${id}` };
    }
    if (this.#removals < REMOVALS_MAX && active.length > 3 && roll < 0.55) {
      this.#removals++;
      const id = random.pick(active);
      const others = active.filter((other) => other !== id);
      const groups: Record<string, number[]> = {};
      for (const group of userGroups) {
        const { topic, partition } = splitGroup(group);
        const copies = state.replicasOf(topic, partition);
        if (!copies.includes(id)) continue;
        const free = others.filter((other) => !copies.includes(other));
        const kept = copies.filter((copy) => copy !== id);
        groups[group] = free.length > 0 ? [...kept, random.pick(free)] : kept;
      }
      return { kind: "remove", id, groups };
    }
    const group = random.pick(userGroups);
    const { topic, partition } = splitGroup(group);
    const copies = state.replicasOf(topic, partition);
    const free = active.filter((id) => !copies.includes(id));
    if (free.length === 0) return undefined;
    const out = random.pick(copies);
    const copiesAfter = [...copies.filter((id) => id !== out), random.pick(free)];
    return { kind: "place", groups: { [group]: copiesAfter } };
  }

  /** The node whose copy of the metadata group leads (up and running), if one does. */
  #metadataLeader(): SimNode | undefined {
    for (const node of this.#nodes.values()) {
      if (!node.up || node.process.paused) continue;
      if (node.cluster?.replicaNamed(CLUSTER_GROUP)?.isLeader) return node;
    }
    return undefined;
  }

  #resume(node: SimNode, process: NodeTime): void {
    if (node.process !== process || !process.paused) return;
    this.#trace(`node ${node.id} resumes`);
    process.resume();
  }

  /** The fault's node, or a partition's leader when the fault targets one. */
  #target(fault: DriverFault): SimNode {
    if (fault.targetLeader) {
      const groups = this.#groups();
      const group = groups[fault.salt % groups.length];
      for (const node of this.#nodes.values()) {
        const replica = node.cluster?.replicaNamed(group);
        if (node.up && replica?.isLeader) return node;
      }
    }
    return this.#node(fault.node);
  }

  // -------------------------------------------------------------------------------------------
  // Clients.

  #onClient(client: SimClient): void {
    // After heal each client needs one put through; then it stops, so the cluster can go quiet.
    if (client.waiting !== 0 || this.#done || client.okAfterHeal > 0) return;
    const group = client.batch?.group ?? this.#random.pick(this.#written());
    const { topic, partition } = splitGroup(group);
    const holders = this.#holders(group);
    if (!holders.includes(client.guess)) client.guess = this.#random.pick(holders);
    const node = this.#node(client.guess);
    const cluster = node.up && !node.process.paused ? node.cluster : undefined;
    if (!cluster) {
      // Refused, or no answer: try another node soon.
      client.guess = this.#random.pick(holders);
      return this.#clientAgain(client, this.#random.int(50, 300));
    }
    const log = cluster.get(topic, partition);
    if (!log) {
      void cluster.open(topic, partition).catch(() => {});
      client.guess = this.#random.pick(holders);
      return this.#clientAgain(client, this.#random.int(20, 200));
    }
    if (!log.writer.writable) {
      const hint = cluster.leaderNodeOf(topic, partition);
      client.guess = hint !== undefined && hint !== node.id ? hint : this.#random.pick(holders);
      return this.#clientAgain(client, this.#random.int(20, 150));
    }
    const batchShare = this.#options.batchShare ?? BATCH_SHARE;
    if (!client.batch && topic === TOPIC && this.#random.chance(batchShare)) {
      client.batch = { group, bytes: this.#batch(client, group) };
    }
    const put = this.#nextPut++;
    client.waiting = put;
    const healed = this.#healed;
    const answered = (result: { ok: true; offset: number } | { ok: false }) => {
      if (client.waiting !== put) return;
      client.waiting = 0;
      if (result.ok) {
        if (healed) client.okAfterHeal++;
        this.#clientAgain(client, this.#random.int(1, 60));
      } else {
        client.guess = this.#random.pick(holders);
        this.#clientAgain(client, this.#random.int(10, 100));
      }
    };
    const batch = client.batch;
    if (batch) {
      // From the log's start: the batch may have landed, whole or in part, anywhere in it.
      log.appendMissing(batch.bytes, 0, (result) => {
        if (result.ok && client.batch === batch) client.batch = undefined;
        answered(result);
      });
    } else {
      const record = this.#record(client, put);
      const bytes = new Uint8Array(RECORD_HEADER_BYTES + record.data.length);
      writeRecord(bytes, 0, record);
      log.appendRecord(record, (result) => {
        if (result.ok) this.#check(() => this.#checker.onAck(group, result.offset, bytes));
        answered(result);
      });
    }
    this.#time.after(CLIENT_TIMEOUT_MS, () => {
      if (client.waiting !== put) return;
      // No answer in time: the put's fate is unknown; go on with the next one elsewhere.
      client.waiting = 0;
      client.guess = this.#random.pick(holders);
      this.#clientAgain(client, 1);
    });
  }

  #record(client: SimClient, put: number): RecordInput {
    const prefix = new TextEncoder().encode(`c${client.id}:${client.sequence++}:`);
    const data = new Uint8Array(prefix.length + this.#random.int(4, 120));
    data.set(prefix);
    for (let index = prefix.length; index < data.length; index++) {
      data[index] = this.#random.nextU32() & 0xff;
    }
    return { id: BigInt(put), flag: 0, data };
  }

  /** A new atomic batch of 2-4 records with fresh ids, made known to the checker. */
  #batch(client: SimClient, group: string): Uint8Array {
    const records: Uint8Array[] = [];
    const count = this.#random.int(2, 5);
    for (let index = 0; index < count; index++) {
      const record = this.#record(client, this.#nextPut++);
      const bytes = new Uint8Array(RECORD_HEADER_BYTES + record.data.length);
      writeRecord(bytes, 0, record);
      records.push(bytes);
    }
    const batch = concatBytes(records);
    this.#checker.onBatch(group, batch);
    return batch;
  }

  #clientAgain(client: SimClient, ms: number): void {
    this.#time.after(ms, () => this.#onClient(client));
  }

  // -------------------------------------------------------------------------------------------
  // Checks, heal and liveness.

  #checkReaders(): void {
    for (const node of this.#nodes.values()) {
      const cluster = node.cluster;
      if (!cluster || !node.up || node.process.paused) continue;
      for (const entry of cluster.list()) {
        const group = `${entry.topic}-${entry.partition}`;
        this.#check(() => this.#checker.checkReadable(node.id, group, entry.log));
      }
    }
  }

  #onHeal(): void {
    this.#healed = true;
    this.#trace("heal: network whole and calm, every node up");
    this.#network.healAll();
    const weather = this.#network.weather;
    weather.dropRate =
      weather.dupRate =
      weather.reorderRate =
      weather.tailRate =
        0;
    for (const node of this.#nodes.values()) {
      if (node.process.paused) this.#resume(node, node.process);
      // A node still stopping gracefully restarts when its stop completes.
      if (!node.up) this.#restart(node);
    }
    this.#everyMs(SETTLE_CHECK_MS, () => this.#onSettleCheck());
  }

  #onSettleCheck(): void {
    if (this.#done || this.#unsettled() !== "") return;
    if (!this.#clients.every((client) => client.okAfterHeal > 0)) return;
    this.#done = true;
  }

  /** Why the cluster has not settled ("" once it has). */
  #unsettled(): string {
    const problems: string[] = [];
    if (!this.#metadataLeader()?.cluster?.metadata?.state.initialized) {
      problems.push(`${CLUSTER_GROUP} has no leader`);
    }
    for (const group of this.#groups()) {
      const holders = this.#holders(group);
      const copies = holders.map((id) => {
        const node = this.#node(id);
        return { id, replica: node.up ? node.cluster?.replicaNamed(group) : undefined };
      });
      const leaders = copies.filter((copy) => copy.replica?.isLeader);
      if (copies.some((copy) => !copy.replica) || leaders.length !== 1) {
        const roles = copies.map((copy) => `${copy.id}:${copy.replica?.role ?? "down"}`);
        problems.push(`${group} ${roles.join(",")}`);
        continue;
      }
      const leader = leaders[0].replica!;
      const status = leader.status();
      const behind = copies.filter((copy) =>
        copy.replica!.leaderId !== leaders[0].id || copy.replica!.term !== leader.term ||
        copy.replica!.commitOffset !== leader.commitOffset
      );
      if (status.commit.epoch !== status.term || leader.commitOffset < leader.log.writtenEnd) {
        problems.push(`${group} leader ${leaders[0].id} has not committed its log`);
      } else if (!sameMembers(leader.voters, holders)) {
        problems.push(`${group} voters ${leader.voters.join(",")}, placed on ${holders.join(",")}`);
      } else if (behind.length > 0) {
        problems.push(`${group} behind: ${behind.map((copy) => copy.id).join(",")}`);
      }
    }
    problems.push(...this.#leftovers());
    const clients = this.#clients.map((client) => `${client.id}:${client.okAfterHeal}`);
    if (problems.length === 0 && this.#clients.every((client) => client.okAfterHeal > 0)) {
      return "";
    }
    return `${problems.join("; ")}; puts ok after heal by client ${clients.join(" ")}`;
  }

  /**
   * Copies a node still holds (open or only on its disk) of user partitions placed elsewhere:
   * once the groups settled without them, each must be gone (a removed member's or a moved
   * group's old copy left behind would be stale data for ever). The broker's own logs stay with
   * a node until it stops (ClusterNode's #dropReplica).
   */
  #leftovers(): string[] {
    const out: string[] = [];
    for (const group of this.#groups().filter((name) => splitGroup(name).topic === TOPIC)) {
      const holders = this.#holders(group);
      for (const node of this.#nodes.values()) {
        if (!node.up || holders.includes(node.id)) continue;
        const open = node.cluster?.replicaNamed(group) !== undefined;
        if (open || node.disk.memory.isDirectory(joinPath(DATA, group))) {
          out.push(`node ${node.id} keeps a copy of ${group} (placed on ${holders.join(",")})`);
        }
      }
    }
    return out;
  }

  /** S5 and S9 on every copy once settled, and S9 on what the disks hold durably. */
  #finalCheck(): void {
    for (const group of this.#groups()) {
      for (const id of this.#holders(group)) {
        const entry = this.#node(id).cluster!.list().find((each) =>
          `${each.topic}-${each.partition}` === group
        )!;
        this.#checker.checkFinal(id, group, entry.log);
      }
    }
    this.#checker.checkAckedDurable();
  }

  // -------------------------------------------------------------------------------------------
  // Plumbing.

  /**
   * The groups clients write: the user topic's partitions and the transaction journal's (to the
   * driver every group is a byte log; `__meta-0` is left to the node, which may keep its own
   * records there).
   */
  #written(): string[] {
    return this.#groups().filter((group) => group !== META_GROUP);
  }

  #groups(): string[] {
    return [
      ...INTERNAL_TOPICS.map((topic) => `${topic}-0`),
      ...Array.from({ length: this.#partitions }, (_, partition) => `${TOPIC}-${partition}`),
    ];
  }

  /**
   * The nodes `group` is placed on, as the metadata group's leader has it (the last leader's
   * word while none leads; the initial placement before the cluster's state is known).
   */
  #holders(group: string): NodeId[] {
    const state = this.#metadataLeader()?.cluster?.metadata?.state;
    if (state?.initialized) this.#lastState = state;
    const known = this.#lastState;
    if (!known) return this.#initialHolders(group);
    const { topic, partition } = splitGroup(group);
    return known.replicasOf(topic, partition).sort((a, b) => a - b);
  }

  /** Where `group` lives before any membership change: every seed member's rendezvous choice. */
  #initialHolders(group: string): NodeId[] {
    const { topic, partition } = splitGroup(group);
    return replicasOf(topic, partition, this.#ids, this.#replicas);
  }

  #everyMs(ms: number, task: () => void): void {
    const beat = () => {
      if (this.#done) return;
      task();
      this.#time.after(ms, beat);
    };
    this.#time.after(ms, beat);
  }

  /** Runs a check from inside the driver's code: a violation stops the run, not the driver. */
  #check(check: () => void): void {
    if (this.#failure !== undefined) return;
    try {
      check();
    } catch (error) {
      this.#failure = error;
    }
  }

  #node(id: NodeId): SimNode {
    const node = this.#nodes.get(id);
    if (!node) throw new Error(`no node ${id}`);
    return node;
  }

  #trace(line: string): void {
    const text = `${Math.round(this.#time.now)}ms ${line}`;
    this.#recent.push(text);
    if (this.#recent.length > RECENT_LINES) this.#recent.shift();
    this.#options.trace?.(text);
  }

  #describe(error: unknown): SimFailure {
    const atTick = Math.round(this.#time.now);
    if (error instanceof SafetyViolation) {
      return { kind: "safety", check: error.check, message: error.message, atTick };
    }
    if (error instanceof LivenessFailure) {
      return { kind: "liveness", check: "liveness", message: error.message, atTick };
    }
    const message = error instanceof Error
      ? `${describeError(error)}\n${error.stack ?? ""}`
      : String(error);
    const check = error instanceof AssertionError ? "assertion" : "crash";
    return { kind: "assertion", check, message, atTick };
  }
}

function sameMembers(a: readonly NodeId[], b: readonly NodeId[]): boolean {
  return a.length === b.length && a.every((id) => b.includes(id));
}

function splitGroup(group: string): { topic: string; partition: number } {
  const dash = group.lastIndexOf("-");
  return { topic: group.slice(0, dash), partition: Number(group.slice(dash + 1)) };
}

function nodeConfig(id: NodeId, peers: string, replicas: number): Config {
  return buildConfig({
    overrides: {
      dataPath: DATA,
      nodeId: String(id),
      peers,
      replicas: String(replicas),
      raftHeartbeatMs: String(HEARTBEAT_MS),
      raftElectionMs: ELECTION_MS,
      raftCheckQuorumMs: String(CHECK_QUORUM_MS),
      // Small segments, so appends roll files (and their directory syncs) often.
      maxSegmentSize: "4096",
      metaSegmentSize: "4096",
      httpEnabled: "false",
    },
  });
}

/** Removals a run proposes at most (5 nodes; see `#nextRecord`). */
const REMOVALS_MAX = 2;

/** Faults begin once a first cluster could have formed (admission, then an election). */
const FAULTS_FROM_MS = 800;

function makeFaults(random: Prng, nodeCount: number, durationMs: number): DriverFault[] {
  const intensity = 0.5 + random.float();
  const count = Math.round(((durationMs - FAULTS_FROM_MS) / 1000) * 1.5 * intensity);
  const faults: DriverFault[] = [];
  for (let index = 0; index < count; index++) {
    const roll = random.float();
    // Membership changes need a node that does not hold everything: 5 nodes, replicas=3.
    const kind: DriverFaultKind = roll < 0.25
      ? "crash"
      : roll < 0.29
      ? "powerCut"
      : roll < 0.37
      ? "stop"
      : roll < 0.49
      ? "pause"
      : roll < 0.65 || nodeCount === 3
      ? "partition"
      : "membership";
    const lastsMs = kind === "partition" ? random.int(300, 2500) : random.int(100, 1500);
    const shapes: DriverFault["shape"][] = ["split", "oneWay", "isolate"];
    if (nodeCount === 5) shapes.push("bridge");
    faults.push({
      index,
      atMs: random.int(FAULTS_FROM_MS, durationMs),
      kind,
      node: random.int(1, nodeCount + 1),
      durationMs: lastsMs,
      targetLeader: random.chance(0.5),
      shape: random.pick(shapes),
      mode: random.chance(0.5) ? "blackhole" : "reset",
      salt: random.nextU32(),
    });
  }
  return faults.sort((a, b) => a.atMs - b.atMs || a.index - b.index);
}

/** The directed links a partition fault blocks. */
function partitionLinks(fault: DriverFault, node: NodeId, ids: readonly NodeId[]): Set<string> {
  const random = new Prng(fault.salt);
  const links = new Set<string>();
  const block = (from: NodeId, to: NodeId) => links.add(linkKey(from, to));
  const both = (a: NodeId, b: NodeId) => (block(a, b), block(b, a));
  if (fault.shape === "isolate") {
    for (const other of ids) if (other !== node) both(node, other);
  } else if (fault.shape === "oneWay") {
    const outbound = random.chance(0.5);
    for (const other of ids) {
      if (other === node || !random.chance(0.6)) continue;
      if (outbound) block(node, other);
      else block(other, node);
    }
  } else if (fault.shape === "bridge") {
    const rest = ids.filter((id) => id !== node);
    const half = rest.filter(() => random.chance(0.5));
    for (const a of half) for (const b of rest) if (!half.includes(b)) both(a, b);
  } else {
    const side = ids.filter(() => random.chance(0.5));
    for (const a of side) for (const b of ids) if (!side.includes(b)) both(a, b);
  }
  return links;
}

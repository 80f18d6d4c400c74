/**
 * @module Cluster launcher: N `dist/metaq serve` processes on 127.0.0.1 with the reliability
 * plan's port plan, every byte between two nodes crossing a LinkProxy and all client traffic
 * crossing a client-side proxy, each node with its own data directory under the run's directory.
 * It records the PID of every process it starts and only ever signals those; teardown always
 * runs (also from a process exit hook). Nodes are started, killed (any signal), paused, resumed,
 * stopped gracefully, restarted, and power-cut (power_loss.ts).
 *
 * The command line is the contract with the broker (tests/chaos/README.md):
 *
 * ```text
 * metaq serve --node-id N --port P --peer-port Q --data DIR
 *   --peers 1=127.0.0.1:q1,2=127.0.0.1:q2,3=127.0.0.1:q3  (for node i, peer j's address is the proxy i→j)
 *   [--replicas R] [--ack quorum|leader] [--fsync always|interval:MS] --partitions K --no-http
 *   --ports-file F --raft-heartbeat-ms 100 --raft-election-ms 800-1600 --raft-check-quorum-ms 700
 *   [--config server.ini]                                   (segment size, when asked for)
 * env METAQ_TEST_TRACE=<node dir>/trace.jsonl METAQ_TEST_SYNC_JOURNAL=<node dir>/sync-journal.jsonl
 *     METAQ_TEST_BOOT_ID_FILE=<node dir>/boot_id METAQ_TEST_FSYNC_CONTROL=<node dir>/fsync-control
 *     METAQ_TEST_CLOCK_FILE=<node dir>/clock-offset          (both absent unless a scenario writes them)
 * ```
 *
 * With `replicated: false` the nodes are plain single brokers (no peer flags, no link proxies):
 * what exists before the cluster lands, enough to exercise everything but replication.
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import process from "node:process";
import { LinkProxy } from "./link_proxy.ts";
import { Network } from "./network.ts";
import { type PortPlan, type PortReservation, reservePorts } from "./ports.ts";
import {
  applyPowerLoss,
  describePlan,
  type FileSnapshot,
  parseJournal,
  planPowerLoss,
  snapshotFiles,
} from "./power_loss.ts";
import type { Random } from "./random.ts";

export const REPO_ROOT = path.resolve(import.meta.dirname ?? ".", "../..");
export const METAQ_BINARY = process.env.METAQ_BINARY ?? path.join(REPO_ROOT, "dist/metaq");

/** Test-profile Raft timing (replication.md 5.5). */
export const TEST_TIMING_ARGS = [
  "--raft-heartbeat-ms",
  "100",
  "--raft-election-ms",
  "800-1600",
  "--raft-check-quorum-ms",
  "700",
] as const;
/** The longest election timeout of the test profile. */
export const ELECTION_TIMEOUT_MAX_MS = 1600;

const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;
const POLL_MS = 20;
const ASSERTION_PATTERN = /AssertionError|Assertion failed|Unreachable:|panic:|Segmentation fault/;

export interface ClusterOptions {
  /** The run directory; node directories are created inside it. */
  readonly dir: string;
  readonly nodeCount: number;
  /** false: plain single brokers without --peers (before the cluster exists). */
  readonly replicated: boolean;
  readonly partitions: number;
  readonly replicas?: number;
  readonly ack?: "quorum" | "leader";
  readonly fsync?: "always" | `interval:${number}`;
  /**
   * Nodes that are not among the seeds: started with `--join` (through their link proxy to the
   * lowest seed) and left out of every `--peers`; a scenario makes them members (T19).
   */
  readonly joining?: readonly number[];
  /** Segment roll size, written to a server.ini passed with --config. */
  readonly segmentBytes?: number;
  readonly extraArgs?: readonly string[];
  readonly binary?: string;
  readonly random: Random;
  /** One line per harness action (the run log). */
  readonly log: (line: string) => void;
}

export type NodeState = "stopped" | "running" | "paused";

export interface ExitRecord {
  readonly node: number;
  readonly incarnation: number;
  readonly t: number;
  readonly code: number | null;
  readonly signal: string | null;
  /** The harness caused it (a kill, or a stop that ended cleanly). */
  readonly expected: boolean;
  readonly note?: string;
}

/** Every child this process started; killed on process exit whatever happens. */
const LIVE_CHILDREN = new Set<ChildProcess>();
let exitHookInstalled = false;

function track(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const live of LIVE_CHILDREN) live.kill("SIGKILL");
    });
  }
  LIVE_CHILDREN.add(child);
  child.once("exit", () => LIVE_CHILDREN.delete(child));
}

export class ClusterNode {
  readonly id: number;
  readonly dir: string;
  readonly dataDir: string;
  readonly tracePath: string;
  readonly journalPath: string;
  readonly bootIdPath: string;
  /** Test-build fault files, absent until a scenario writes them (node_faults.ts). */
  readonly fsyncControlPath: string;
  readonly clockOffsetPath: string;
  readonly logPath: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly clientProxyPort: number;
  state: NodeState = "stopped";
  incarnation = 0;
  /** The data directory when nothing in it was unsynced (first start, last power cut). */
  baseline: FileSnapshot = new Map();
  maxRssBytes = 0;
  child: ChildProcess | undefined;
  exited: Promise<ExitRecord> | undefined;
  expectExit = false;
  journalArchives = 0;
  /**
   * Rewrites this node's `metaq serve` arguments from its next start on (a node that joins a
   * running cluster with `--join` instead of `--peers`, T19); undefined: as the cluster says.
   */
  argsOverride: ((args: string[]) => string[]) | undefined;

  constructor(id: number, runDir: string, plan: PortPlan) {
    this.id = id;
    this.dir = path.join(runDir, `n${id}`);
    this.dataDir = path.join(this.dir, "data");
    this.tracePath = path.join(this.dir, "trace.jsonl");
    this.journalPath = path.join(this.dir, "sync-journal.jsonl");
    this.bootIdPath = path.join(this.dir, "boot_id");
    this.fsyncControlPath = path.join(this.dir, "fsync-control");
    this.clockOffsetPath = path.join(this.dir, "clock-offset");
    this.logPath = path.join(this.dir, "node.log");
    this.clientPort = plan.clientPort(id);
    this.peerPort = plan.peerPort(id);
    this.clientProxyPort = plan.clientProxyPort(id);
  }

  get pid(): number | undefined {
    return this.state === "stopped" ? undefined : this.child?.pid;
  }
}

export class Cluster implements AsyncDisposable {
  readonly options: ClusterOptions;
  readonly plan: PortPlan;
  readonly nodes: readonly ClusterNode[];
  readonly network: Network;
  readonly exits: ExitRecord[] = [];
  readonly #reservation: PortReservation;
  readonly #proxies: LinkProxy[];
  #tornDown = false;
  #halted = false;

  private constructor(
    options: ClusterOptions,
    reservation: PortReservation,
    proxies: { links: Map<string, LinkProxy>; clients: Map<number, LinkProxy> },
  ) {
    this.options = options;
    this.#reservation = reservation;
    this.plan = reservation.plan;
    this.nodes = Array.from(
      { length: options.nodeCount },
      (_, i) => new ClusterNode(i + 1, options.dir, this.plan),
    );
    this.#proxies = [...proxies.links.values(), ...proxies.clients.values()];
    this.network = new Network({
      nodes: this.nodes.map((node) => node.id),
      links: proxies.links,
      clientProxies: proxies.clients,
    });
  }

  /** Reserves ports, opens the proxies and starts every node; tears down on any failure. */
  static async start(options: ClusterOptions): Promise<Cluster> {
    if (options.nodeCount < 1) throw new RangeError("Cannot start a cluster of no nodes");
    const reservation = await reservePorts(options.nodeCount, options.random.fork("ports"));
    const links = new Map<string, LinkProxy>();
    const clients = new Map<number, LinkProxy>();
    let cluster: Cluster | undefined;
    try {
      const plan = reservation.plan;
      const random = options.random.fork("proxies");
      for (let i = 1; i <= options.nodeCount; i++) {
        clients.set(
          i,
          await LinkProxy.listen({
            name: `client ${i}`,
            port: plan.clientProxyPort(i),
            targetPort: plan.clientPort(i),
            random,
          }),
        );
        if (!options.replicated) continue;
        for (let j = 1; j <= options.nodeCount; j++) {
          if (i === j) continue;
          const name = Network.key(i, j);
          links.set(
            name,
            await LinkProxy.listen({
              name,
              port: plan.linkPort(i, j),
              targetPort: plan.peerPort(j),
              random,
            }),
          );
        }
      }
      cluster = new Cluster(options, reservation, { links, clients });
      for (const node of cluster.nodes) cluster.#prepare(node);
      await Promise.all(cluster.nodes.map((node) => cluster!.start(node.id)));
      return cluster;
    } catch (error) {
      if (cluster) await cluster.teardown();
      else {
        for (const proxy of [...links.values(), ...clients.values()]) await proxy.close();
        reservation.release();
      }
      throw error;
    }
  }

  node(id: number): ClusterNode {
    const node = this.nodes[id - 1];
    if (!node) throw new RangeError(`Cannot find node ${id} in a cluster of ${this.nodes.length}`);
    return node;
  }

  /** Where clients reach node `id`: its client-side proxy. */
  address(id: number): string {
    return `127.0.0.1:${this.node(id).clientProxyPort}`;
  }

  /** The node behind an address a broker reported (its own client port) or a proxy address. */
  nodeIdOf(address: string): number | undefined {
    const port = Number(address.slice(address.lastIndexOf(":") + 1));
    return this.nodes.find((node) => node.clientPort === port || node.clientProxyPort === port)?.id;
  }

  running(): number[] {
    return this.nodes.filter((node) => node.state === "running").map((node) => node.id);
  }

  /** The `metaq serve` arguments of node `id`. */
  args(id: number, portsFile: string): string[] {
    const node = this.node(id);
    const o = this.options;
    const args = ["serve", "--port", String(node.clientPort), "--data", node.dataDir];
    if (o.replicated) {
      const seeds = this.nodes.filter((peer) => !o.joining?.includes(peer.id));
      const peers = seeds.map((peer) =>
        `${peer.id}=127.0.0.1:${peer.id === id ? peer.peerPort : this.plan.linkPort(id, peer.id)}`
      );
      args.push("--node-id", String(id), "--peer-port", String(node.peerPort));
      if (o.joining?.includes(id)) {
        args.push("--join", `127.0.0.1:${this.plan.linkPort(id, seeds[0].id)}`);
      } else args.push("--peers", peers.join(","));
      if (o.replicas !== undefined) args.push("--replicas", String(o.replicas));
      if (o.ack !== undefined) args.push("--ack", o.ack);
      if (o.fsync !== undefined) args.push("--fsync", o.fsync);
    }
    args.push("--partitions", String(o.partitions), "--no-http", "--ports-file", portsFile);
    if (o.replicated) args.push(...TEST_TIMING_ARGS);
    if (o.segmentBytes !== undefined) args.push("--config", path.join(node.dir, "server.ini"));
    args.push(...(o.extraArgs ?? []));
    return node.argsOverride ? node.argsOverride(args) : args;
  }

  /** Starts a stopped node and waits until it listens (its ports file appears). */
  async start(id: number): Promise<void> {
    const node = this.node(id);
    if (this.#halted) {
      throw new Error(`Cannot start node ${id}: the cluster was halted by the watchdog`);
    }
    if (node.state !== "stopped") throw new Error(`Cannot start node ${id}: it is ${node.state}`);
    const portsFile = path.join(node.dir, `ports-${node.incarnation + 1}.json`);
    fs.rmSync(portsFile, { force: true });
    const logFd = fs.openSync(node.logPath, "a");
    fs.writeSync(
      logFd,
      `--- harness: start #${node.incarnation + 1} at ${new Date().toISOString()}\n`,
    );
    const child = spawn(this.options.binary ?? METAQ_BINARY, this.args(id, portsFile), {
      stdio: ["ignore", logFd, logFd],
      env: {
        ...process.env,
        METAQ_TEST_TRACE: node.tracePath,
        METAQ_TEST_SYNC_JOURNAL: node.journalPath,
        METAQ_TEST_BOOT_ID_FILE: node.bootIdPath,
        METAQ_TEST_FSYNC_CONTROL: node.fsyncControlPath,
        METAQ_TEST_CLOCK_FILE: node.clockOffsetPath,
      },
    });
    fs.closeSync(logFd);
    track(child);
    node.child = child;
    node.incarnation += 1;
    node.state = "running";
    node.expectExit = false;
    const incarnation = node.incarnation;
    node.exited = new Promise((resolve) => {
      let done = false;
      const finish = (code: number | null, signal: string | null, note?: string) => {
        if (done) return;
        done = true;
        const record: ExitRecord = {
          node: id,
          incarnation,
          t: Date.now(),
          code,
          signal,
          expected: node.expectExit,
          note,
        };
        if (node.child === child) node.state = "stopped";
        this.exits.push(record);
        if (!record.expected) {
          this.options.log(
            `node ${id} exited on its own: code ${code} signal ${signal} ${note ?? ""}`,
          );
        }
        resolve(record);
      };
      child.once("exit", (code, signal) => finish(code, signal));
      child.once("error", (error) => finish(null, null, `spawn failed: ${error.message}`));
    });
    this.options.log(`node ${id} start #${incarnation} pid ${child.pid}`);
    await this.#waitListening(node, portsFile);
  }

  /** Sends `signal` to node `id` (SIGKILL by default) and waits for it to exit. */
  async kill(
    id: number,
    signal: "SIGKILL" | "SIGTERM" | "SIGINT" = "SIGKILL",
  ): Promise<ExitRecord | undefined> {
    const node = this.node(id);
    if (node.state === "stopped" || !node.child) return undefined;
    node.expectExit = true;
    this.options.log(`node ${id} ${signal}`);
    node.child.kill(signal);
    if (signal !== "SIGKILL" && node.state === "paused") node.child.kill("SIGCONT");
    return await node.exited;
  }

  /** Graceful stop: SIGTERM, then SIGKILL after `timeoutMs`. A stop that fails is unexpected. */
  async stop(id: number, timeoutMs = STOP_TIMEOUT_MS): Promise<ExitRecord | undefined> {
    const node = this.node(id);
    if (node.state === "stopped" || !node.child) return undefined;
    node.expectExit = true;
    this.options.log(`node ${id} SIGTERM (graceful stop)`);
    if (node.state === "paused") node.child.kill("SIGCONT");
    node.child.kill("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((
      resolve,
    ) => (timer = setTimeout(() => resolve("late"), timeoutMs)));
    const first = await Promise.race([node.exited!, late]);
    clearTimeout(timer);
    if (first !== "late" && first.code === 0) return first;
    if (first === "late") node.child.kill("SIGKILL");
    const record = first === "late" ? await node.exited! : first;
    const flagged: ExitRecord = {
      ...record,
      expected: false,
      note: first === "late"
        ? `did not stop within ${timeoutMs} ms of SIGTERM`
        : "unclean exit after SIGTERM",
    };
    this.exits[this.exits.indexOf(record)] = flagged;
    this.options.log(`node ${id} ${flagged.note}`);
    return flagged;
  }

  pause(id: number): void {
    const node = this.node(id);
    if (node.state !== "running" || !node.child) return;
    node.child.kill("SIGSTOP");
    node.state = "paused";
    this.options.log(`node ${id} SIGSTOP`);
  }

  resume(id: number): void {
    const node = this.node(id);
    if (node.state !== "paused" || !node.child) return;
    node.child.kill("SIGCONT");
    node.state = "running";
    this.options.log(`node ${id} SIGCONT`);
  }

  /**
   * Power cut: SIGKILL, then the data directory loses what a power failure may lose (plan 1.3),
   * the simulated boot id changes, and the node stays stopped. Throws when the broker wrote no
   * sync journal although it wrote data: without it the emulation would be meaningless.
   */
  async powerCut(id: number, random: Random): Promise<string[]> {
    const node = this.node(id);
    await this.kill(id, "SIGKILL");
    const current = snapshotFiles(node.dataDir);
    const hasData = [...current].some(([file, facts]) =>
      !facts.directory && !node.baseline.has(file)
    );
    if (!fs.existsSync(node.journalPath) && hasData) {
      throw new Error(
        `Cannot emulate a power cut on node ${id}: no sync journal at ${node.journalPath} (METAQ_TEST_SYNC_JOURNAL contract)`,
      );
    }
    const journal = fs.existsSync(node.journalPath)
      ? fs.readFileSync(node.journalPath, "utf8")
      : "";
    const { ops, problems } = parseJournal(journal);
    const plan = planPowerLoss({ journal: ops, baseline: node.baseline, current, random });
    applyPowerLoss(plan);
    fs.writeFileSync(node.bootIdPath, bootId(random));
    this.#archiveJournal(node);
    node.baseline = snapshotFiles(node.dataDir);
    const lines = [...problems.map((problem) => `journal: ${problem}`), ...describePlan(plan)];
    this.options.log(`node ${id} power cut: ${lines.length} change(s)`);
    for (const line of lines) this.options.log(`  ${line}`);
    return lines;
  }

  /** After the harness itself rewrote a stopped node's files: what is there now counts as durable. */
  resetDurability(id: number): void {
    const node = this.node(id);
    this.#archiveJournal(node);
    node.baseline = snapshotFiles(node.dataDir);
  }

  /** Reads VmRSS of every live node and keeps each node's maximum. */
  sampleRss(): void {
    for (const node of this.nodes) {
      if (node.pid === undefined) continue;
      try {
        const status = fs.readFileSync(`/proc/${node.pid}/status`, "utf8");
        const kib = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0);
        node.maxRssBytes = Math.max(node.maxRssBytes, kib * 1024);
      } catch {
        // exited between the check and the read
      }
    }
  }

  /** Lines of the node logs that report failed assertions or crashes (I13). */
  assertionLines(): { node: number; line: string }[] {
    const out: { node: number; line: string }[] = [];
    for (const node of this.nodes) {
      if (!fs.existsSync(node.logPath)) continue;
      for (const line of fs.readFileSync(node.logPath, "utf8").split("\n")) {
        if (ASSERTION_PATTERN.test(line)) out.push({ node: node.id, line: line.slice(0, 500) });
      }
    }
    return out;
  }

  /** SIGKILLs every node this cluster started, closes the proxies, frees the ports. Idempotent. */
  async teardown(): Promise<void> {
    if (this.#tornDown) return;
    this.#tornDown = true;
    await Promise.all(
      this.nodes.map((node) => this.kill(node.id, "SIGKILL").catch(() => undefined)),
    );
    for (const proxy of this.#proxies) await proxy.close();
    this.#reservation.release();
  }

  /** Kills every node at once without waiting and refuses later starts: the watchdog's resort. */
  killAllNow(): void {
    this.#halted = true;
    for (const node of this.nodes) {
      if (node.state === "stopped" || !node.child) continue;
      node.expectExit = true;
      node.child.kill("SIGKILL");
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.teardown();
  }

  #prepare(node: ClusterNode): void {
    fs.mkdirSync(node.dataDir, { recursive: true });
    fs.writeFileSync(node.bootIdPath, bootId(this.options.random));
    if (this.options.segmentBytes !== undefined) {
      fs.writeFileSync(
        path.join(node.dir, "server.ini"),
        `[system]\nmaxSegmentSize=${this.options.segmentBytes}\n`,
      );
    }
    node.baseline = snapshotFiles(node.dataDir);
  }

  #archiveJournal(node: ClusterNode): void {
    if (!fs.existsSync(node.journalPath)) return;
    node.journalArchives += 1;
    fs.renameSync(node.journalPath, `${node.journalPath}.${node.journalArchives}`);
  }

  async #waitListening(node: ClusterNode, portsFile: string): Promise<void> {
    const deadline = performance.now() + START_TIMEOUT_MS;
    let exited: ExitRecord | undefined;
    void node.exited!.then((record) => (exited = record));
    while (performance.now() < deadline) {
      if (exited) {
        throw new Error(
          `Node ${node.id} exited during start-up (code ${exited.code}): ${tail(node.logPath)}`,
        );
      }
      if (fs.existsSync(portsFile) && fs.statSync(portsFile).size > 0) return;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    await this.kill(node.id, "SIGKILL");
    throw new Error(
      `Node ${node.id} did not listen within ${START_TIMEOUT_MS} ms: ${tail(node.logPath)}`,
    );
  }
}

/** A boot id in the kernel's format (a random UUID), from the run's seed. */
function bootId(random: Random): string {
  const hex = Array.from(random.bytes(16), (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }\n`;
}

function tail(file: string, bytes = 2000): string {
  if (!fs.existsSync(file)) return "(no log)";
  const text = fs.readFileSync(file, "utf8");
  return text.slice(Math.max(0, text.length - bytes)).trim();
}

/**
 * @module Who leads what, learned the ways the contract offers, best first:
 *
 * 1. `meta <topic>` on any running node: `{"topic","partitions","brokerId","broker",
 *    "leaders":{"<partition>":"host:port"}}` (a plain broker has no `leaders`: it serves all).
 * 2. `metaq cluster status --broker host:port --format json`: per group role/term/leader/commit.
 * 3. Node traces (METAQ_TEST_TRACE): the running node whose latest role event for the group
 *    says leader, with the highest term.
 *
 * Also reads node traces incrementally while the run goes on.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { MetaqClient } from "../../lib/client/client.ts";
import { parseTrace, type TraceEvent } from "./history.ts";
import { type Cluster, METAQ_BINARY } from "./launcher.ts";
import type { Random } from "./random.ts";

const STATUS_TIMEOUT_MS = 3000;
const META_TIMEOUT_MS = 1500;

/** One group's state as one node reports it. */
export interface GroupStatus {
  readonly group: string;
  readonly role?: string;
  readonly term?: number;
  /** Node id of the leader this node believes in. */
  readonly leader?: number;
  readonly commit?: number;
  readonly logEnd?: number;
  readonly repair?: boolean;
}

/**
 * Parses `metaq cluster status --format json` leniently: `{"groups":[{...}]}` or
 * `{"groups":{"<group>":{...}}}`; `leader` as a node id or a `host:port`; `commit` or
 * `commitOffset`; `logEnd` or `end`.
 */
export function parseClusterStatus(
  json: unknown,
  nodeIdOf: (address: string) => number | undefined,
): GroupStatus[] {
  const groups = (json as { groups?: unknown })?.groups;
  const entries: [string | undefined, Record<string, unknown>][] = Array.isArray(groups)
    ? groups.map((entry) => [undefined, entry as Record<string, unknown>])
    : Object.entries((groups ?? {}) as Record<string, Record<string, unknown>>);
  const number = (value: unknown) => (typeof value === "number" ? value : undefined);
  return entries.map(([name, entry]) => {
    const leader = entry.leader;
    return {
      group: String(entry.group ?? name),
      role: typeof entry.role === "string" ? entry.role : undefined,
      term: number(entry.term),
      leader: typeof leader === "number"
        ? leader
        : typeof leader === "string"
        ? nodeIdOf(leader)
        : undefined,
      commit: number(entry.commit ?? entry.commitOffset),
      logEnd: number(entry.logEnd ?? entry.end),
      repair: typeof entry.repair === "boolean" ? entry.repair : undefined,
    };
  });
}

/** Runs `metaq cluster status` against node `id`; undefined when the command fails. */
export function clusterStatus(cluster: Cluster, id: number): Promise<GroupStatus[] | undefined> {
  return new Promise((resolve) => {
    const child = spawn(
      cluster.options.binary ?? METAQ_BINARY,
      ["cluster", "status", "--broker", cluster.address(id), "--format", "json"],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    let out = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), STATUS_TIMEOUT_MS);
    child.stdout!.on("data", (chunk) => (out += chunk));
    child.once("error", () => resolve(undefined));
    child.once("close", (code) => {
      clearTimeout(timer);
      if (code !== 0) return resolve(undefined);
      try {
        resolve(parseClusterStatus(JSON.parse(out), (address) => cluster.nodeIdOf(address)));
      } catch {
        resolve(undefined);
      }
    });
  });
}

/** Follows every node's trace file, returning new events as they are written. */
export class TraceReader {
  readonly #positions = new Map<string, number>();
  readonly #paths: readonly string[];
  readonly events: TraceEvent[] = [];
  readonly problems: string[] = [];
  #partial = new Map<string, string>();

  constructor(paths: readonly string[]) {
    this.#paths = paths;
  }

  /** Reads what was appended since the last call. */
  poll(): TraceEvent[] {
    const fresh: TraceEvent[] = [];
    for (const file of this.#paths) {
      if (!fs.existsSync(file)) continue;
      const size = fs.statSync(file).size;
      const from = this.#positions.get(file) ?? 0;
      if (size <= from) continue;
      const fd = fs.openSync(file, "r");
      const bytes = new Uint8Array(size - from);
      fs.readSync(fd, bytes, 0, bytes.length, from);
      fs.closeSync(fd);
      this.#positions.set(file, size);
      const text = (this.#partial.get(file) ?? "") + new TextDecoder().decode(bytes);
      const cut = text.lastIndexOf("\n") + 1;
      this.#partial.set(file, text.slice(cut));
      const { events, problems } = parseTrace(text.slice(0, cut));
      fresh.push(...events);
      this.problems.push(...problems);
    }
    this.events.push(...fresh);
    return fresh;
  }
}

/** The running node that leads `group` according to the traces, if any. */
export function leaderFromTraces(
  events: readonly TraceEvent[],
  group: string,
  running: readonly number[],
): number | undefined {
  const latest = new Map<number, TraceEvent & { event: "role" }>();
  for (const event of events) {
    if (event.group !== group || event.event !== "role") continue;
    const known = latest.get(event.node);
    if (!known || event.t >= known.t) latest.set(event.node, event);
  }
  let best: { node: number; term: number } | undefined;
  for (const [node, event] of latest) {
    if (event.role !== "leader" || !running.includes(node)) continue;
    if (!best || event.term > best.term) best = { node, term: event.term };
  }
  return best?.node;
}

export class Leaders {
  readonly #cluster: Cluster;
  readonly #topic: string;
  readonly #traces: TraceReader;
  readonly #random: Random;

  constructor(parts: { cluster: Cluster; topic: string; traces: TraceReader; random: Random }) {
    this.#cluster = parts.cluster;
    this.#topic = parts.topic;
    this.#traces = parts.traces;
    this.#random = parts.random;
  }

  /** Partition → leader node id, from `meta` on a running node (empty when none answers). */
  async partitionLeaders(): Promise<Map<number, number>> {
    const running = this.#random.shuffle(this.#cluster.running());
    for (const id of running.slice(0, 2)) {
      const meta = await this.#meta(id);
      if (!meta) continue;
      const out = new Map<number, number>();
      if (!meta.leaders) {
        // A plain broker (no cluster) serves every partition itself.
        for (let p = 0; p < meta.partitions; p++) out.set(p, id);
        return out;
      }
      for (const [partition, address] of Object.entries(meta.leaders)) {
        const leader = this.#cluster.nodeIdOf(address);
        if (leader !== undefined) out.set(Number(partition), leader);
      }
      return out;
    }
    return new Map();
  }

  /** The node leading `group` (`<topic>-<p>` or `meta`) now, if it can be found. */
  async leaderOf(group: string): Promise<number | undefined> {
    const running = this.#cluster.running();
    const prefix = `${this.#topic}-`;
    if (group.startsWith(prefix)) {
      const leader = (await this.partitionLeaders()).get(Number(group.slice(prefix.length)));
      if (leader !== undefined && running.includes(leader)) return leader;
    }
    for (const id of this.#random.shuffle(running).slice(0, 1)) {
      const status = await clusterStatus(this.#cluster, id);
      const leader = status?.find((entry) => entry.group === group)?.leader;
      if (leader !== undefined && running.includes(leader)) return leader;
    }
    this.#traces.poll();
    return leaderFromTraces(this.#traces.events, group, running);
  }

  async #meta(
    id: number,
  ): Promise<{ partitions: number; leaders?: Record<string, string> } | undefined> {
    const client = new MetaqClient({
      brokers: [this.#cluster.address(id)],
      requestTimeoutMs: META_TIMEOUT_MS,
      connectTimeoutMs: META_TIMEOUT_MS,
      reconnectAttemptsMax: 1,
    });
    try {
      const meta = await client.topicMetadata(this.#topic);
      return meta as { partitions: number; leaders?: Record<string, string> };
    } catch {
      return undefined;
    } finally {
      client.close();
    }
  }
}

/**
 * @module Client workloads that write the history the checker judges (reliability plan 1.4):
 *
 * - W1 queue workload: P sequential producers, each sending `"<producer>-<seq>"` one at a time
 *   to its own partition (producer k → partition k mod K), about 300 messages/s in total,
 *   100-500 byte payloads, never resending a value. W1r (`resend: true`) resends the same value
 *   after an indeterminate result.
 * - W2 consumer group: consumers that join, fetch, commit every 100 ms, and get killed.
 * - W3 offset probe: reads every committed offset from a random node every 250 ms.
 *
 * Reply classification for a produce: 200 → ok; 503 → fail (the broker guarantees nothing was
 * appended); anything else, a timeout (2 s) or a connection error after the request may have left
 * → info (indeterminate). A request that provably never left (no connection, or a fresh
 * connection whose `version` check failed) → fail, reason "not sent".
 *
 * Workloads talk to nodes through their client-side proxies and find partition leaders with
 * Leaders; a 503 may name the leader (`host:port` in its text), which is used as a hint.
 */
import * as fs from "node:fs";
import { MetaqClient } from "../../lib/client/client.ts";
import type { BrokerConnection } from "../../lib/client/connection.ts";
import { BrokerError, ConnectionError } from "../../lib/client/errors.ts";
import { crc32 } from "../../lib/crc32.ts";
import { decodeRecords } from "../../lib/protocol/record.ts";
import { MESSAGE_BYTES_LIMIT_MAX, RECORD_HEADER_BYTES } from "../../lib/limits.ts";
import { valueOf } from "./drain.ts";
import type { GroupOps } from "./group_ops.ts";
import type { HistoryOp } from "./history.ts";
import type { Cluster } from "./launcher.ts";
import type { Leaders } from "./leaders.ts";
import type { Random } from "./random.ts";

export const REQUEST_TIMEOUT_MS = 2000;
const CONNECT_TIMEOUT_MS = 1000;
const ROUTER_REFRESH_MIN_MS = 250;
export const BACKOFF_AFTER_FAILURE_MS = 100;
const RESENDS_MAX = 20;
const FETCH_BYTES = 64 * 1024;
const encoder = new TextEncoder();

/** Appends client operations to memory and, in batches, to a JSON-lines file. */
export class HistoryRecorder {
  readonly ops: HistoryOp[] = [];
  readonly #file: string | undefined;
  #pending: string[] = [];
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(file?: string) {
    this.#file = file;
    if (file) this.#timer = setInterval(() => this.flush(), 200);
  }

  record(op: Omit<HistoryOp, "t">): HistoryOp {
    const stamped = { t: Date.now(), ...op } as HistoryOp;
    this.ops.push(stamped);
    if (this.#file) this.#pending.push(JSON.stringify(stamped));
    return stamped;
  }

  flush(): void {
    if (!this.#file || this.#pending.length === 0) return;
    fs.appendFileSync(this.#file, `${this.#pending.join("\n")}\n`);
    this.#pending = [];
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.flush();
  }
}

/** The payload for `value`: the value, a space, filler; 100-500 bytes, the same on every resend. */
export function payloadFor(value: string): Uint8Array {
  const size = 100 + (crc32(encoder.encode(value)) % 401);
  const head = `${value} `;
  return encoder.encode(head + ".".repeat(Math.max(0, size - head.length)));
}

/**
 * One client per node, through the node's client-side proxy, with the workload's timeouts.
 * `pinned`: every request goes to that node, which forwards what it does not serve (otherwise
 * the client sends puts straight to the leaders the cluster names).
 */
export class ClientPool {
  readonly #cluster: Cluster;
  readonly #clients = new Map<number, MetaqClient>();
  readonly #checked = new Map<number, BrokerConnection>();
  readonly #options: { pinned?: boolean; requestTimeoutMs?: number };

  constructor(cluster: Cluster, options: { pinned?: boolean; requestTimeoutMs?: number } = {}) {
    this.#cluster = cluster;
    this.#options = options;
  }

  client(node: number): MetaqClient {
    let client = this.#clients.get(node);
    if (!client) {
      client = new MetaqClient({
        brokers: [this.#cluster.address(node)],
        requestTimeoutMs: this.#options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS,
        connectTimeoutMs: CONNECT_TIMEOUT_MS,
        reconnectDelaysMs: [0],
        reconnectAttemptsMax: 1,
        ...(this.#options.pinned ? { routeToLeaders: false } : {}),
      });
      this.#clients.set(node, client);
    }
    return client;
  }

  /**
   * Resolves when a request sent now would reach a live broker on `node`: the connection is up
   * and, if it is new, answered a `version`. Rejects otherwise (the request would not be sent).
   */
  async ready(node: number): Promise<void> {
    const client = this.client(node);
    const connection = await withDeadline(client.connection(), CONNECT_TIMEOUT_MS);
    if (this.#checked.get(node) === connection) return;
    await withDeadline(client.version(), REQUEST_TIMEOUT_MS);
    this.#checked.set(node, connection);
  }

  close(): void {
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
  }
}

export type ProduceOutcome =
  | { readonly kind: "ok"; readonly offset: number }
  | { readonly kind: "fail" | "info"; readonly error: string };

/** Sends one value and classifies the reply (see the module comment). */
export async function produceOnce(
  pool: ClientPool,
  parts: { node: number; topic: string; partition: number; value: string },
): Promise<ProduceOutcome> {
  try {
    await pool.ready(parts.node);
  } catch (error) {
    return { kind: "fail", error: `not sent: ${describe(error)}` };
  }
  try {
    const put = pool.client(parts.node).put(parts.topic, parts.partition, {
      payload: payloadFor(parts.value),
    });
    const result = await withDeadline(put, REQUEST_TIMEOUT_MS);
    return { kind: "ok", offset: result.offset };
  } catch (error) {
    const status = error instanceof BrokerError ? error.status : undefined;
    // The client marks a request it knows had no effect (never written, or written after the
    // broker said it was shutting down) `unsent`: a definite failure, like a 503.
    const unsent = error instanceof ConnectionError && error.unsent;
    return { kind: status === 503 || unsent ? "fail" : "info", error: describe(error) };
  }
}

/** Which node to send a partition's requests to: the known leader, else the next node in turn. */
export class PartitionRouter {
  readonly #cluster: Cluster;
  readonly #leaders: Leaders;
  readonly #known = new Map<number, number>();
  readonly #turn = new Map<number, number>();
  #refreshing: Promise<void> | undefined;
  #refreshedAt = -Infinity;

  constructor(parts: { cluster: Cluster; leaders: Leaders }) {
    this.#cluster = parts.cluster;
    this.#leaders = parts.leaders;
  }

  nodeFor(partition: number): number {
    const known = this.#known.get(partition);
    if (known !== undefined) return known;
    const ids = this.#cluster.nodes.map((node) => node.id);
    const turn = this.#turn.get(partition) ?? partition;
    return ids[turn % ids.length];
  }

  /** After a failure on `node`: forget it as leader, take a hint, rotate, refresh soon. */
  failed(partition: number, node: number, errorText: string): void {
    const hint = /\b(?:\d{1,3}\.){3}\d{1,3}:\d{2,5}\b/.exec(errorText)?.[0];
    const hinted = hint === undefined ? undefined : this.#cluster.nodeIdOf(hint);
    if (hinted !== undefined && hinted !== node) {
      this.#known.set(partition, hinted);
      return;
    }
    if (this.#known.get(partition) === node) this.#known.delete(partition);
    this.#turn.set(partition, (this.#turn.get(partition) ?? partition) + 1);
    void this.refresh();
  }

  /** Asks who leads (at most one question in flight, a few per second at most). */
  refresh(): Promise<void> {
    if (this.#refreshing) return this.#refreshing;
    if (performance.now() - this.#refreshedAt < ROUTER_REFRESH_MIN_MS) return Promise.resolve();
    this.#refreshedAt = performance.now();
    this.#refreshing = this.#leaders.partitionLeaders()
      .then((leaders) => {
        for (const [partition, node] of leaders) this.#known.set(partition, node);
      })
      .catch(() => {})
      .finally(() => (this.#refreshing = undefined));
    return this.#refreshing;
  }
}

export interface QueueWorkloadOptions {
  readonly cluster: Cluster;
  readonly router: PartitionRouter;
  readonly recorder: HistoryRecorder;
  readonly random: Random;
  readonly topic: string;
  readonly partitions: number;
  /** Default 2 per partition. */
  readonly producers?: number;
  /** Total target rate; default 300 messages/s. */
  readonly ratePerSecond?: number;
  /** W1r: resend the same value after an indeterminate result. */
  readonly resend?: boolean;
}

/** W1 / W1r: sequential producers, one value at a time each. */
export class QueueWorkload {
  readonly options: QueueWorkloadOptions;
  #stopped = false;
  #running: Promise<void>[] = [];
  #pools: ClientPool[] = [];

  constructor(options: QueueWorkloadOptions) {
    this.options = options;
  }

  get producerCount(): number {
    return this.options.producers ?? 2 * this.options.partitions;
  }

  start(): void {
    for (let k = 0; k < this.producerCount; k++) {
      const pool = new ClientPool(this.options.cluster);
      this.#pools.push(pool);
      this.#running.push(this.#produce(k, pool, this.options.random.fork(`producer ${k}`)));
    }
  }

  /** Stops sending; resolves when every producer's last request completed. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#running);
    for (const pool of this.#pools) pool.close();
  }

  async #produce(k: number, pool: ClientPool, random: Random): Promise<void> {
    const { topic, recorder, router } = this.options;
    const client = `p${k}`;
    const partition = k % this.options.partitions;
    const intervalMs = (this.producerCount * 1000) / (this.options.ratePerSecond ?? 300);
    let nextAt = performance.now() + random.float() * intervalMs;
    let seq = 0;
    let resends = 0;
    let value = `${client}-${seq}`;
    while (!this.#stopped) {
      await sleep(nextAt - performance.now());
      if (this.#stopped) break;
      nextAt = Math.max(nextAt + intervalMs, performance.now());
      const node = router.nodeFor(partition);
      const base = { client, op: "produce", topic, partition, value, node } as const;
      recorder.record({ ...base, kind: "invoke" });
      const outcome = await produceOnce(pool, { node, topic, partition, value });
      if (outcome.kind === "ok") recorder.record({ ...base, kind: "ok", offset: outcome.offset });
      else recorder.record({ ...base, kind: outcome.kind, error: outcome.error });
      const resend = this.options.resend && outcome.kind === "info" && resends < RESENDS_MAX;
      resends = resend ? resends + 1 : 0;
      if (!resend) value = `${client}-${++seq}`;
      if (outcome.kind !== "ok") {
        router.failed(partition, node, outcome.error);
        nextAt = Math.max(nextAt, performance.now() + BACKOFF_AFTER_FAILURE_MS);
      }
    }
  }
}

export interface OffsetProbeOptions {
  readonly cluster: Cluster;
  readonly groupOps: GroupOps;
  readonly recorder: HistoryRecorder;
  readonly random: Random;
  readonly topic: string;
  readonly partitions: number;
  readonly groups: readonly string[];
  readonly intervalMs?: number;
}

/** W3: every 250 ms, the committed offset of every (group, partition) from a random node. */
export class OffsetProbe {
  readonly options: OffsetProbeOptions;
  #stopped = false;
  #running: Promise<void> | undefined;

  constructor(options: OffsetProbeOptions) {
    this.options = options;
  }

  start(): void {
    this.#running = this.#loop();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#running;
  }

  async #loop(): Promise<void> {
    const { cluster, groupOps, recorder, random, topic } = this.options;
    const pool = new ClientPool(cluster);
    try {
      while (!this.#stopped) {
        const node = random.pick(cluster.nodes).id;
        for (const group of this.options.groups) {
          for (
            let partition = 0;
            partition < this.options.partitions && !this.#stopped;
            partition++
          ) {
            const base = {
              client: "probe",
              op: "offset-read",
              topic,
              partition,
              group,
              node,
            } as const;
            recorder.record({ ...base, kind: "invoke" });
            try {
              await pool.ready(node);
              const offset = await withDeadline(
                groupOps.readCommitted(pool.client(node), { group, topic, partition }),
                REQUEST_TIMEOUT_MS,
              );
              recorder.record({ ...base, kind: "ok", offset });
            } catch (error) {
              recorder.record({ ...base, kind: "info", error: describe(error) });
            }
          }
        }
        await sleep(this.options.intervalMs ?? 250);
      }
    } finally {
      pool.close();
    }
  }
}

export interface ConsumerGroupOptions {
  readonly cluster: Cluster;
  readonly router: PartitionRouter;
  readonly groupOps: GroupOps;
  readonly recorder: HistoryRecorder;
  readonly random: Random;
  readonly topic: string;
  readonly partitions: number;
  readonly group: string;
  /** Default 3. */
  readonly consumers?: number;
  readonly commitEveryMs?: number;
  readonly rejoinEveryMs?: number;
}

/** W2: a group of consumers that fetch, commit every 100 ms, and can be killed and restarted. */
export class ConsumerGroupWorkload {
  readonly options: ConsumerGroupOptions;
  readonly #consumers: Consumer[] = [];
  #incarnations = 0;

  constructor(options: ConsumerGroupOptions) {
    this.options = options;
  }

  get consumerCount(): number {
    return this.options.consumers ?? 3;
  }

  start(): void {
    for (let k = 0; k < this.consumerCount; k++) this.#consumers.push(this.#spawn(k));
  }

  /** Kills consumer `k` abruptly (no leave, no final commit) and starts a new incarnation. */
  async restart(k: number, delayMs: number): Promise<void> {
    await this.#consumers[k].kill();
    await sleep(delayMs);
    this.#consumers[k] = this.#spawn(k);
  }

  /**
   * Lets the consumers run until their positions reach `ends` (partition → offset), bounded by
   * `deadlineMs`; returns whether they got there.
   */
  async catchUp(ends: ReadonlyMap<number, number>, deadlineMs: number): Promise<boolean> {
    while (performance.now() < deadlineMs) {
      const reached = [...ends].every(([partition, end]) =>
        this.#consumers.some((consumer) => (consumer.positions.get(partition) ?? -1) >= end)
      );
      if (reached) return true;
      await sleep(100);
    }
    return false;
  }

  async stop(): Promise<void> {
    await Promise.all(this.#consumers.map((consumer) => consumer.stop()));
  }

  #spawn(k: number): Consumer {
    this.#incarnations += 1;
    const consumer = new Consumer(this.options, `c${k}.${this.#incarnations}`);
    consumer.start();
    return consumer;
  }
}

/** One consumer incarnation: join, read committed offsets, fetch, commit, rejoin. */
class Consumer {
  readonly options: ConsumerGroupOptions;
  readonly member: string;
  readonly positions = new Map<number, number>();
  readonly #committed = new Map<number, number>();
  readonly #pool: ClientPool;
  #stopped = false;
  #running: Promise<void> | undefined;

  constructor(options: ConsumerGroupOptions, member: string) {
    this.options = options;
    this.member = member;
    this.#pool = new ClientPool(options.cluster);
  }

  start(): void {
    this.#running = this.#loop().catch((error) => {
      this.options.recorder.record({
        client: this.member,
        kind: "info",
        op: "fetch",
        error: `consumer stopped: ${describe(error)}`,
      });
    });
  }

  async kill(): Promise<void> {
    this.#stopped = true;
    this.#pool.close(); // in-flight requests fail: nothing more is committed
    await this.#running;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#running;
    const node = this.options.random.pick(this.options.cluster.nodes).id;
    await this.options.groupOps.leave(this.#pool.client(node), {
      group: this.options.group,
      member: this.member,
    }).catch(() => {});
    this.#pool.close();
  }

  async #loop(): Promise<void> {
    const { groupOps, group, topic } = this.options;
    let generation = -1;
    let assigned: readonly number[] = [];
    while (!this.#stopped) {
      const node = this.options.random.pick(this.options.cluster.nodes).id;
      let assignment;
      try {
        await this.#pool.ready(node);
        assignment = await withDeadline(
          groupOps.join(this.#pool.client(node), { group, topic, member: this.member }),
          REQUEST_TIMEOUT_MS,
        );
      } catch {
        await sleep(BACKOFF_AFTER_FAILURE_MS);
        continue;
      }
      if (assignment.generation !== generation) {
        generation = assignment.generation;
        assigned = assignment.partitions;
        this.positions.clear();
        this.#committed.clear();
      } else if (String(assignment.partitions) !== String(assigned)) {
        // Same generation, more partitions: their previous owner has just released them.
        assigned = assignment.partitions;
      }
      await this.#consume(generation, assigned);
    }
  }

  /** Fetches and commits for one rejoin interval. */
  async #consume(generation: number, assigned: readonly number[]): Promise<void> {
    const session = `${this.member}/g${generation}`;
    const until = performance.now() + (this.options.rejoinEveryMs ?? 1000);
    let lastCommit = performance.now();
    while (!this.#stopped && performance.now() < until) {
      let fetched = 0;
      for (const partition of assigned) {
        if (this.#stopped) return;
        if (!this.positions.has(partition) && !(await this.#start(partition))) continue;
        fetched += await this.#fetch(partition, session);
      }
      if (performance.now() - lastCommit >= (this.options.commitEveryMs ?? 100)) {
        lastCommit = performance.now();
        for (const partition of assigned) await this.#commit(partition, generation);
      }
      if (fetched === 0) await sleep(50);
    }
  }

  /** Reads the committed offset to start from (an observation for I9 too). */
  async #start(partition: number): Promise<boolean> {
    const { groupOps, group, topic, recorder, router } = this.options;
    const node = router.nodeFor(partition);
    const base = { client: this.member, op: "offset-read", topic, partition, group, node } as const;
    recorder.record({ ...base, kind: "invoke" });
    try {
      await this.#pool.ready(node);
      const offset = await withDeadline(
        groupOps.readCommitted(this.#pool.client(node), { group, topic, partition }),
        REQUEST_TIMEOUT_MS,
      );
      recorder.record({ ...base, kind: "ok", offset });
      this.positions.set(partition, offset ?? 0);
      this.#committed.set(partition, offset ?? 0);
      return true;
    } catch (error) {
      recorder.record({ ...base, kind: "info", error: describe(error) });
      router.failed(partition, node, describe(error));
      return false;
    }
  }

  /** One fetch from the partition's position; returns the records it got. */
  async #fetch(partition: number, session: string): Promise<number> {
    const { group, topic, recorder, router } = this.options;
    const node = router.nodeFor(partition);
    const offset = this.positions.get(partition)!;
    const outcome = await fetchOnce(this.#pool, {
      recorder,
      client: this.member,
      node,
      topic,
      partition,
      group,
      session,
      offset,
    });
    if (outcome.kind === "info") {
      router.failed(partition, node, outcome.error);
      return 0;
    }
    this.positions.set(partition, outcome.next);
    return outcome.records.length;
  }

  async #commit(partition: number, generation: number): Promise<void> {
    const { groupOps, group, topic, recorder, router } = this.options;
    const offset = this.positions.get(partition);
    if (offset === undefined || offset <= (this.#committed.get(partition) ?? 0)) return;
    const node = router.nodeFor(partition);
    const base = {
      client: this.member,
      op: "commit",
      topic,
      partition,
      group,
      node,
      offset,
    } as const;
    recorder.record({ ...base, kind: "invoke" });
    try {
      await this.#pool.ready(node);
      await withDeadline(
        groupOps.commit(this.#pool.client(node), {
          group,
          topic,
          partition,
          offset,
          generation,
          member: this.member,
        }),
        REQUEST_TIMEOUT_MS,
      );
      recorder.record({ ...base, kind: "ok" });
      this.#committed.set(partition, offset);
    } catch (error) {
      recorder.record({ ...base, kind: "info", error: describe(error) });
    }
  }
}

export type FetchOutcome =
  | {
    readonly kind: "ok";
    readonly records: readonly (readonly [number, string])[];
    /** Where this session reads next: after the last record, or where a 301 moved it. */
    readonly next: number;
  }
  | { readonly kind: "info"; readonly error: string };

/**
 * One `get` of up to 64 KiB at `offset`, recorded as a fetch: records (with `next`), a 301
 * (`moved`), nothing yet (404), or an indeterminate failure. A reply that fails its checksums is
 * served damage, which I2 reports; other errors are plain indeterminate fetches.
 */
export async function fetchOnce(
  pool: ClientPool,
  parts: {
    recorder: HistoryRecorder;
    client: string;
    node: number;
    topic: string;
    partition: number;
    group: string;
    session: string;
    offset: number;
  },
): Promise<FetchOutcome> {
  const { recorder, node, topic, partition, group, offset } = parts;
  const base = {
    client: parts.client,
    op: "fetch",
    topic,
    partition,
    group,
    session: parts.session,
    offset,
    node,
  } as const;
  recorder.record({ ...base, kind: "invoke" });
  try {
    await pool.ready(node);
    const reply = await withDeadline(
      pool.client(node).get({ topic, group, partition, offset, maxSize: FETCH_BYTES }),
      REQUEST_TIMEOUT_MS,
    );
    if (reply.kind === "moved") {
      recorder.record({ ...base, kind: "ok", records: [], moved: reply.offset });
      return { kind: "ok", records: [], next: reply.offset };
    }
    if (reply.kind === "none") {
      recorder.record({ ...base, kind: "ok", records: [], next: offset });
      return { kind: "ok", records: [], next: offset };
    }
    const decoded = decodeRecords(reply.bytes, offset, MESSAGE_BYTES_LIMIT_MAX);
    const records = decoded.map((record) =>
      [record.offset, valueOf(record.flag, record.data)] as const
    );
    const last = decoded[decoded.length - 1];
    const next = last ? last.offset + RECORD_HEADER_BYTES + last.length : offset;
    recorder.record({ ...base, kind: "ok", records, next });
    return { kind: "ok", records, next };
  } catch (error) {
    const damaged = error instanceof Error && error.message.startsWith("Cannot decode record");
    const text = `${damaged ? "damaged: " : ""}${describe(error)}`;
    recorder.record({ ...base, kind: "info", error: text });
    return { kind: "info", error: describe(error) };
  }
}

/** Rejects with a timeout error when `promise` takes longer than `ms`. */
export function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms`)), ms);
  });
  promise.catch(() => {}); // a late rejection after the deadline is not an unhandled one
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

export function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}

export function describe(error: unknown): string {
  if (error instanceof BrokerError) return `${error.status} ${error.message}`.slice(0, 300);
  return (error instanceof Error ? `${error.name}: ${error.message}` : String(error)).slice(0, 300);
}

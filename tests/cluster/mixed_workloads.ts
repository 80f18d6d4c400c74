/**
 * @module W5, the mixed workload: next to W1's sequential producers, concurrent clients of every
 * kind metaq serves, each pinned to one node so that its requests cross the cluster's forwarding
 * (a node that does not lead a partition, or does not coordinate transactions, forwards):
 *
 * - keyed producers (MetaQ's ordered messages): each sends `"k<i>-<seq>"` one at a time, the
 *   partition chosen by the hash of one of its keys, so each key's messages stay in order;
 * - local-transaction producers (`"l<i>-<seq>"`) and XA producers (`"x<i>-<seq>"`): BEGIN, 1-3
 *   puts to random partitions, COMMIT; one in ten rolled back on purpose (XA after PREPARE); the
 *   first producer of each kind reads a partition before its puts, so the checker can draw
 *   write-read dependencies between transactions (G1c);
 * - readers that must see everything: broadcast consumers (each reads every partition, its own
 *   group `bcast-<i>`) and plain readers (group `plain`, the partitions split between them),
 *   keeping their positions themselves, as MetaQ's broadcast and simple consumers do.
 *
 * Every operation goes to the history; a transaction is one `txn` operation (history.ts). Its
 * outcome: `ok` when COMMIT was answered 200; `fail` when COMMIT was never sent (a failed BEGIN or
 * put, a rollback on purpose) or was refused without effect (503, "has not been started" for a
 * local transaction, XA_RBOTHER "rolled back"); `info` otherwise, with `decided` when the broker
 * said the commit is journalled and will be completed.
 */
import type { MetaqClient } from "../../lib/client/client.ts";
import { BrokerError } from "../../lib/client/errors.ts";
import { keyHashSelector } from "../../lib/client/producer.ts";
import { TransactionalProducer } from "../../lib/client/transaction.ts";
import { MetaqXAResource, XA_CODES, XAError } from "../../lib/client/xa_resource.ts";
import { MESSAGE_BYTES_LIMIT_MAX, RECORD_HEADER_BYTES } from "../../lib/limits.ts";
import { decodeRecords } from "../../lib/protocol/record.ts";
import { valueOf } from "./drain.ts";
import type { Cluster } from "./launcher.ts";
import type { Random } from "./random.ts";
import {
  BACKOFF_AFTER_FAILURE_MS,
  ClientPool,
  describe,
  fetchOnce,
  type HistoryRecorder,
  payloadFor,
  produceOnce,
  sleep,
  withDeadline,
} from "./workloads.ts";

/** Transactions wait longer than plain puts: a commit journals, then appends to each partition. */
export const TX_REQUEST_TIMEOUT_MS = 5000;
const TX_TIMEOUT_SECONDS = 20;
const KEYS_PER_PRODUCER = 4;
const PUTS_PER_TXN_MAX = 3;
const ROLLBACK_CHANCE = 0.1;
const READ_BYTES = 16 * 1024;
const READS_PER_TXN_MAX = 32;

export interface MixedWorkloadOptions {
  readonly cluster: Cluster;
  readonly recorder: HistoryRecorder;
  readonly random: Random;
  readonly topic: string;
  readonly partitions: number;
  /** Defaults: 2 keyed, 2 local, 2 XA producers, 2 broadcast consumers, 2 plain readers. */
  readonly keyedProducers?: number;
  readonly localProducers?: number;
  readonly xaProducers?: number;
  readonly broadcastConsumers?: number;
  readonly plainReaders?: number;
  /** Per keyed producer; default 20 messages/s. */
  readonly keyedRatePerSecond?: number;
  /** Per transactional producer; default 4 transactions/s. */
  readonly txnRatePerSecond?: number;
}

/** The clients of W5; producers and readers stop separately (readers last, after the drain). */
export class MixedWorkload {
  readonly options: MixedWorkloadOptions;
  readonly #producers: Promise<void>[] = [];
  readonly #readers: Reader[] = [];
  readonly #pools: ClientPool[] = [];
  #stopped = false;

  constructor(options: MixedWorkloadOptions) {
    this.options = options;
  }

  /** The consumers that must have read every committed value by the end (for `unseen`). */
  get deliveryGroups(): string[] {
    const broadcast = Array.from(
      { length: this.options.broadcastConsumers ?? 2 },
      (_, i) => `bcast-${i}`,
    );
    return (this.options.plainReaders ?? 2) > 0 ? [...broadcast, "plain"] : broadcast;
  }

  start(): void {
    const { random } = this.options;
    for (let i = 0; i < (this.options.keyedProducers ?? 2); i++) {
      this.#producers.push(this.#keyed(i, this.#pool(false), random.fork(`keyed ${i}`)));
    }
    for (const kind of ["local", "xa"] as const) {
      const count = kind === "local" ? this.options.localProducers : this.options.xaProducers;
      for (let i = 0; i < (count ?? 2); i++) {
        const producer = new TxProducer(this, {
          kind,
          index: i,
          pool: this.#pool(true),
          random: random.fork(`${kind} ${i}`),
        });
        this.#producers.push(producer.run());
      }
    }
    this.#startReaders();
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** Stops every producer; resolves when their last operations completed. */
  async stopProducers(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#producers);
  }

  /** Lets the readers run until each reached `ends` (partition → offset) or the deadline. */
  async catchUp(ends: ReadonlyMap<number, number>, deadlineMs: number): Promise<boolean> {
    while (performance.now() < deadlineMs) {
      if (this.#readers.every((reader) => reader.reached(ends))) return true;
      await sleep(100);
    }
    return false;
  }

  async stopReaders(): Promise<void> {
    await Promise.all(this.#readers.map((reader) => reader.stop()));
    for (const pool of this.#pools) pool.close();
  }

  /** The node a client numbered `i` talks to: spread over the cluster. */
  nodeFor(i: number): number {
    const ids = this.options.cluster.nodes.map((node) => node.id);
    return ids[i % ids.length];
  }

  #pool(transactional: boolean): ClientPool {
    const pool = new ClientPool(this.options.cluster, {
      pinned: true,
      requestTimeoutMs: transactional ? TX_REQUEST_TIMEOUT_MS : undefined,
    });
    this.#pools.push(pool);
    return pool;
  }

  #startReaders(): void {
    const { partitions } = this.options;
    const all = Array.from({ length: partitions }, (_, p) => p);
    for (let i = 0; i < (this.options.broadcastConsumers ?? 2); i++) {
      this.#readers.push(
        new Reader(this, {
          client: `b${i}`,
          group: `bcast-${i}`,
          node: this.nodeFor(i + 1),
          partitions: all,
        }),
      );
    }
    const plain = this.options.plainReaders ?? 2;
    for (let i = 0; i < plain; i++) {
      const mine = all.filter((p) => p % plain === i);
      this.#readers.push(
        new Reader(this, {
          client: `r${i}`,
          group: "plain",
          node: this.nodeFor(i + 2),
          partitions: mine,
        }),
      );
    }
    for (const reader of this.#readers) {
      reader.start(this.#pool(false));
    }
  }

  /** A keyed producer: sequential sends, the partition by the hash of the key. */
  async #keyed(i: number, pool: ClientPool, random: Random): Promise<void> {
    const { topic, partitions, recorder } = this.options;
    const client = `k${i}`;
    const node = this.nodeFor(i);
    const keys = Array.from({ length: KEYS_PER_PRODUCER }, (_, k) => `key-${i}-${k}`);
    const select = keyHashSelector();
    const intervalMs = 1000 / (this.options.keyedRatePerSecond ?? 20);
    let nextAt = performance.now() + random.float() * intervalMs;
    for (let seq = 0; !this.#stopped; seq++) {
      await sleep(nextAt - performance.now());
      if (this.#stopped) break;
      nextAt = Math.max(nextAt + intervalMs, performance.now());
      const partition = select({ topic, partitions, key: random.pick(keys) });
      const value = `${client}-${seq}`;
      const base = { client, op: "produce", topic, partition, value, node } as const;
      recorder.record({ ...base, kind: "invoke" });
      const outcome = await produceOnce(pool, { node, topic, partition, value });
      if (outcome.kind === "ok") recorder.record({ ...base, kind: "ok", offset: outcome.offset });
      else recorder.record({ ...base, kind: outcome.kind, error: outcome.error });
      if (outcome.kind !== "ok") {
        nextAt = Math.max(nextAt, performance.now() + BACKOFF_AFTER_FAILURE_MS);
      }
    }
  }
}

/**
 * How a failed COMMIT ended, from the error it got (see the module comment). The error text
 * recorded starts with `COMMIT: `, telling it apart from failures before the COMMIT was sent.
 */
export function commitOutcome(
  error: unknown,
  kind: "local" | "xa",
): { kind: "fail" | "info"; decided?: boolean; error: string } {
  const text = `COMMIT: ${describe(error)}`;
  const cause = error instanceof XAError ? error.cause : error;
  if (/will be completed/.test(text)) return { kind: "info", decided: true, error: text };
  if (cause instanceof BrokerError && cause.status === 503) return { kind: "fail", error: text };
  if (error instanceof XAError && error.code === XA_CODES.RBOTHER) {
    return { kind: "fail", error: text };
  }
  if (kind === "local" && /has not been started/.test(text)) return { kind: "fail", error: text };
  return { kind: "info", error: text };
}

interface Plan {
  readonly id: string;
  readonly writes: readonly (readonly [number, string])[];
  readonly rollback: boolean;
  readonly read: number | undefined;
}

/** One transactional producer (local or XA), one transaction at a time. */
class TxProducer {
  readonly #workload: MixedWorkload;
  readonly #kind: "local" | "xa";
  readonly #client: string;
  readonly #node: number;
  readonly #pool: ClientPool;
  readonly #random: Random;
  readonly #reads: boolean;
  readonly #positions = new Map<number, number>();
  #seq = 0;
  #count = 0;

  constructor(
    workload: MixedWorkload,
    parts: { kind: "local" | "xa"; index: number; pool: ClientPool; random: Random },
  ) {
    this.#workload = workload;
    this.#kind = parts.kind;
    this.#client = `${parts.kind === "local" ? "l" : "x"}${parts.index}`;
    this.#node = workload.nodeFor(parts.index + (parts.kind === "local" ? 1 : 2));
    this.#pool = parts.pool;
    this.#random = parts.random;
    this.#reads = parts.index === 0;
  }

  async run(): Promise<void> {
    const intervalMs = 1000 / (this.#workload.options.txnRatePerSecond ?? 4);
    let nextAt = performance.now() + this.#random.float() * intervalMs;
    while (!this.#workload.stopped) {
      await sleep(nextAt - performance.now());
      if (this.#workload.stopped) break;
      nextAt = Math.max(nextAt + intervalMs, performance.now());
      const outcome = await this.#one(this.#plan());
      if (outcome !== "ok") nextAt = Math.max(nextAt, performance.now() + BACKOFF_AFTER_FAILURE_MS);
    }
  }

  #plan(): Plan {
    const { partitions } = this.#workload.options;
    const puts = this.#random.int(1, PUTS_PER_TXN_MAX);
    const writes = Array.from(
      { length: puts },
      () => [this.#random.int(0, partitions - 1), `${this.#client}-${this.#seq++}`] as const,
    );
    return {
      id: `${this.#client}.${++this.#count}`,
      writes,
      rollback: this.#random.chance(ROLLBACK_CHANCE),
      read: this.#reads ? this.#random.int(0, partitions - 1) : undefined,
    };
  }

  /** Runs one transaction and records it as one `txn` operation. */
  async #one(plan: Plan): Promise<"ok" | "fail" | "info"> {
    const { recorder, topic } = this.#workload.options;
    const base = {
      client: this.#client,
      op: "txn",
      topic,
      txn: plan.id,
      txKind: this.#kind,
      node: this.#node,
    } as const;
    recorder.record({ ...base, kind: "invoke", writes: plan.writes });
    const reads: [number, number, string][] = [];
    let completion: { kind: "ok" | "fail" | "info"; decided?: boolean; error?: string };
    try {
      await withDeadline(this.#pool.ready(this.#node), TX_REQUEST_TIMEOUT_MS);
      const client = this.#pool.client(this.#node);
      if (plan.read !== undefined) reads.push(...await this.#read(client, plan.read));
      completion = this.#kind === "local"
        ? await this.#local(client, plan)
        : await this.#xa(client, plan);
    } catch (error) {
      completion = { kind: "fail", error: `not committed: ${describe(error)}` };
    }
    recorder.record({ ...base, ...completion, ...(reads.length > 0 ? { reads } : {}) });
    return completion.kind;
  }

  /** Reads the next records of `partition` from where this producer last read it. */
  async #read(client: MetaqClient, partition: number): Promise<[number, number, string][]> {
    const { topic } = this.#workload.options;
    const offset = this.#positions.get(partition) ?? 0;
    const reply = await withDeadline(
      client.get({ topic, group: `${this.#client}-reads`, partition, offset, maxSize: READ_BYTES }),
      TX_REQUEST_TIMEOUT_MS,
    );
    if (reply.kind === "moved") this.#positions.set(partition, reply.offset);
    if (reply.kind !== "records") return [];
    const records = decodeRecords(reply.bytes, offset, MESSAGE_BYTES_LIMIT_MAX)
      .slice(0, READS_PER_TXN_MAX);
    const last = records[records.length - 1];
    if (last) this.#positions.set(partition, last.offset + RECORD_HEADER_BYTES + last.length);
    return records.map((record) => [partition, record.offset, valueOf(record.flag, record.data)]);
  }

  /** BEGIN, puts, then COMMIT or (on purpose) ROLLBACK; errors before COMMIT mean not committed. */
  async #local(
    client: MetaqClient,
    plan: Plan,
  ): Promise<{ kind: "ok" | "fail" | "info"; decided?: boolean; error?: string }> {
    const { topic } = this.#workload.options;
    const producer = new TransactionalProducer(client);
    const tx = await withDeadline(
      producer.beginTransaction({ timeoutSeconds: TX_TIMEOUT_SECONDS }),
      TX_REQUEST_TIMEOUT_MS,
    );
    try {
      for (const [partition, value] of plan.writes) {
        await withDeadline(tx.send(topic, payloadFor(value), { partition }), TX_REQUEST_TIMEOUT_MS);
      }
    } catch (error) {
      await withDeadline(tx.rollback(), TX_REQUEST_TIMEOUT_MS).catch(() => {});
      return { kind: "fail", error: `not committed: ${describe(error)}` };
    }
    if (plan.rollback) {
      await withDeadline(tx.rollback(), TX_REQUEST_TIMEOUT_MS).catch(() => {});
      return { kind: "fail", error: "rolled back on purpose" };
    }
    try {
      await withDeadline(tx.commit(), TX_REQUEST_TIMEOUT_MS);
      return { kind: "ok" };
    } catch (error) {
      return commitOutcome(error, "local");
    }
  }

  /** start, puts, end, PREPARE, then COMMIT (two-phase) or (on purpose) ROLLBACK. */
  async #xa(
    client: MetaqClient,
    plan: Plan,
  ): Promise<{ kind: "ok" | "fail" | "info"; decided?: boolean; error?: string }> {
    const { topic } = this.#workload.options;
    const resource = new MetaqXAResource(client, {
      uniqueQualifier: `chaos-${this.#client}`,
      timeoutSeconds: TX_TIMEOUT_SECONDS,
    });
    const xid = { formatId: 1, globalId: hexOf(plan.id), branchQualifier: "01" };
    const abandon = async (why: string) => {
      await withDeadline(resource.rollback(xid), TX_REQUEST_TIMEOUT_MS).catch(() => {});
      return { kind: "fail" as const, error: why };
    };
    try {
      await withDeadline(resource.start(xid), TX_REQUEST_TIMEOUT_MS);
      for (const [partition, value] of plan.writes) {
        await withDeadline(
          resource.send(topic, payloadFor(value), { partition }),
          TX_REQUEST_TIMEOUT_MS,
        );
      }
      await withDeadline(resource.end(xid), TX_REQUEST_TIMEOUT_MS);
      await withDeadline(resource.prepare(xid), TX_REQUEST_TIMEOUT_MS);
    } catch (error) {
      return await abandon(`not committed: ${describe(error)}`);
    }
    if (plan.rollback) return await abandon("rolled back on purpose");
    try {
      await withDeadline(resource.commit(xid, false), TX_REQUEST_TIMEOUT_MS);
      return { kind: "ok" };
    } catch (error) {
      return commitOutcome(error, "xa");
    }
  }
}

/** A broadcast consumer or plain reader: reads its partitions in turn, keeping its positions. */
class Reader {
  readonly #workload: MixedWorkload;
  readonly #client: string;
  readonly #group: string;
  readonly #node: number;
  readonly #partitions: readonly number[];
  readonly #positions = new Map<number, number>();
  #stopped = false;
  #running: Promise<void> | undefined;

  constructor(
    workload: MixedWorkload,
    parts: { client: string; group: string; node: number; partitions: readonly number[] },
  ) {
    this.#workload = workload;
    this.#client = parts.client;
    this.#group = parts.group;
    this.#node = parts.node;
    this.#partitions = parts.partitions;
  }

  start(pool: ClientPool): void {
    this.#running = this.#loop(pool);
  }

  reached(ends: ReadonlyMap<number, number>): boolean {
    return this.#partitions.every((p) => (this.#positions.get(p) ?? 0) >= (ends.get(p) ?? 0));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#running;
  }

  async #loop(pool: ClientPool): Promise<void> {
    const { recorder, topic } = this.#workload.options;
    while (!this.#stopped) {
      let received = 0;
      for (const partition of this.#partitions) {
        if (this.#stopped) return;
        const outcome = await fetchOnce(pool, {
          recorder,
          client: this.#client,
          node: this.#node,
          topic,
          partition,
          group: this.#group,
          session: `${this.#client}/1`,
          offset: this.#positions.get(partition) ?? 0,
        });
        if (outcome.kind === "info") continue;
        this.#positions.set(partition, outcome.next);
        received += outcome.records.length;
      }
      if (received === 0) await sleep(50);
    }
  }
}

function hexOf(text: string): string {
  return Array.from(new TextEncoder().encode(text), (byte) => byte.toString(16).padStart(2, "0"))
    .join("");
}

/**
 * @module Local transactions for clients, as MetaQ's TransactionContext runs them: BEGIN with a
 * `TX:<session>:<n>` key, puts carrying that key (answered with offset -1: nothing is visible
 * yet), then COMMIT_ONE_PHASE or ROLLBACK. A local transaction lives on one connection: the
 * broker rolls it back if that connection drops, and every later call here then fails with a
 * ConnectionError. A commit that times out has an unknown outcome (TimeoutError).
 *
 * `runTransaction` and `TransactionalProducer.transaction` commit when the callback returns and
 * roll back when it throws. XA transactions are in xa_resource.ts.
 */
import * as os from "node:os";
import { metaqChecksum } from "../crc32.ts";
import type { TransactionType } from "../protocol/commands.ts";
import { encodePut, encodeTransaction } from "../protocol/encoder.ts";
import { FLAG_HAS_ATTRIBUTE, joinAttribute } from "../protocol/record.ts";
import type { MetaqClient, PutResult } from "./client.ts";
import type { BrokerConnection, Reply } from "./connection.ts";
import { errorFromResult } from "./errors.ts";
import { keyHashSelector, type PartitionSelector } from "./producer.ts";

export interface TransactionOptions {
  /** Seconds after BEGIN at which the broker rolls back an unfinished transaction (0 = never). */
  readonly timeoutSeconds?: number;
  /** Session id in the key; default `<host>-<start ms>-<n>`, like MetaQ's client. */
  readonly sessionId?: string;
}

export interface TxSendOptions {
  /** Explicit partition (never -1: the broker refuses it in a transaction). */
  readonly partition?: number;
  /** Chooses the partition by hash when no partition is given. */
  readonly key?: string;
  readonly attribute?: string;
  readonly flag?: number;
}

/** `failed`: a commit or rollback got an error; its error says what is known of the outcome. */
export type TransactionState = "open" | "committed" | "rolledBack" | "failed";

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const PROCESS_START_MS = Date.now();
let sessionCount = 0;

/** A fresh session id: `<host>-<process start ms>-<n>`, with no ':' or spaces (key syntax). */
export function newSessionId(): string {
  sessionCount += 1;
  const host = os.hostname().replace(/[^A-Za-z0-9._-]/g, "-") || "localhost";
  return `${host}-${PROCESS_START_MS}-${sessionCount}`;
}

/** Picks partitions for transactional sends: explicit, by key hash, or round robin. */
export class TxPartitioner {
  readonly #client: MetaqClient;
  readonly #selector: PartitionSelector;
  readonly #counts = new Map<string, number>();

  constructor(client: MetaqClient, selector: PartitionSelector = keyHashSelector()) {
    this.#client = client;
    this.#selector = selector;
  }

  async partitionFor(topic: string, options: TxSendOptions): Promise<number> {
    if (options.partition !== undefined) return options.partition;
    let partitions = this.#counts.get(topic);
    if (partitions === undefined) {
      partitions = (await this.#client.topicMetadata(topic)).partitions;
      this.#counts.set(topic, partitions);
    }
    return this.#selector({ topic, partitions, key: options.key });
  }
}

export class LocalTransaction {
  /** The transaction key, `TX:<session>:<n>`. */
  readonly key: string;
  readonly sessionId: string;
  readonly #connection: BrokerConnection;
  readonly #partitioner: TxPartitioner;
  #state: TransactionState = "open";

  private constructor(
    parts: {
      key: string;
      sessionId: string;
      connection: BrokerConnection;
      partitioner: TxPartitioner;
    },
  ) {
    this.key = parts.key;
    this.sessionId = parts.sessionId;
    this.#connection = parts.connection;
    this.#partitioner = parts.partitioner;
  }

  /** Sends BEGIN on the client's current connection, which the transaction then keeps. */
  static async begin(
    client: MetaqClient,
    options: TransactionOptions & { partitioner?: TxPartitioner; counter?: number } = {},
  ): Promise<LocalTransaction> {
    const sessionId = options.sessionId ?? newSessionId();
    const key = `TX:${sessionId}:${options.counter ?? 1}`;
    const connection = await client.connection();
    const partitioner = options.partitioner ?? new TxPartitioner(client);
    const tx = new LocalTransaction({ key, sessionId, connection, partitioner });
    await tx.#command("BEGIN", options.timeoutSeconds ?? 0);
    return tx;
  }

  get state(): TransactionState {
    return this.#state;
  }

  /** Puts one message in the transaction; its offset is -1 until the commit. */
  async send(
    topic: string,
    payload: Uint8Array | string,
    options: TxSendOptions = {},
  ): Promise<PutResult> {
    this.#checkOpen("send");
    const partition = await this.#partitioner.partitionFor(topic, options);
    const data = typeof payload === "string" ? encoder.encode(payload) : payload;
    const body = options.attribute === undefined ? data : joinAttribute(options.attribute, data);
    const flag = (options.flag ?? 0) | (options.attribute === undefined ? 0 : FLAG_HAS_ATTRIBUTE);
    const opaque = this.#connection.nextOpaque();
    const bytes = encodePut({
      topic,
      partition,
      flag,
      checksum: metaqChecksum(body),
      txKey: this.key,
      opaque,
      body,
    });
    const text = replyText(await this.#connection.request(bytes, opaque));
    const [id, replyPartition, offset] = text.split(" ");
    return { id: BigInt(id), partition: Number(replyPartition), offset: Number(offset) };
  }

  /** COMMIT_ONE_PHASE: every message becomes visible, each partition's all at once. */
  async commit(): Promise<void> {
    await this.#finish("commit", "COMMIT_ONE_PHASE", "committed");
  }

  /** ROLLBACK: no message of the transaction will ever be visible. */
  async rollback(): Promise<void> {
    await this.#finish("roll back", "ROLLBACK", "rolledBack");
  }

  async #finish(action: string, type: TransactionType, state: TransactionState): Promise<void> {
    this.#checkOpen(action);
    this.#state = "failed"; // until the broker says otherwise; no second attempt either way
    await this.#command(type, 0);
    this.#state = state;
  }

  async #command(type: TransactionType, timeout: number): Promise<string> {
    const opaque = this.#connection.nextOpaque();
    const bytes = encodeTransaction({
      txKey: this.key,
      sessionId: this.sessionId,
      type,
      timeout,
      opaque,
    });
    return replyText(await this.#connection.request(bytes, opaque));
  }

  #checkOpen(action: string): void {
    if (this.#state !== "open") {
      throw new Error(`Cannot ${action} transaction ${this.key}: it is ${this.#state}`);
    }
  }
}

/** Begins a local transaction on `client` (a helper for LocalTransaction.begin). */
export function beginTransaction(
  client: MetaqClient,
  options: TransactionOptions = {},
): Promise<LocalTransaction> {
  return LocalTransaction.begin(client, options);
}

/**
 * Runs `work` in a local transaction: commits when it resolves, rolls back when it throws
 * (and rethrows). A failed rollback is reported as the error's `cause` only when the work's
 * own error has none, so the work's error always wins.
 */
export async function runTransaction<T>(
  client: MetaqClient,
  work: (tx: LocalTransaction) => Promise<T>,
  options: TransactionOptions & { partitioner?: TxPartitioner; counter?: number } = {},
): Promise<T> {
  const tx = await LocalTransaction.begin(client, options);
  let value: T;
  try {
    value = await work(tx);
  } catch (error) {
    if (tx.state === "open") await tx.rollback().catch(() => {});
    throw error;
  }
  if (tx.state === "open") await tx.commit();
  return value;
}

/** A producer of local transactions: one session id, counters from 1, shared partitioning. */
export class TransactionalProducer {
  readonly client: MetaqClient;
  readonly sessionId: string;
  readonly #partitioner: TxPartitioner;
  #counter = 0;

  constructor(
    client: MetaqClient,
    options: { selector?: PartitionSelector; sessionId?: string } = {},
  ) {
    this.client = client;
    this.sessionId = options.sessionId ?? newSessionId();
    this.#partitioner = new TxPartitioner(client, options.selector);
  }

  /** Runs `work` in a new transaction; see runTransaction. */
  transaction<T>(
    work: (tx: LocalTransaction) => Promise<T>,
    options: { timeoutSeconds?: number } = {},
  ): Promise<T> {
    return runTransaction(this.client, work, this.#next(options));
  }

  /** Begins a transaction to commit or roll back explicitly. */
  beginTransaction(options: { timeoutSeconds?: number } = {}): Promise<LocalTransaction> {
    return LocalTransaction.begin(this.client, this.#next(options));
  }

  #next(options: { timeoutSeconds?: number }) {
    this.#counter = this.#counter === 2147483647 ? 1 : this.#counter + 1;
    return {
      ...options,
      sessionId: this.sessionId,
      counter: this.#counter,
      partitioner: this.#partitioner,
    };
  }
}

/** The reply's text, or the BrokerError it carries (MetaQ's text verbatim). */
export function replyText(reply: Reply): string {
  const text = decoder.decode(reply.body);
  if (reply.kind === "value" || reply.code !== 200) {
    throw errorFromResult(reply.kind === "value" ? 500 : reply.code, text);
  }
  return text;
}

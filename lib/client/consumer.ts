/**
 * @module Consumer: MetaQ's pull consumer for the TypeScript client. `subscribe` topics with a
 * handler, `start`, and `close` (which commits and leaves). Two modes:
 *
 * - **group** (default): the broker balances the topics' partitions over the group's members
 *   (join/heartbeat through group_member.ts); offsets are committed to the broker, so a member
 *   that takes a partition over resumes where the last owner committed;
 * - **broadcast** (MetaQ's broadcast factory): this consumer reads every partition by itself and
 *   keeps its offsets locally (a file per group and instance by default, or in memory).
 *
 * Offsets are committed every `commitOffsetPeriodMs`, on rebalance and on close, and only those
 * that changed. Each partition is read by a PartitionReader; messages its handler keeps failing go
 * to the rejection policy (rejection.ts). Counters make every path visible.
 */
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { assert } from "../assert.ts";
import { describeError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import { acceptsMessage, parseFilter } from "../protocol/filter.ts";
import type { Assignment, OffsetEntry, OffsetStore, Strategy } from "../protocol/group_wire.ts";
import { checkGroupName } from "../protocol/names.ts";
import type { MetaqClient } from "./client.ts";
import { BrokerError } from "./errors.ts";
import { GroupClient } from "./group_client.ts";
import { GroupMembership } from "./group_member.ts";
import { LruMessageIdCache, type MessageIdCache } from "./message_id_cache.ts";
import { OffsetFileStore } from "./offset_file_store.ts";
import { OffsetMemoryStore } from "./offset_memory_store.ts";
import { warnOfEarlierFile } from "./record_file.ts";
import {
  type ConsumedMessage,
  type MessageHandler,
  PartitionReader,
  type ReaderCounters,
} from "./partition_reader.ts";
import { Rejection, type RejectionCounters, type RejectionPolicy } from "./rejection.ts";

export type { ConsumedMessage, MessageHandler, RejectionPolicy };

export interface ConsumerOptions {
  readonly group: string;
  /** "group" (default): share partitions with the group; "broadcast": read every partition. */
  readonly mode?: "group" | "broadcast";
  /** Member id in the group (default `<host>-<pid>-<random>`). */
  readonly consumerId?: string;
  /** Broadcast: names this consumer's local offsets (default: the host name). */
  readonly instance?: string;
  readonly strategy?: Strategy;
  /** Where offsets live: broker (default for groups), file (default for broadcast), memory. */
  readonly offsets?: "broker" | "file" | "memory" | OffsetStore;
  readonly offsetDir?: string;
  /** Start when no offset is stored: earliest (default), latest, or a byte offset. */
  readonly start?: "earliest" | "latest" | { readonly offset: number };
  /** Bytes asked per fetch (MetaQ's subscribe maxSize; default 1 MiB). */
  readonly maxSize?: number;
  /** Failed deliveries of one message before it goes to the rejection policy (default 5). */
  readonly maxFetchRetries?: number;
  /** Longest wait between fetches of an idle partition (default 5000). */
  readonly maxDelayFetchMs?: number;
  readonly commitOffsetPeriodMs?: number;
  readonly rejection?: RejectionPolicy;
  readonly recoverDir?: string;
  /** Re-delivery rounds of the recovery store (default 5 min; the first after at most 5 s). */
  readonly recoverIntervalMs?: number;
  /** Duplicate suppression by message id (default an LRU of 4096); false turns it off. */
  readonly idCache?: MessageIdCache | false;
  readonly heartbeatIntervalMs?: number;
  /**
   * Cut a damaged local offsets file or recovery store at the damage instead of refusing to
   * start (what follows the damage is lost, and logged). A torn tail is always cut.
   */
  readonly repair?: boolean;
  readonly logger?: Logger;
  /**
   * Called once readers are stopped and before their final offsets are committed (rebalance,
   * close): a handler that acks later (manual ack after an asynchronous write) finishes here.
   */
  readonly beforeCommit?: () => Promise<void>;
  /** Partition starts and stops, for tools that show them (`metaq consume --group`). */
  readonly onEvent?: (event: ConsumerEvent) => void;
}

export type ConsumerEvent =
  | {
    readonly kind: "started";
    readonly topic: string;
    readonly partition: number;
    readonly offset: number | "latest";
  }
  | {
    readonly kind: "stopped";
    readonly topic: string;
    readonly partition: number;
    readonly offset?: number;
  }
  | { readonly kind: "fenced"; readonly reason: string };

export interface SubscribeOptions {
  /** Client-side filter: a function, or the filter syntax of docs/groups.md. */
  readonly filter?: ((message: ConsumedMessage) => boolean) | string;
  /** False: offsets advance only when the handler calls `message.ack()` (default true). */
  readonly autoAck?: boolean;
}

export interface ConsumerCounters extends ReaderCounters, RejectionCounters {
  commits: number;
  commitFailures: number;
  rebalances: number;
  fenced: number;
}

interface Subscription {
  readonly handler: MessageHandler;
  readonly filter?: (message: ConsumedMessage) => boolean;
  readonly autoAck: boolean;
}

interface Running {
  readonly reader: PartitionReader;
  readonly topic: string;
  readonly partition: number;
  readonly grantedAt: number;
}

/**
 * A stopped partition whose position is not committed yet. The reader is kept, not its offset,
 * so acks that arrive after it stopped (manual ack of work finished later) still count.
 */
type Released = Running;

const MEMBER_ID_UNSAFE = /[^A-Za-z0-9_.:@\-]/g;

export class Consumer {
  readonly client: MetaqClient;
  readonly options: ConsumerOptions;
  readonly group: string;
  readonly consumerId: string;
  readonly counters: ConsumerCounters = {
    fetches: 0,
    delivered: 0,
    failedDeliveries: 0,
    duplicatesSkipped: 0,
    filtered: 0,
    fetchErrors: 0,
    invalidRecords: 0,
    rejected: 0,
    recoverStored: 0,
    deadLettered: 0,
    deadLetterFailures: 0,
    dropped: 0,
    recovered: 0,
    recoverFailures: 0,
    commits: 0,
    commitFailures: 0,
    rebalances: 0,
    fenced: 0,
  };
  readonly #subscriptions = new Map<string, Subscription>();
  readonly #readers = new Map<string, Running>();
  readonly #released = new Map<string, Released>();
  /** Last offset known to be committed, per `topic-partition`. */
  readonly #committed = new Map<string, number>();
  readonly #logger: Logger;
  readonly #idCache: MessageIdCache | undefined;
  readonly #rejection: Rejection;
  #membership: GroupMembership | undefined;
  #store: OffsetStore | undefined;
  #serialTail: Promise<unknown> = Promise.resolve();
  #timers: ReturnType<typeof setTimeout>[] = [];
  #state: "new" | "started" | "closing" | "closed" = "new";

  constructor(client: MetaqClient, options: ConsumerOptions) {
    checkGroupName(options.group);
    if (options.mode === "broadcast" && options.offsets === "broker") {
      throw new BrokerError("badRequest", "a broadcast consumer keeps its offsets locally");
    }
    this.client = client;
    this.options = options;
    this.group = options.group;
    this.consumerId = options.consumerId ?? defaultConsumerId();
    this.#logger = options.logger ?? silentLogger;
    this.#idCache = options.idCache === false
      ? undefined
      : options.idCache ?? new LruMessageIdCache();
    this.#rejection = new Rejection({
      policy: options.rejection ?? "recover",
      client,
      group: options.group,
      recoverDir: options.recoverDir ?? path.join(os.homedir(), ".metaq", "recover"),
      repair: options.repair,
      counters: this.counters,
      logger: this.#logger,
    });
  }

  /** Adds a topic and its handler; call before start (MetaQ's completeSubscribe). */
  subscribe(topic: string, handler: MessageHandler, options: SubscribeOptions = {}): this {
    if (this.#state !== "new") throw new BrokerError("badRequest", "subscribe before start()");
    if (this.#subscriptions.has(topic)) {
      throw new BrokerError("badRequest", `topic ${topic} is already subscribed`);
    }
    this.#subscriptions.set(topic, {
      handler,
      filter: compileFilter(options.filter),
      autoAck: options.autoAck ?? true,
    });
    return this;
  }

  /** Partitions being read now, as `topic-partition`, sorted. */
  get partitions(): string[] {
    return [...this.#readers.keys()].sort();
  }

  /** The group generation whose assignment is applied (0 in broadcast mode). */
  get generation(): number {
    return this.#membership?.generation ?? 0;
  }

  async start(): Promise<void> {
    if (this.#subscriptions.size === 0) {
      throw new BrokerError("badRequest", "subscribe to a topic first");
    }
    assert(this.#state === "new", "consumer already started");
    this.#state = "started";
    const topics = [...this.#subscriptions.keys()];
    await this.#rejection.openExisting(topics);
    if (this.options.mode === "broadcast") await this.#startBroadcast(topics);
    else await this.#startGroup(topics);
    this.#every(
      this.options.commitOffsetPeriodMs ?? 5000,
      () => this.#serial(() => this.#commitRunning()),
    );
    const recoverMs = this.options.recoverIntervalMs ?? 300_000;
    this.#every(recoverMs, () => this.#recover(), Math.min(5000, recoverMs));
  }

  /** Stops reading, commits every position, leaves the group and closes local stores. */
  async close(): Promise<void> {
    if (this.#state === "closing" || this.#state === "closed") return;
    const started = this.#state === "started";
    this.#state = "closing";
    for (const timer of this.#timers) clearTimeout(timer);
    await this.#membership?.stop();
    if (started) await this.#serial(() => this.#closeSteps());
    await this.#rejection.close();
    await this.#store?.close();
    this.#state = "closed";
  }

  async #closeSteps(): Promise<void> {
    for (const [key, running] of [...this.#readers]) await this.#stopReader(key, running, true);
    await this.options.beforeCommit?.();
    const membership = this.#membership;
    if (membership) {
      if (membership.joined) {
        await this.#commitBeforeLeaving(membership).catch((error) => this.#commitFailed(error));
        await membership.leave().catch((error) =>
          this.#logger.log("warn", "Cannot leave the group", { reason: describeError(error) })
        );
      }
    } else {
      await this.#commitAll(0).catch((error) => this.#commitFailed(error));
    }
  }

  /**
   * A rebalance may have started since our last beat. We still own our partitions (we have not
   * acknowledged it), so we commit in the current generation rather than lose the positions.
   */
  async #commitBeforeLeaving(membership: GroupMembership): Promise<void> {
    try {
      await this.#commitAll(membership.generation);
    } catch (error) {
      if (!(error instanceof BrokerError) || error.kind !== "staleGeneration") throw error;
      const groups = new GroupClient(this.client);
      const { generation } = await groups.heartbeat({
        group: this.group,
        memberId: this.consumerId,
        generation: membership.generation,
      });
      await this.#commitAll(generation);
    }
  }

  async #startGroup(topics: string[]): Promise<void> {
    const membership = new GroupMembership({
      groups: new GroupClient(this.client),
      group: this.group,
      memberId: this.consumerId,
      topics,
      strategy: this.options.strategy ?? "DEFAULT",
      heartbeatIntervalMs: this.options.heartbeatIntervalMs,
      serial: (step) => this.#serial(step),
      logger: this.#logger,
      hooks: {
        apply: (assignment) => this.#apply(assignment),
        settle: (generation) => this.#settle(generation),
        fence: (reason) => this.#fence(reason),
      },
    });
    this.#membership = membership;
    if (this.options.offsets !== undefined && this.options.offsets !== "broker") {
      this.#store = await this.#openLocalStore();
    }
    await membership.start();
  }

  async #startBroadcast(topics: string[]): Promise<void> {
    this.#store = await this.#openLocalStore();
    for (const topic of topics) {
      const { partitions } = await this.client.topicMetadata(topic);
      for (let partition = 0; partition < partitions; partition++) {
        const offset = this.#store.get({ group: this.group, topic, partition });
        if (offset !== undefined) this.#committed.set(`${topic}-${partition}`, offset);
        this.#startReader({ topic, partition, offset, grantedAt: 0 });
      }
    }
  }

  async #openLocalStore(): Promise<OffsetStore> {
    const choice = this.options.offsets ?? "file";
    if (typeof choice === "object") return choice;
    if (choice === "memory") return new OffsetMemoryStore();
    const instance = (this.options.instance ?? os.hostname()).replace(MEMBER_ID_UNSAFE, "-");
    const root = this.options.offsetDir ?? path.join(os.homedir(), ".metaq", "offsets");
    const dir = path.join(root, `${this.group}@${instance}`);
    warnOfEarlierFile(path.join(dir, "offsets.log"), this.#logger);
    return await OffsetFileStore.open({
      path: path.join(dir, "offsets.records"),
      logger: this.#logger,
      repair: this.options.repair,
      lock: true,
    });
  }

  /** Applies a group assignment: stop what is no longer ours, start what is new. */
  async #apply(assignment: Assignment): Promise<void> {
    this.counters.rebalances += 1;
    const wanted = new Map(assignment.partitions.map((p) => [`${p.topic}-${p.partition}`, p]));
    for (const [key, running] of [...this.#readers]) {
      const target = wanted.get(key);
      if (target?.grantedAt === running.grantedAt) continue;
      // Given away: keep its position to commit before acknowledging. Granted again (a forced
      // reset): its position is obsolete, so it restarts from the committed offset.
      await this.#stopReader(key, running, target === undefined);
    }
    for (const [key, assigned] of wanted) {
      if (this.#readers.has(key)) continue;
      const released = this.#released.get(key);
      this.#released.delete(key);
      const committed = this.#store
        ? this.#store.get({
          group: this.group,
          topic: assigned.topic,
          partition: assigned.partition,
        })
        : assigned.offset;
      if (committed !== undefined) this.#committed.set(key, committed);
      else this.#committed.delete(key);
      // Still ours since before (never acknowledged away): our own position is the newest.
      const local = released?.grantedAt === assigned.grantedAt
        ? released.reader.ackedOffset
        : undefined;
      this.#startReader({ ...assigned, offset: local ?? committed });
    }
  }

  /** Commits released partitions (these must succeed before the ack) and changed running ones. */
  async #settle(generation: number): Promise<void> {
    if (this.#released.size > 0) await this.options.beforeCommit?.();
    await this.#commitAll(generation);
  }

  async #fence(reason: string): Promise<void> {
    this.counters.fenced += 1;
    this.#logger.log("warn", "Stopped every partition: group session lost", {
      group: this.group,
      reason,
    });
    this.options.onEvent?.({ kind: "fenced", reason });
    for (const [key, running] of [...this.#readers]) await this.#stopReader(key, running, false);
    this.#released.clear();
    this.#committed.clear();
  }

  #startReader(
    input: { topic: string; partition: number; offset?: number; grantedAt: number },
  ): void {
    const { topic, partition } = input;
    const subscription = this.#subscriptions.get(topic);
    assert(subscription, `no subscription for ${topic}`);
    const start = input.offset ?? this.#startPosition();
    const reader = new PartitionReader({
      client: this.client,
      topic,
      partition,
      group: this.group,
      start,
      maxSize: this.options.maxSize ?? 1024 * 1024,
      maxDelayFetchMs: this.options.maxDelayFetchMs ?? 5000,
      maxFetchRetries: this.options.maxFetchRetries ?? 5,
      autoAck: subscription.autoAck,
      handler: subscription.handler,
      filter: subscription.filter,
      idCache: this.#idCache,
      reject: (message, error) => this.#rejection.reject(message, error),
      mayDeliver: () => this.#membership?.mayDeliver() ?? true,
      counters: this.counters,
      logger: this.#logger,
    });
    this.#readers.set(`${topic}-${partition}`, {
      reader,
      topic,
      partition,
      grantedAt: input.grantedAt,
    });
    this.options.onEvent?.({ kind: "started", topic, partition, offset: start });
    reader.start();
  }

  async #stopReader(key: string, running: Running, keepPosition: boolean): Promise<void> {
    await running.reader.stop();
    this.#readers.delete(key);
    if (keepPosition) this.#released.set(key, running);
    const { topic, partition } = running;
    this.options.onEvent?.({
      kind: "stopped",
      topic,
      partition,
      offset: running.reader.ackedOffset,
    });
  }

  #startPosition(): number | "latest" {
    const start = this.options.start ?? "earliest";
    if (start === "earliest") return 0; // the broker answers 301 when older data is gone
    if (start === "latest") return "latest";
    return start.offset;
  }

  /** Entries whose position moved since the last commit: released first, then running. */
  #changed(): OffsetEntry[] {
    const entries: OffsetEntry[] = [];
    for (const { topic, partition, reader } of this.#released.values()) {
      const offset = reader.ackedOffset;
      if (offset !== undefined) entries.push({ group: this.group, topic, partition, offset });
    }
    for (const running of this.#readers.values()) {
      const offset = running.reader.ackedOffset;
      const { topic, partition } = running;
      if (offset === undefined || this.#committed.get(`${topic}-${partition}`) === offset) continue;
      entries.push({ group: this.group, topic, partition, offset });
    }
    return entries;
  }

  /** The periodic commit: skipped while a group member is between sessions. */
  async #commitRunning(): Promise<void> {
    if (this.#state !== "started") return;
    if (this.#membership && !this.#membership.joined) return;
    await this.#commitAll(this.#membership?.generation ?? 0).catch((error) =>
      this.#commitFailed(error)
    );
  }

  /** Commits every changed position; throws if a released partition could not be committed. */
  async #commitAll(generation: number): Promise<void> {
    const entries = this.#changed();
    if (entries.length === 0) return;
    if (this.#store) return await this.#commitLocal(entries);
    const groups = new GroupClient(this.client);
    const results = await Promise.allSettled(
      entries.map((entry) => groups.commit({ ...entry, memberId: this.consumerId, generation })),
    );
    let failure: unknown;
    results.forEach((result, index) => {
      const entry = entries[index];
      const key = `${entry.topic}-${entry.partition}`;
      if (result.status === "fulfilled") {
        this.counters.commits += 1;
        this.#committed.set(key, entry.offset);
        this.#released.delete(key);
        return;
      }
      const kind = result.reason instanceof BrokerError ? result.reason.kind : undefined;
      if (this.#released.has(key) && (kind === "notOwner" || kind === "offsetBackwards")) {
        this.#released.delete(key); // no longer ours to commit: the group resumes from its own
      }
      failure ??= result.reason;
    });
    if (failure !== undefined) throw failure;
  }

  async #commitLocal(entries: OffsetEntry[]): Promise<void> {
    const store = this.#store!;
    try {
      await store.commit(entries);
    } catch (error) {
      if (!(error instanceof BrokerError) || error.kind !== "offsetBackwards") throw error;
      // The broker moved us back (its log was reset): that is the position now.
      await store.reset(entries);
    }
    for (const entry of entries) {
      const key = `${entry.topic}-${entry.partition}`;
      this.#committed.set(key, entry.offset);
      this.#released.delete(key);
    }
    this.counters.commits += entries.length;
  }

  #commitFailed(error: unknown): void {
    this.counters.commitFailures += 1;
    if (error instanceof BrokerError && error.kind === "staleGeneration") {
      this.#membership?.requestRefresh();
      return;
    }
    this.#logger.log("warn", "Cannot commit offsets", {
      group: this.group,
      reason: describeError(error),
    });
  }

  async #recover(): Promise<void> {
    const handlers = new Map([...this.#subscriptions].map(([topic, s]) => [topic, s.handler]));
    await this.#rejection.recoverOnce(handlers).catch((error) =>
      this.#logger.log("warn", "Recovery round failed", { reason: describeError(error) })
    );
  }

  /** Runs `action` every `periodMs` (first after `firstMs`) until close, one run at a time. */
  #every(periodMs: number, action: () => Promise<void>, firstMs = periodMs): void {
    const schedule = (delayMs: number) => {
      const timer = setTimeout(async () => {
        this.#timers = this.#timers.filter((t) => t !== timer);
        if (this.#state !== "started") return;
        await action();
        if (this.#state === "started") schedule(periodMs);
      }, delayMs);
      this.#timers.push(timer);
    };
    schedule(firstMs);
  }

  /** Membership steps, commits and close run one at a time, in call order. */
  #serial<T>(step: () => Promise<T>): Promise<T> {
    const run = this.#serialTail.then(step, step);
    this.#serialTail = run.catch(() => {});
    return run;
  }
}

function compileFilter(
  filter: SubscribeOptions["filter"],
): ((message: ConsumedMessage) => boolean) | undefined {
  if (filter === undefined || typeof filter === "function") return filter;
  const parsed = parseFilter(filter);
  if (parsed.kind !== "filter") {
    throw new BrokerError(
      "badRequest",
      parsed.kind === "invalid" ? parsed.reason : "a Java class cannot run here",
    );
  }
  return (message) => acceptsMessage(parsed.filter, message);
}

function defaultConsumerId(): string {
  const random = Math.floor(Math.random() * 0xffffffff).toString(16).padStart(8, "0");
  return `${os.hostname()}-${process.pid}-${random}`.replace(MEMBER_ID_UNSAFE, "-");
}

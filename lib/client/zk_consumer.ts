/**
 * @module ZkConsumer: a member of a consumer group balanced through ZooKeeper, exactly as MetaQ's
 * Java consumers balance (ConsumerZooKeeper), so metaq and original consumers can share a group:
 *
 * - it registers `consumers/<group>/ids/<group>_<consumerId>` (ephemeral, its topics
 *   comma-joined) and watches the group's ids and each topic's `brokers/topics-sub/<topic>`;
 * - on every change it computes its share with MetaQ's DEFAULT or CONSIST strategy
 *   (zk_balance.ts) over the sorted consumer ids and `<brokerId>-<partition>` names, releases the
 *   owner nodes it no longer needs, and claims new ones (`owners/<topic>/<b>-<p>`, ephemeral,
 *   holding its id); a claim still held by another consumer means that consumer has not released
 *   it yet, so everything is released and tried again after `zk.zkSyncTimeMs` (MetaQ's loop);
 * - it reads each partition from its broker id's master, or a random slave while no master is
 *   registered, and commits offsets to ZooKeeper as `<msgId>-<offset>` (zk_offset_store.ts), every
 *   `commitOffsetPeriodMs`, at each rebalance and at close.
 *
 * A group is balanced either this way or by a metaq broker's coordinator (consumer.ts), never
 * both: the two do not see each other's members (docs/zookeeper.md).
 */
import * as os from "node:os";
import process from "node:process";
import { describeError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import { checkGroupName } from "../protocol/names.ts";
import type { ZkClient, ZkState } from "../zk/client.ts";
import { MetaLayout } from "../zk/meta_layout.ts";
import { createEphemeral, deleteIfExists, ensurePath, readText } from "../zk/nodes.ts";
import { isZkError } from "../zk/protocol.ts";
import { type ClientOptions, MetaqClient } from "./client.ts";
import { BrokerError } from "./errors.ts";
import {
  type ConsumedMessage,
  type MessageHandler,
  PartitionReader,
  type ReaderCounters,
} from "./partition_reader.ts";
import { Rejection, type RejectionCounters } from "./rejection.ts";
import { partitionsFor, type ZkStrategy } from "./zk_balance.ts";
import { type BrokerEntry, readAddress, readBrokers, subscribablePartitions } from "./zk_fleet.ts";
import { ZkOffsetStore } from "./zk_offset_store.ts";

export interface ZkConsumerOptions {
  /** An open ZooKeeper client; the consumer does not close it. */
  readonly zk: ZkClient;
  /** `zk.zkRoot` (default `/meta`). */
  readonly root?: string;
  readonly group: string;
  /** MetaQ's consumerId (default `<host address>-<pid>-<uuid>`); registered as `<group>_<id>`. */
  readonly consumerId?: string;
  readonly strategy?: ZkStrategy;
  /** Where a partition with no committed offset starts: earliest (default) or latest. */
  readonly start?: "earliest" | "latest";
  readonly maxSize?: number;
  readonly maxFetchRetries?: number;
  readonly maxDelayFetchMs?: number;
  readonly commitOffsetPeriodMs?: number;
  /** Pause between rebalance attempts (zk.zkSyncTimeMs, default 5000). */
  readonly syncTimeMs?: number;
  /** What a message its handler keeps failing becomes: kept locally (default) or dropped. */
  readonly rejection?: "recover" | "drop";
  readonly recoverDir?: string;
  /** Options for the connections to brokers (auth, TLS, timeouts). */
  readonly clientOptions?: Omit<ClientOptions, "brokers">;
  readonly logger?: Logger;
  /** Called once readers are stopped and before their offsets are committed. */
  readonly beforeCommit?: () => Promise<void>;
  readonly onEvent?: (event: ZkConsumerEvent) => void;
}

export type ZkConsumerEvent =
  | {
    readonly kind: "started";
    readonly topic: string;
    readonly partition: string;
    readonly offset: number | "latest";
    readonly broker: string;
  }
  | {
    readonly kind: "stopped";
    readonly topic: string;
    readonly partition: string;
    readonly offset?: number;
  };

export interface ZkConsumerCounters extends ReaderCounters, RejectionCounters {
  commits: number;
  commitFailures: number;
  rebalances: number;
}

interface Running {
  readonly topic: string;
  readonly name: string;
  readonly address: string;
  readonly reader: PartitionReader;
}

/** A consumer id becomes part of a node name (`<group>_<id>`). */
// deno-lint-ignore no-control-regex
const CONSUMER_ID = /^[^/\u0000-\u001f\u007f]{1,200}$/;

/** MetaQ's ConsumerZooKeeper.MAX_N_RETRIES. */
const REBALANCE_ATTEMPTS_MAX = 7;

export class ZkConsumer {
  readonly options: ZkConsumerOptions;
  readonly group: string;
  /** `<group>_<consumerId>`, the node name and owner data. */
  readonly consumerIdString: string;
  readonly layout: MetaLayout;
  readonly counters: ZkConsumerCounters = {
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
  };
  readonly #handlers = new Map<string, { handler: MessageHandler; autoAck: boolean }>();
  readonly #readers = new Map<string, Running>();
  /** Stopped readers whose final position is not committed yet. */
  readonly #stopped = new Map<string, Running>();
  /** Partitions whose owner node this session holds, `topic/b-p`. */
  readonly #owned = new Set<string>();
  readonly #committed = new Map<string, number>();
  /** The id of the last message finished per partition, with the offset just past it. */
  readonly #lastIds = new Map<string, { id: bigint; nextOffset: number }>();
  readonly #offsets: ZkOffsetStore;
  readonly #clients = new Map<string, MetaqClient>();
  readonly #logger: Logger;
  #rejection: Rejection | undefined;
  #last: { consumers: string; partitions: string; brokers: string } | undefined;
  #state: "new" | "started" | "closing" | "closed" = "new";
  #tail: Promise<unknown> = Promise.resolve();
  #pending = false;
  #timers: ReturnType<typeof setTimeout>[] = [];
  #unsubscribe: (() => void) | undefined;
  readonly #onChange = () => this.#scheduleRebalance();

  constructor(options: ZkConsumerOptions) {
    checkGroupName(options.group);
    if (options.consumerId !== undefined && !CONSUMER_ID.test(options.consumerId)) {
      throw new BrokerError(
        "badRequest",
        `Cannot use consumer id "${options.consumerId}": it names a ZooKeeper node, so it must ` +
          "be 1 to 200 characters without '/' or control characters",
      );
    }
    this.options = options;
    this.group = options.group;
    this.layout = new MetaLayout(options.root ?? "/meta");
    this.consumerIdString = `${options.group}_${options.consumerId ?? defaultConsumerId()}`;
    this.#offsets = new ZkOffsetStore(options.zk, this.layout);
    this.#logger = options.logger ?? silentLogger;
  }

  subscribe(topic: string, handler: MessageHandler, options: { autoAck?: boolean } = {}): this {
    if (this.#state !== "new") throw new BrokerError("badRequest", "subscribe before start()");
    this.#handlers.set(topic, { handler, autoAck: options.autoAck ?? true });
    return this;
  }

  /** Partitions read now, as `topic/<brokerId>-<partition>`, sorted. */
  get partitions(): string[] {
    return [...this.#readers.keys()].sort();
  }

  /** Registers in the group, balances, and starts reading; returns after the first balance. */
  async start(): Promise<void> {
    if (this.#handlers.size === 0) {
      throw new BrokerError("badRequest", "subscribe to a topic first");
    }
    if (this.#state !== "new") throw new BrokerError("badRequest", "consumer already started");
    this.#state = "started";
    this.#rejection = new Rejection({
      policy: this.options.rejection ?? "recover",
      // Used only to produce to a dead-letter topic, which this consumer does not offer.
      client: this.#clientFor("127.0.0.1:8123"),
      group: this.group,
      recoverDir: this.options.recoverDir ?? `${os.homedir()}/.metaq/recover`,
      counters: this.counters,
      logger: this.#logger,
    });
    await this.#rejection.openExisting([...this.#handlers.keys()]);
    this.#unsubscribe = this.options.zk.onState((state) => this.#onState(state));
    await this.#register();
    await this.#serial(() => this.#rebalanceWithRetries());
    this.#every(
      this.options.commitOffsetPeriodMs ?? 5000,
      () => this.#serial(() => this.#commit(false)),
    );
  }

  /** Stops reading, commits, gives up its partitions and leaves the group. */
  async close(): Promise<void> {
    if (this.#state === "closing" || this.#state === "closed") return;
    this.#state = "closing";
    for (const timer of this.#timers) clearTimeout(timer);
    this.#unsubscribe?.();
    await this.#serial(async () => {
      await this.#stopReaders([...this.#readers.keys()]);
      await this.options.beforeCommit?.();
      await this.#commit(true);
      await this.#releaseOwned([...this.#owned]);
      await deleteIfExists(this.options.zk, this.#idPath()).catch(() => false);
    });
    await this.#rejection?.close();
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
    this.#state = "closed";
  }

  #onState(state: ZkState): void {
    if (state === "expired") {
      // Our owner nodes are gone: another consumer may take our partitions from the committed
      // offsets, so stop reading at once (what was read since the last commit is read again).
      void this.#serial(async () => {
        await this.#stopReaders([...this.#readers.keys()]);
        this.#owned.clear();
        this.#last = undefined;
      });
    } else if (state === "session") {
      void this.#serial(async () => {
        await this.#register();
        await this.#rebalanceWithRetries();
      }).catch((error) =>
        this.#logger.log("warn", "Cannot rejoin the group", { reason: describeError(error) })
      );
    }
  }

  async #register(): Promise<void> {
    const { zk } = this.options;
    await ensurePath(zk, this.layout.groupIdsPath(this.group));
    try {
      await createEphemeral(zk, this.#idPath(), [...this.#handlers.keys()].join(","));
    } catch (error) {
      if (!isZkError(error, "nodeExists")) throw error;
      if ((await readText(zk, this.#idPath())) !== [...this.#handlers.keys()].join(",")) {
        throw new BrokerError(
          "badRequest",
          `consumer ${this.consumerIdString} is already registered`,
        );
      }
    }
    for (const topic of this.#handlers.keys()) {
      await ensurePath(zk, `${this.layout.brokerTopicsSub}/${topic}`);
    }
  }

  #scheduleRebalance(): void {
    if (this.#state !== "started" || this.#pending) return;
    this.#pending = true;
    void this.#serial(async () => {
      this.#pending = false;
      if (this.#state === "started") await this.#rebalanceWithRetries();
    });
  }

  async #rebalanceWithRetries(): Promise<void> {
    for (let attempt = 1; attempt <= REBALANCE_ATTEMPTS_MAX; attempt++) {
      if (this.#state !== "started") return;
      try {
        if (await this.#rebalance()) return;
      } catch (error) {
        this.#logger.log("warn", "Rebalance failed: retrying", {
          group: this.group,
          reason: describeError(error),
        });
      }
      // Release everything and wait for the others to settle, as MetaQ does.
      await this.#stopReaders([...this.#readers.keys()]);
      await this.#commit(true).catch(() => {});
      await this.#releaseOwned([...this.#owned]);
      this.#last = undefined;
      await sleep(this.options.syncTimeMs ?? 5000);
    }
    this.#logger.log("error", "Rebalance failed after every attempt", { group: this.group });
  }

  /** One balancing pass; false when a partition is still owned by another consumer. */
  async #rebalance(): Promise<boolean> {
    const { zk } = this.options;
    const consumers = await this.#consumersPerTopic();
    const partitions = new Map<string, string[]>();
    for (const topic of this.#handlers.keys()) {
      await zk.getChildren(`${this.layout.brokerTopicsSub}/${topic}`, this.#onChange).catch(
        () => [],
      );
      partitions.set(topic, await subscribablePartitions(zk, this.layout, topic));
    }
    const brokers = await readBrokers(zk, this.layout);
    const snapshot = {
      consumers: JSON.stringify([...consumers]),
      partitions: JSON.stringify([...partitions]),
      brokers: JSON.stringify(
        [...brokers].map(([id, entry]) => [id, entry.master, [...entry.slaves]]),
      ),
    };
    const last = this.#last;
    if (
      last && last.consumers === snapshot.consumers && last.partitions === snapshot.partitions &&
      last.brokers === snapshot.brokers
    ) return true;
    this.counters.rebalances += 1;
    const wanted = new Map<string, { topic: string; name: string }>();
    for (const [topic, names] of partitions) {
      const strategy = this.options.strategy ?? "DEFAULT";
      for (
        const name of partitionsFor(
          strategy,
          this.consumerIdString,
          consumers.get(topic) ?? [],
          names,
        )
      ) {
        wanted.set(`${topic}/${name}`, { topic, name });
      }
    }
    // Stop what is no longer ours or must move to another broker; commit it; release it.
    const moving = [...this.#readers].filter(([key, running]) =>
      !wanted.has(key) || running.address !== this.#address(brokers, running.name)
    ).map(([key]) => key);
    await this.#stopReaders(moving);
    if (moving.length > 0) await this.options.beforeCommit?.();
    await this.#commit(true);
    await this.#releaseOwned([...this.#owned].filter((key) => !wanted.has(key)));
    for (const [key, { topic, name }] of wanted) {
      if (!this.#owned.has(key) && !(await this.#claim(topic, name))) return false;
    }
    for (const [key, { topic, name }] of wanted) {
      if (!this.#readers.has(key)) await this.#startReader(key, topic, name, brokers);
    }
    this.#last = snapshot;
    return true;
  }

  /** Topic -> sorted consumer ids of the group (getConsumersPerTopic); watches the ids. */
  async #consumersPerTopic(): Promise<Map<string, string[]>> {
    const { zk } = this.options;
    const dir = this.layout.groupIdsPath(this.group);
    const ids = await zk.getChildren(dir, this.#onChange);
    const perTopic = new Map<string, string[]>();
    for (const id of ids) {
      const topics = await readText(zk, `${dir}/${id}`);
      if (topics === undefined) continue; // left while we read
      for (const topic of topics.split(",").filter(Boolean)) {
        const list = perTopic.get(topic) ?? [];
        list.push(id);
        perTopic.set(topic, list);
      }
    }
    for (const list of perTopic.values()) list.sort();
    return perTopic;
  }

  async #claim(topic: string, name: string): Promise<boolean> {
    const { zk } = this.options;
    const path = `${this.layout.groupOwnersPath(this.group, topic)}/${name}`;
    try {
      await createEphemeral(zk, path, this.consumerIdString);
    } catch (error) {
      if (!isZkError(error, "nodeExists")) throw error;
      // Ours from before a lost connection (createEphemeralPathExpectConflict), or still someone's.
      if ((await readText(zk, path)) !== this.consumerIdString) return false;
    }
    this.#owned.add(`${topic}/${name}`);
    return true;
  }

  async #releaseOwned(keys: string[]): Promise<void> {
    for (const key of keys) {
      const [topic, name] = splitKey(key);
      this.#owned.delete(key);
      await deleteIfExists(
        this.options.zk,
        `${this.layout.groupOwnersPath(this.group, topic)}/${name}`,
      )
        .catch((error) =>
          this.#logger.log("warn", "Cannot release a partition", {
            key,
            reason: describeError(error),
          })
        );
    }
  }

  async #startReader(
    key: string,
    topic: string,
    name: string,
    brokers: Map<number, BrokerEntry>,
  ): Promise<void> {
    const address = this.#address(brokers, name);
    if (address === undefined) {
      this.#logger.log("warn", "No broker registered for a partition", { topic, partition: name });
      return;
    }
    const stored = await this.#offsets.load(this.group, topic, name);
    if (stored !== undefined) this.#committed.set(key, stored.offset);
    const start = stored?.offset ?? (this.options.start === "latest" ? "latest" : 0);
    const { handler, autoAck } = this.#handlers.get(topic)!;
    const record = (message: ConsumedMessage) =>
      this.#lastIds.set(key, { id: message.id, nextOffset: message.nextOffset });
    const reader = new PartitionReader({
      client: this.#clientFor(address),
      topic,
      partition: Number(name.slice(name.indexOf("-") + 1)),
      brokerId: Number(name.slice(0, name.indexOf("-"))),
      group: this.group,
      start,
      maxSize: this.options.maxSize ?? 1024 * 1024,
      maxDelayFetchMs: this.options.maxDelayFetchMs ?? 5000,
      maxFetchRetries: this.options.maxFetchRetries ?? 5,
      autoAck,
      handler: autoAck
        ? async (message) => {
          await handler(message);
          record(message);
        }
        : (message) =>
          handler({
            ...message,
            ack: () => {
              message.ack();
              record(message);
            },
            rollback: () => message.rollback(),
          }),
      reject: (message, error) => this.#rejection!.reject(message, error),
      mayDeliver: () => this.#owned.has(key),
      counters: this.counters,
      logger: this.#logger,
    });
    this.#readers.set(key, { topic, name, address, reader });
    this.options.onEvent?.({
      kind: "started",
      topic,
      partition: name,
      offset: start,
      broker: address,
    });
    reader.start();
  }

  async #stopReaders(keys: string[]): Promise<void> {
    for (const key of keys) {
      const running = this.#readers.get(key);
      if (!running) continue;
      await running.reader.stop();
      this.#readers.delete(key);
      this.#stopped.set(key, running);
      this.options.onEvent?.({
        kind: "stopped",
        topic: running.topic,
        partition: running.name,
        offset: running.reader.ackedOffset,
      });
    }
  }

  /** Writes every changed position (of running and just stopped readers) to ZooKeeper. */
  async #commit(throwOnFailure: boolean): Promise<void> {
    const all = [...this.#readers, ...this.#stopped];
    for (const [key, running] of all) {
      const offset = running.reader.ackedOffset;
      if (offset === undefined || this.#committed.get(key) === offset) {
        this.#stopped.delete(key);
        continue;
      }
      const last = this.#lastIds.get(key);
      const messageId = last && last.nextOffset === offset ? last.id : -1n;
      try {
        await this.#offsets.commit(this.group, running.topic, running.name, { offset, messageId });
        this.#committed.set(key, offset);
        this.#stopped.delete(key);
        this.counters.commits += 1;
      } catch (error) {
        this.counters.commitFailures += 1;
        this.#logger.log("warn", "Cannot commit an offset to ZooKeeper", {
          key,
          reason: describeError(error),
        });
        if (throwOnFailure) throw error;
      }
    }
  }

  #address(brokers: Map<number, BrokerEntry>, name: string): string | undefined {
    const brokerId = Number(name.slice(0, name.indexOf("-")));
    return readAddress(brokers.get(brokerId), (count) => Math.floor(Math.random() * count));
  }

  #clientFor(address: string): MetaqClient {
    let client = this.#clients.get(address);
    if (!client) {
      client = new MetaqClient({
        ...this.options.clientOptions,
        brokers: [address],
        routeToLeaders: false,
      });
      this.#clients.set(address, client);
    }
    return client;
  }

  #idPath(): string {
    return `${this.layout.groupIdsPath(this.group)}/${this.consumerIdString}`;
  }

  #every(periodMs: number, action: () => Promise<void>): void {
    const schedule = () => {
      const timer = setTimeout(async () => {
        this.#timers = this.#timers.filter((t) => t !== timer);
        if (this.#state !== "started") return;
        await action().catch(() => {});
        if (this.#state === "started") schedule();
      }, periodMs);
      this.#timers.push(timer);
    };
    schedule();
  }

  /** Balancing, commits and close run one at a time, in call order. */
  #serial<T>(step: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(step, step);
    this.#tail = run.catch(() => {});
    return run;
  }
}

/** MetaQ's default consumer id: `<local address>-<pid>-<uuid>`. */
function defaultConsumerId(): string {
  let host = os.hostname();
  for (const addresses of Object.values(os.networkInterfaces())) {
    const ipv4 = addresses?.find((address) => address.family === "IPv4" && !address.internal);
    if (ipv4) {
      host = ipv4.address;
      break;
    }
  }
  return `${host}-${process.pid}-${crypto.randomUUID()}`;
}

function splitKey(key: string): [string, string] {
  const slash = key.lastIndexOf("/");
  return [key.slice(0, slash), key.slice(slash + 1)];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * @module Broker: MetaQ's command semantics over the message store. `put` validates and appends
 * (reply after the append is acknowledged), `get` serves raw slices, `offset` answers segment
 * starts, `stats` renders MetaQ's items. Checks and reply texts follow MetaQ's
 * BrokerCommandProcessor in order. Knows nothing about sockets: replies are values that the
 * server encodes. Transactions, groups and replication plug in through hooks.
 */
import { Buffer } from "node:buffer";
import process from "node:process";
import type { Clock } from "../clock.ts";
import { type Config, type TopicSettings, topicSettings } from "../config/config.ts";
import { topicNameProblem } from "../config/names.ts";
import { metaqChecksum } from "../crc32.ts";
import { describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { GetCommand, OffsetCommand, PutCommand, SyncCommand } from "../protocol/commands.ts";
import { encodeValueHeader } from "../protocol/encoder.ts";
import { type Reply, type RequestContext, result } from "../protocol/reply.ts";
import type { MessageIdGenerator } from "../protocol/message_id.ts";
import { type MessageStore, partitionKey } from "../store/message_store.ts";
import type { PartitionLog } from "../store/partition_log.ts";
import type { TopicMetadata } from "./metadata.ts";
import { BrokerStats } from "./stats.ts";
import { renderStats } from "./stats_report.ts";

export const METAQ_VERSION = "metaq-0.1.0";

/** Handles transactional puts (a put carrying a txkey); absent until transactions exist. */
export interface TransactionalPutHandler {
  put(
    command: PutCommand,
    context: RequestContext,
    partition: number,
    done: (reply: Reply) => void,
  ): void;
}

/** A put that passed every check, ready to be stored; see `Broker.appendHook`. */
export interface CheckedPut {
  readonly topic: string;
  readonly partition: number;
  readonly flag: number;
  readonly body: Uint8Array;
  readonly checksum: number;
}

export type AppendHook = (put: CheckedPut, done: (reply: Reply) => void) => boolean;

/** Filters records served to a group (MetaQ's server-side group filters). */
export type RecordFilter = (
  bytes: Uint8Array,
  baseOffset: number,
) => { bytes: Uint8Array; examined: number };

export interface BrokerOptions {
  readonly config: Config;
  readonly store: MessageStore;
  readonly ids: MessageIdGenerator;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Uniform random number in [0, 1), for partition -1. */
  readonly random?: () => number;
}

export class Broker {
  readonly config: Config;
  readonly store: MessageStore;
  readonly stats: BrokerStats;
  readonly ids: MessageIdGenerator;
  readonly logger: Logger;
  /** Partitions closed by an operator (`T-N` keys); in memory only, as in MetaQ. */
  readonly closedPartitions = new Set<string>();
  transactions: TransactionalPutHandler | undefined;
  /**
   * Takes over the append of a checked put (replication: the record goes through Raft and is
   * answered on commit). Returns false to let the broker append locally.
   */
  appendHook: AppendHook | undefined;
  /** Adds facts to `meta` replies (the cluster adds partition leaders). */
  metadataDecorator: ((metadata: TopicMetadata) => TopicMetadata) | undefined;
  /** Server-side filters by `topic/group` (see groups). */
  filterFor: (topic: string, group: string) => RecordFilter | undefined = () => undefined;
  /** Highest offset consumers may read (replication caps it at the commit offset). */
  readLimit: (topic: string, partition: number, log: PartitionLog) => number = (_t, _p, log) =>
    log.ackedEnd;
  /** Current connection count, supplied by the server. */
  connectionCount: () => number = () => 0;
  #brokerUrl = "meta://127.0.0.1:8123";
  #port = 8123;
  readonly #random: () => number;
  readonly #settings = new Map<string, TopicSettings | undefined>();

  constructor(options: BrokerOptions) {
    this.config = options.config;
    this.store = options.store;
    this.ids = options.ids;
    this.logger = options.logger;
    this.stats = new BrokerStats(options.clock);
    this.#random = options.random ?? Math.random;
  }

  /** Records where the server listens, for MetaQ's `meta://host:port` texts and `stats`. */
  setListenAddress(host: string, port: number): void {
    this.#port = port;
    this.#brokerUrl = `meta://${this.config.system.hostName || host}:${port}`;
  }

  get port(): number {
    return this.#port;
  }

  get brokerUrl(): string {
    return this.#brokerUrl;
  }

  /** Settings of `topic`, or undefined when the name is invalid or no section accepts it. */
  topicSettings(topic: string): TopicSettings | undefined {
    if (this.#settings.has(topic)) return this.#settings.get(topic);
    const settings = topicNameProblem(topic) ? undefined : topicSettings(this.config, topic);
    if (this.#settings.size < 100_000) this.#settings.set(topic, settings);
    return settings;
  }

  put(command: PutCommand, context: RequestContext, done: (reply: Reply) => void): void {
    this.stats.counters.cmdPut += 1;
    const { topic } = command;
    if (command.txKey && command.txKey.kind !== "null") {
      // The handler runs MetaQ's transactional checks, which come before the plain ones.
      if (this.transactions) {
        return this.transactions.put(command, context, command.partition, done);
      }
      if (command.partition < 0) {
        return done(result(500, `Invalid partition for transaction command:${command.partition}`));
      }
      return done(result(500, notStarted(command.txKey.kind, command.txKey.text)));
    }
    if (
      this.closedPartitions.size > 0 &&
      this.closedPartitions.has(partitionKey(topic, command.partition))
    ) {
      return done(
        this.#failedPut(
          command,
          403,
          `partition[${this.config.system.brokerId}-${command.partition}] has been closed`,
          command.partition,
        ),
      );
    }
    const checked = this.checkPut(command);
    if (!checked.ok) return done(checked.reply);
    const { partition, checksum, settings } = checked;
    const log = this.store.get(topic, partition);
    if (this.appendHook) {
      const put = { topic, partition, flag: command.flag, body: command.body, checksum };
      if (this.appendHook(put, done)) {
        return this.countPut(topic, partition, command.body.length, settings);
      }
    }
    if (log) return this.#append(log, { command, partition, checksum, settings }, done);
    this.store.getOrCreate(topic, partition).then(
      (created) => this.#append(created, { command, partition, checksum, settings }, done),
      (error) => done(this.#failedPut(command, 500, describeError(error), partition)),
    );
  }

  /**
   * MetaQ's put checks after the closed-partition one, in its order: topic accepted, partition
   * in range (-1 picks one at random), size, checksum, and (metaq) a partition refused as
   * damaged at start-up. A failure is counted and comes back as the reply to send. Plain and
   * transactional puts both pass here.
   */
  checkPut(
    command: PutCommand,
  ):
    | { ok: true; partition: number; checksum: number; settings: TopicSettings }
    | { ok: false; reply: Reply } {
    const { topic } = command;
    const refuse = (code: number, detail: string, partition: number) => ({
      ok: false as const,
      reply: this.#failedPut(command, code, detail, partition),
    });
    const settings = this.topicSettings(topic);
    if (!settings) {
      const problem = topicNameProblem(topic);
      const detail = problem
        ? `The server do not accept topic ${topic}: ${problem}`
        : `The server do not accept topic ${topic}`;
      return refuse(500, detail, command.partition);
    }
    const partition = command.partition === -1
      ? Math.floor(this.#random() * settings.numPartitions)
      : command.partition;
    if (partition < 0 || partition >= settings.numPartitions) {
      return refuse(500, `wrong partition ${partition}`, partition);
    }
    const maxBytes = this.config.system.maxMessageSize;
    if (command.oversizedBytes !== undefined || command.body.length > maxBytes) {
      const bytes = command.oversizedBytes ?? command.body.length;
      return refuse(
        400,
        `Cannot accept message: body of ${bytes} bytes exceeds maxMessageSize ${maxBytes}`,
        partition,
      );
    }
    const checksum = metaqChecksum(command.body);
    if (command.checksum !== -1 && command.checksum !== checksum) {
      return refuse(
        500,
        "Checksum failure,message may be corrupted when transfering on networking.",
        partition,
      );
    }
    const damaged = this.store.get(topic, partition)
      ? undefined
      : this.store.failure(topic, partition);
    if (damaged) return refuse(500, describeError(damaged), partition);
    return { ok: true, partition, checksum, settings };
  }

  /** Counts an accepted put's bytes (and realtime stats for `stat` topics). */
  countPut(topic: string, partition: number, bytes: number, settings: TopicSettings): void {
    this.stats.counters.putBytes += bytes;
    if (settings.stat) {
      this.stats.record("cmd_put", topic, `${this.config.system.brokerId}-${partition}`);
      this.stats.record("message_size", topic, String(partition), bytes);
    }
  }

  get(command: GetCommand): Reply {
    this.stats.counters.cmdGet += 1;
    const { topic, partition, group } = command;
    const stat = this.topicSettings(topic)?.stat === true;
    if (stat) this.stats.record("cmd_get", topic, group);
    const miss = () => {
      this.stats.counters.getMiss += 1;
      if (stat) this.stats.record("get_miss", topic, group);
    };
    if (
      this.closedPartitions.size > 0 && this.closedPartitions.has(partitionKey(topic, partition))
    ) {
      return result(403, `Partition[${this.config.system.brokerId}-${partition}] has been closed`);
    }
    const log = this.store.get(topic, partition);
    if (!log) {
      const damaged = this.store.failure(topic, partition);
      if (damaged) return result(500, describeError(damaged));
      miss();
      return result(404, `The topic \`${topic}\` in partition \`${partition}\` is not exists`);
    }
    if (command.maxSize <= 0) return result(400, `Bad request,invalid max size:${command.maxSize}`);
    const end = this.readLimit(topic, partition, log);
    if (command.offset < log.startOffset) {
      miss();
      this.stats.counters.cmdOffset += 1;
      return result(301, String(log.startOffset));
    }
    if (command.offset >= end) {
      miss();
      if (
        command.offset > end &&
        (this.config.system.updateConsumerOffsets || command.offsetIsLongMax)
      ) {
        this.stats.counters.cmdOffset += 1;
        return result(301, String(end));
      }
      return result(404, `Could not find message at position ${command.offset}`);
    }
    const maxBytes = Math.min(command.maxSize, this.config.system.maxTransferSize);
    const filter = this.filterFor(topic, group);
    if (filter) return this.#filteredGet(command, log, { end, maxBytes, filter });
    const length = log.readableAt(command.offset, maxBytes, end);
    const header = encodeValueHeader(length, command.opaque);
    // Not zero-filled: every byte is overwritten by the header and the read below.
    const frame: Uint8Array = Buffer.allocUnsafe(header.length + length);
    frame.set(header, 0);
    log.readInto(frame, header.length, command.offset, length);
    this.stats.served(topic, partition, length);
    return { kind: "frame", bytes: frame };
  }

  offset(command: OffsetCommand): Reply {
    this.stats.counters.cmdOffset += 1;
    const { topic, partition } = command;
    if (this.topicSettings(topic)?.stat) this.stats.record("cmd_offset", topic, command.group);
    const log = this.store.get(topic, partition);
    if (!log) {
      return result(404, `The topic \`${topic}\` in partition \`${partition}\` is not exists`);
    }
    return result(
      200,
      String(log.segmentStartFor(command.offset, this.readLimit(topic, partition, log))),
    );
  }

  /** `sync` has a handler only on a replica of MetaQ's sync replication, which metaq replaces. */
  sync(_command: SyncCommand): Reply {
    return result(
      503,
      "Cannot run sync: metaq replicates with Raft-lite, not MetaQ's sync slave protocol",
    );
  }

  version(): Reply {
    return result(200, METAQ_VERSION);
  }

  statsReply(item: string | undefined): Reply {
    if (item === "config") {
      if (this.config.fileText === undefined) {
        return result(
          500,
          `Config file not found:${this.config.filePath ?? "(none: running on defaults)"}`,
        );
      }
      return result(200, this.config.fileText);
    }
    return result(200, renderStats(this, item));
  }

  /** pid, broker id and similar facts for the general stats item. */
  get processInfo(): { pid: number } {
    return { pid: process.pid };
  }

  #append(
    log: PartitionLog,
    input: { command: PutCommand; partition: number; checksum: number; settings: TopicSettings },
    done: (reply: Reply) => void,
  ): void {
    const { command, partition, checksum, settings } = input;
    const id = this.ids.nextId();
    let offset: number;
    const onDone = (error?: Error) => {
      if (!error) {
        return done({
          kind: "result",
          code: 200,
          text: `${id} ${partition} ${offset}`,
          ascii: true,
        });
      }
      this.stats.counters.putFailed += 1;
      done(result(500, this.#putFailure(command.topic, partition, describeError(error))));
    };
    try {
      offset = log.append({ id, flag: command.flag, data: command.body, checksum }, onDone);
    } catch (error) {
      return onDone(error as Error);
    }
    this.countPut(command.topic, partition, command.body.length, settings);
  }

  #filteredGet(
    command: GetCommand,
    log: PartitionLog,
    options: { end: number; maxBytes: number; filter: RecordFilter },
  ): Reply {
    const slice = log.read(command.offset, options.maxBytes, options.end);
    const { bytes, examined } = options.filter(slice, command.offset);
    if (bytes.length === 0) return result(301, String(command.offset + examined));
    const header = encodeValueHeader(bytes.length, command.opaque);
    const frame = new Uint8Array(header.length + bytes.length);
    frame.set(header, 0);
    frame.set(bytes, header.length);
    this.stats.served(command.topic, command.partition, bytes.length);
    return { kind: "frame", bytes: frame };
  }

  /** Counts a failed put and builds MetaQ's reply for it. */
  #failedPut(command: PutCommand, code: number, detail: string, partition: number): Reply {
    this.stats.counters.putFailed += 1;
    if (this.topicSettings(command.topic)?.stat) {
      this.stats.record("put_failed", command.topic, String(partition));
    }
    return result(code, this.#putFailure(command.topic, partition, detail));
  }

  #putFailure(topic: string, partition: number, detail?: string): string {
    const base =
      `Put message to [broker '${this.#brokerUrl}'] [partition '${topic}-${partition}'] failed.`;
    return detail ? `${base}Detail:${detail}` : base;
  }
}

function notStarted(kind: "local" | "xa", key: string): string {
  return kind === "local"
    ? `Local transaction '${key}' has not been started.`
    : `XA transaction '${key}' has not been started.`;
}

/**
 * @module Broker: MetaQ's command semantics over the Log port. `put` validates and appends
 * (reply once the log acknowledges), `read` is the one read path (TCP `get`, HTTP fetch, the
 * live stream and the dashboard all use it), `offset` answers segment starts, `stats` renders
 * MetaQ's items. Checks and reply texts follow MetaQ's BrokerCommandProcessor in order.
 *
 * The broker knows no sockets and no cluster: the same code runs over local segment logs and
 * over replicated ones (`Logs` decides which). It never asks whether it leads a partition: a
 * log that cannot take an append refuses it with a typed error, and the edge (lib/server) has
 * already sent the request to the node that should serve it.
 */
import process from "node:process";
import type { Clock } from "../clock.ts";
import {
  type Config,
  defaultTopicSettings,
  type TopicSettings,
  topicSettings,
} from "../config/config.ts";
import { topicNameProblem } from "../config/names.ts";
import { metaqChecksum } from "../crc32.ts";
import { BrokerError, describeError } from "../errors.ts";
import { FETCH_WAIT_MS_MAX, READ_WAIT_MS } from "../limits.ts";
import type { Logger } from "../log.ts";
import type { Random } from "../prng.ts";
import type { GetCommand, OffsetCommand, PutCommand, SyncCommand } from "../protocol/commands.ts";
import { checkBatch, formatBatchReply, stampIds } from "../protocol/batch_put.ts";
import { encodeValueHeader } from "../protocol/encoder.ts";
import type { MessageIdGenerator } from "../protocol/message_id.ts";
import { errorReply, type Reply, type RequestContext, result } from "../protocol/reply.ts";
import { encodeRecord, walkRecords } from "../protocol/record.ts";
import { type AppendOutcome, isInternalTopic, type Log, type Logs } from "../store/log.ts";
import { BrokerStats } from "./stats.ts";
import type { TopicCatalogue } from "../config/topic_catalogue.ts";

/** A batched put's request (`bput`, lib/protocol/batch_put.ts). */
export interface BatchPut {
  readonly topic: string;
  /** -1: the broker picks one for the whole batch. */
  readonly partition: number;
  readonly count: number;
  /** `count` records in MetaQ's layout with ids 0; the ids are written into these bytes. */
  readonly body: Uint8Array;
  readonly opaque: number;
}

/** MetaQ's text for a put whose checksum does not match its body (its spelling kept). */
const CHECKSUM_FAILURE =
  "Checksum failure,message may be corrupted when transfering on networking.";
const EMPTY = new Uint8Array(0);

/** How a forwarded put is appended at most once (see `fput` in commands.ts). */
export interface PutOnce {
  /** The message id the forwarding node chose. */
  readonly id: bigint;
  /** No earlier attempt of this put can lie before this offset. */
  readonly since: number;
  /** An earlier attempt went to another leader: look for the id before appending. */
  readonly retry: boolean;
  /**
   * The term in which the forwarding node saw this node lead (0: it did not know). A first
   * attempt served in another term may be a late copy: a link that stalled can deliver it long
   * after the forwarder gave up and sent it again elsewhere, so it is looked for too.
   */
  readonly epoch: number;
}
import { renderStats, type StatsItems } from "./stats_report.ts";
import { type BodyReader, FILE_FRAME_BYTES_MIN, FramePool } from "./frame_pool.ts";

export const METAQ_VERSION = "metaq-0.1.0";

/**
 * Decides what part of a slice a group is served (MetaQ's server-side group filters): its first
 * `serve` bytes as they are, or a move `skip` bytes on (lib/broker/groups/filter.ts).
 */
export type RecordFilter = (bytes: Uint8Array) => { serve: number } | { skip: number };

/** What a read finds at an offset. */
export type ReadOutcome =
  /** Readable bytes, `length` of them from `offset` (up to the end of one segment). */
  | { readonly kind: "slice"; readonly log: Log; readonly offset: number; readonly length: number }
  /** The offset is outside the log: read from `offset` instead (MetaQ's 301). */
  | { readonly kind: "moved"; readonly offset: number }
  /** Nothing at or after the offset yet (MetaQ's 404 at the end). */
  | { readonly kind: "empty" }
  | { readonly kind: "refused"; readonly error: BrokerError };

export interface ReadRequest {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly maxBytes: number;
  /** The consumer asked for Long.MAX_VALUE: it wants the end (301 with the end offset). */
  readonly wantsEnd?: boolean;
}

export interface BrokerOptions {
  readonly config: Config;
  readonly logs: Logs;
  readonly ids: MessageIdGenerator;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Picks the partition of a put to partition -1. */
  readonly random: Random;
  /** Server-side filters by topic and group (consumer groups provide them). */
  readonly filterFor?: (topic: string, group: string) => RecordFilter | undefined;
  /** Client connections open now (the TCP edge knows). */
  readonly connectionCount?: () => number;
  /**
   * Topics an operator created, grew or deleted (topic_catalogue.ts); its entries override the
   * configuration. Undefined while there is none yet (a cluster's metadata not yet read).
   */
  readonly catalogue?: () => TopicCatalogue | undefined;
}

export class Broker {
  readonly config: Config;
  readonly logs: Logs;
  readonly stats: BrokerStats;
  readonly ids: MessageIdGenerator;
  readonly logger: Logger;
  /** Partitions closed by an operator (`T-N` keys); in memory only, as in MetaQ. */
  readonly closedPartitions = new Set<string>();
  /** Long polls (`fetch`) waiting for records: each answers when called. */
  readonly #waiting = new Set<() => void>();
  /** Buffers of `get` answers, reused once a connection wrote them (frame_pool.ts). */
  readonly #frames = new FramePool();
  #stopWaiting = false;
  readonly #options: BrokerOptions;
  #brokerUrl = "meta://127.0.0.1:8123";
  #port = 8123;
  readonly #settings = new Map<string, TopicSettings | undefined>();
  /** The catalogue and its version the cached settings were computed with. */
  #settingsOf: { catalogue?: TopicCatalogue; version: number } = { version: -1 };

  constructor(options: BrokerOptions) {
    this.#options = options;
    this.config = options.config;
    this.logs = options.logs;
    this.ids = options.ids;
    this.logger = options.logger;
    this.stats = new BrokerStats(options.clock);
  }

  /** Records where the client port listens, for MetaQ's `meta://host:port` texts and `stats`. */
  listening(host: string, port: number): void {
    this.#port = port;
    this.#brokerUrl = `meta://${this.config.system.hostName || host}:${port}`;
  }

  get port(): number {
    return this.#port;
  }

  get brokerUrl(): string {
    return this.#brokerUrl;
  }

  get connectionCount(): number {
    return this.#options.connectionCount?.() ?? 0;
  }

  /**
   * Settings of `topic`, or undefined when the name is invalid, no section accepts it and the
   * catalogue has not created it, or the catalogue says it is deleted. A catalogue entry gives
   * the partition count (configuration grown past it wins: counts never shrink).
   */
  topicSettings(topic: string): TopicSettings | undefined {
    const catalogue = this.#options.catalogue?.();
    const cached = this.#settingsOf;
    if (cached.catalogue !== catalogue || cached.version !== (catalogue?.version ?? 0)) {
      this.#settings.clear();
      this.#settingsOf = { catalogue, version: catalogue?.version ?? 0 };
    }
    if (this.#settings.has(topic)) return this.#settings.get(topic);
    const settings = this.#settingsFor(topic, catalogue);
    if (this.#settings.size < 100_000) this.#settings.set(topic, settings);
    return settings;
  }

  /**
   * Changes whenever the catalogue does (a topic created, grown or deleted); the configuration
   * itself does not change while the broker runs.
   */
  get topicsVersion(): number {
    return this.#options.catalogue?.()?.version ?? 0;
  }

  /** What the catalogue says of `topic` (undefined without a catalogue or an entry). */
  catalogueEntry(topic: string): ReturnType<TopicCatalogue["entry"]> {
    return isInternalTopic(topic) ? undefined : this.#options.catalogue?.()?.entry(topic);
  }

  #settingsFor(topic: string, catalogue: TopicCatalogue | undefined): TopicSettings | undefined {
    if (topicNameProblem(topic)) return undefined;
    const configured = topicSettings(this.config, topic);
    const entry = isInternalTopic(topic) ? undefined : catalogue?.entry(topic);
    if (!entry) return configured;
    if (entry.deleted) return undefined;
    const base = configured ?? defaultTopicSettings(this.config, topic);
    return { ...base, numPartitions: Math.max(base.numPartitions, entry.partitions) };
  }

  /**
   * Why clients may not use `topic`, in MetaQ's words with the reason after a colon; undefined
   * when they may.
   */
  topicRefusal(topic: string): string | undefined {
    const refused = `The server do not accept topic ${topic}`;
    const problem = topicNameProblem(topic);
    if (problem) return `${refused}: ${problem}`;
    if (isInternalTopic(topic)) {
      return `${refused}: topics starting with '__' hold the broker's own state`;
    }
    if (this.topicSettings(topic)) return undefined;
    if (this.catalogueEntry(topic)?.deleted) {
      return `${refused}: it was deleted (metaq topics create ${topic} creates it again)`;
    }
    const sections = this.config.topics.map((section) => section.pattern).join(", ");
    return `${refused}: no [topic=...] section of the broker's configuration matches it ` +
      `(sections: ${sections})`;
  }

  /**
   * Whether `topic` is there for clients: a partition of it holds a log here (or one refused as
   * damaged at start-up), an operator created it (the catalogue), or a section of the
   * configuration names it exactly (the definition the HTTP API uses); never when deleted.
   */
  topicExists(topic: string): boolean {
    if (isInternalTopic(topic) || !this.topicSettings(topic)) return false;
    if (this.catalogueEntry(topic)?.partitions !== undefined) return true;
    if (this.config.topics.some((section) => section.pattern === topic)) return true;
    if (this.logs.list().some((entry) => entry.topic === topic)) return true;
    return [...this.logs.failures().keys()].some((name) =>
      name.slice(0, name.lastIndexOf("-")) === topic
    );
  }

  /**
   * Topics that are there by name, whether or not a partition holds a log: those a section names
   * exactly and those an operator created (the catalogue), deleted ones left out; sorted.
   */
  namedTopics(): string[] {
    const names = new Set<string>();
    for (const section of this.config.topics) {
      if (!section.pattern.includes("*") && !isInternalTopic(section.pattern)) {
        names.add(section.pattern);
      }
    }
    for (const [name, entry] of this.#options.catalogue?.()?.entries() ?? []) {
      if (entry.partitions !== undefined) names.add(name);
    }
    return [...names].filter((name) => this.topicSettings(name) !== undefined).sort();
  }

  /** Whether `topic` is one of namedTopics() (without listing them). */
  isNamedTopic(topic: string): boolean {
    if (isInternalTopic(topic) || !this.topicSettings(topic)) return false;
    return this.catalogueEntry(topic)?.partitions !== undefined ||
      this.config.topics.some((section) => section.pattern === topic);
  }

  /**
   * The partition a plain put will go to (partition -1 picked here, once), or undefined when
   * the put will be refused by its checks: the edge then lets this node answer it.
   */
  putPartition(command: PutCommand): number | undefined {
    const settings = this.topicSettings(command.topic);
    if (!settings || isInternalTopic(command.topic) || command.oversizedBytes !== undefined) {
      return undefined;
    }
    const partition = command.partition === -1
      ? this.#options.random.int(0, settings.numPartitions)
      : command.partition;
    return partition >= 0 && partition < settings.numPartitions ? partition : undefined;
  }

  /**
   * A plain put (no transaction key: those go to the transactions part). `once`, for a put
   * another node forwarded here: the message id it chose, and on a retry the offset from which
   * the log is searched for that id first, so that the message is appended at most once.
   */
  put(
    command: PutCommand,
    _context: RequestContext,
    done: (reply: Reply) => void,
    once?: PutOnce,
  ): void {
    this.stats.counters.cmdPut += 1;
    const { topic } = command;
    const closed = this.#closedRefusal(command);
    if (closed) return done(closed);
    const checked = this.checkPut(command);
    if (!checked.ok) return done(checked.reply);
    const { partition, checksum, settings } = checked;
    const append = (log: Log) => {
      const id = once?.id ?? this.ids.nextId();
      const appended = (outcome: AppendOutcome) => {
        if (outcome.ok) {
          return done({
            kind: "result",
            code: 200,
            text: `${id} ${partition} ${outcome.offset}`,
            ascii: true,
          });
        }
        this.stats.counters.putFailed += 1;
        done(errorReply(this.#putError(outcome.error, topic, partition)));
      };
      const record = { id, flag: command.flag, data: command.body, checksum };
      if (once && (once.retry || once.epoch !== log.writer.epoch)) {
        const late = lateForwardRefusal(once, log);
        if (late) return done(errorReply(late));
        log.appendMissing(encodeRecord(record), once.since, appended);
      } else {
        log.appendRecord(record, appended);
      }
      this.countPut(topic, partition, command.body.length, settings);
    };
    this.#withLog(topic, partition, append, (failure) => {
      done(this.#failedPut(command, failure.kind, describeError(failure), partition));
    });
  }

  /**
   * A batched put: the checks of a plain put (closed partition, topic, partition, damage) once,
   * size and checksum per record, then the records appended as one batch, as they came with
   * the ids chosen here written in. All or nothing.
   */
  putBatch(batch: BatchPut, done: (reply: Reply) => void): void {
    this.stats.counters.cmdPut += batch.count;
    const { topic, count, body } = batch;
    const asPut: PutCommand = {
      kind: "put",
      topic,
      partition: batch.partition,
      flag: 0,
      checksum: -1,
      opaque: batch.opaque,
      body: EMPTY,
    };
    // A refusal of the batch counts each of its messages as a failed put (#failedPut: one).
    const refuse = (reply: Reply) => {
      this.stats.counters.putFailed += count - 1;
      done(reply);
    };
    const fail = (kind: BrokerError["kind"], detail: string, partition: number) =>
      refuse(this.#failedPut(asPut, kind, detail, partition));
    const closed = this.#closedRefusal(asPut);
    if (closed) return refuse(closed);
    const checked = this.checkPut(asPut);
    if (!checked.ok) return refuse(checked.reply);
    const { partition, settings } = checked;
    const maxBytes = this.config.system.maxMessageSize;
    const records = checkBatch(body, count, maxBytes);
    if (!records.ok) {
      const { problem } = records;
      if (problem.kind === "messageTooLarge") {
        const detail =
          `Cannot accept message: body of ${problem.bytes} bytes exceeds maxMessageSize ${maxBytes}`;
        return fail("messageTooLarge", detail, partition);
      }
      if (problem.kind === "checksumMismatch") {
        return fail("checksumMismatch", CHECKSUM_FAILURE, partition);
      }
      return fail("badRequest", problem.detail, partition);
    }
    const append = (log: Log) => {
      const runs = stampIds(body, count, this.ids);
      log.appendBatch(body, count, (outcome) => {
        if (outcome.ok) {
          const text = formatBatchReply(partition, outcome.offset, runs);
          return done({ kind: "result", code: 200, text, ascii: true });
        }
        this.stats.counters.putFailed += count;
        done(errorReply(this.#putError(outcome.error, topic, partition)));
      });
      if (!settings.stat) this.stats.counters.putBytes += records.payloadBytes;
      else {
        walkRecords(body, maxBytes, (_position, length) => {
          this.countPut(topic, partition, length, settings);
        });
      }
    };
    this.#withLog(topic, partition, append, (failure) => {
      fail(failure.kind, describeError(failure), partition);
    });
  }

  /** MetaQ's first put check: the refusal of a put to a partition an operator closed. */
  #closedRefusal(command: PutCommand): Reply | undefined {
    const { topic, partition } = command;
    if (this.closedPartitions.size === 0 || !this.closedPartitions.has(`${topic}-${partition}`)) {
      return undefined;
    }
    const detail = `partition[${this.config.system.brokerId}-${partition}] has been closed`;
    return this.#failedPut(command, "partitionClosed", detail, partition);
  }

  /** Calls `use` with the partition's log, opening it first if needed; `fail` if it cannot. */
  #withLog(
    topic: string,
    partition: number,
    use: (log: Log) => void,
    fail: (failure: BrokerError) => void,
  ): void {
    const log = this.logs.get(topic, partition);
    if (log) return use(log);
    this.logs.open(topic, partition).then(use, (error) => {
      fail(BrokerError.from(error, "storageFailed"));
    });
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
    const refuse = (kind: BrokerError["kind"], detail: string, partition: number) => ({
      ok: false as const,
      reply: this.#failedPut(command, kind, detail, partition),
    });
    const settings = this.topicSettings(topic);
    const refusal = this.topicRefusal(topic);
    if (!settings || refusal) {
      return refuse("topicNotAccepted", refusal ?? "", command.partition);
    }
    const partition = command.partition === -1
      ? this.#options.random.int(0, settings.numPartitions)
      : command.partition;
    if (partition < 0 || partition >= settings.numPartitions) {
      return refuse("wrongPartition", `wrong partition ${partition}`, partition);
    }
    const maxBytes = this.config.system.maxMessageSize;
    if (command.oversizedBytes !== undefined || command.body.length > maxBytes) {
      const bytes = command.oversizedBytes ?? command.body.length;
      return refuse(
        "messageTooLarge",
        `Cannot accept message: body of ${bytes} bytes exceeds maxMessageSize ${maxBytes}`,
        partition,
      );
    }
    const checksum = metaqChecksum(command.body);
    if (command.checksum !== -1 && command.checksum !== checksum) {
      return refuse(
        "checksumMismatch",
        CHECKSUM_FAILURE,
        partition,
      );
    }
    const damaged = this.logs.get(topic, partition)
      ? undefined
      : this.logs.failure(topic, partition);
    if (damaged) return refuse("corruption", describeError(damaged), partition);
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

  /**
   * The one read path: where `offset` stands in the partition's log and, when records are
   * there, which bytes to serve. A read at or past the end waits (up to READ_WAIT_MS) only when
   * the log says records are on their way here, so the answer may come later.
   */
  read(request: ReadRequest): ReadOutcome | Promise<ReadOutcome> {
    const { topic, partition, offset } = request;
    if (this.closedPartitions.size > 0 && this.closedPartitions.has(`${topic}-${partition}`)) {
      const text = `Partition[${this.config.system.brokerId}-${partition}] has been closed`;
      return { kind: "refused", error: BrokerError.verbatim("partitionClosed", text) };
    }
    const log = this.logs.get(topic, partition);
    if (!log) {
      const damaged = this.logs.failure(topic, partition);
      if (damaged) {
        return {
          kind: "refused",
          error: BrokerError.verbatim("corruption", describeError(damaged)),
        };
      }
      const text = `The topic \`${topic}\` in partition \`${partition}\` is not exists`;
      return { kind: "refused", error: BrokerError.verbatim("notFound", text) };
    }
    if (offset >= log.endOffset && offset >= log.startOffset) {
      const unavailable = log.unavailable?.();
      if (unavailable) return { kind: "refused", error: unavailable };
      const arriving = log.whenReadable(offset, READ_WAIT_MS);
      if (arriving) return arriving.then(() => this.#readAt(log, request));
    }
    return this.#readAt(log, request);
  }

  /**
   * TCP `get`: the read as MetaQ answers it (a `value` frame of raw records, 301, 404...).
   * `waitMs` (metaq's `fetch`, a long poll): when nothing is at or after the offset yet, the
   * answer waits up to that long for records to become readable, so a consumer at the end
   * hears of a new message as soon as it is stored instead of polling.
   * `fromFiles` (the asker's socket can take bytes straight from a file, RequestContext
   * `sendsFromFiles`): the answer's body is left in the segment file for it to send.
   */
  get(
    command: GetCommand,
    respond: (reply: Reply) => void,
    waitMs = 0,
    fromFiles = false,
  ): void {
    this.stats.counters.cmdGet += 1;
    const { topic, group } = command;
    const stat = this.topicSettings(topic)?.stat === true;
    if (stat) this.stats.record("cmd_get", topic, group);
    const closed = this.closedPartitions.size > 0 &&
      this.closedPartitions.has(`${topic}-${command.partition}`);
    if (!closed && command.maxSize <= 0 && this.logs.get(topic, command.partition)) {
      return respond(errorReply(
        BrokerError.verbatim("badRequest", `Bad request,invalid max size:${command.maxSize}`),
      ));
    }
    const outcome = this.#readFor(command);
    const answer = (settled: ReadOutcome, mayWait: boolean) => {
      if (settled.kind === "empty" && mayWait && waitMs > 0 && !this.#stopWaiting) {
        return this.#waitForRecords(command, waitMs, () => {
          const again = this.#readFor(command);
          if (again instanceof Promise) again.then((late) => answer(late, false));
          else answer(again, false);
        });
      }
      respond(this.#getReply(command, settled, stat, fromFiles));
    };
    if (outcome instanceof Promise) outcome.then((settled) => answer(settled, true));
    else answer(outcome, true);
  }

  /**
   * Answers every waiting `fetch` now (with what its partition holds) and lets no new one wait:
   * a stopping broker does not hold its connections open for a long poll.
   */
  stopWaiting(): void {
    this.#stopWaiting = true;
    for (const wake of [...this.#waiting]) wake();
  }

  /** The read a `get` asks for. */
  #readFor(command: GetCommand): ReadOutcome | Promise<ReadOutcome> {
    return this.read({
      topic: command.topic,
      partition: command.partition,
      offset: command.offset,
      maxBytes: Math.min(command.maxSize, this.config.system.maxTransferSize),
      wantsEnd: command.offsetIsLongMax,
    });
  }

  /** Calls `wake` once the partition's end passes the offset, or after `waitMs`. */
  #waitForRecords(command: GetCommand, waitMs: number, wake: () => void): void {
    const log = this.logs.get(command.topic, command.partition);
    if (!log) return wake();
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stop();
      this.#waiting.delete(finish);
      wake();
    };
    const stop = log.onChange(() => {
      if (log.endOffset > command.offset) finish();
    });
    const timer = setTimeout(finish, Math.min(waitMs, FETCH_WAIT_MS_MAX));
    this.#waiting.add(finish);
  }

  offset(command: OffsetCommand): Reply {
    this.stats.counters.cmdOffset += 1;
    const { topic, partition } = command;
    if (this.topicSettings(topic)?.stat) this.stats.record("cmd_offset", topic, command.group);
    const log = this.logs.get(topic, partition);
    if (!log) {
      const text = `The topic \`${topic}\` in partition \`${partition}\` is not exists`;
      return errorReply(BrokerError.verbatim("notFound", text));
    }
    return result(200, String(log.segmentStartFor(command.offset)));
  }

  /** `sync` has a handler only on a replica of MetaQ's sync replication, which metaq replaces. */
  sync(_command: SyncCommand): Reply {
    return errorReply(
      new BrokerError(
        "unavailable",
        "metaq replicates with Raft-lite, not MetaQ's sync slave protocol",
      ),
    );
  }

  version(): Reply {
    return result(200, METAQ_VERSION);
  }

  /** `stats [item]`; `items` are the extra items other parts contribute (`cluster`...). */
  statsReply(item: string | undefined, items: StatsItems = new Map()): Reply {
    if (item === "config") {
      if (this.config.fileText === undefined) {
        const path = this.config.filePath ?? "(none: running on defaults)";
        return errorReply(BrokerError.verbatim("internal", `Config file not found:${path}`));
      }
      return result(200, this.config.fileText);
    }
    return result(200, renderStats(this, item, items));
  }

  /** pid, broker id and similar facts for the general stats item. */
  get processInfo(): { pid: number } {
    return { pid: process.pid };
  }

  #readAt(log: Log, request: ReadRequest): ReadOutcome {
    const { offset } = request;
    const end = log.endOffset;
    if (offset < log.startOffset) return { kind: "moved", offset: log.startOffset };
    if (offset >= end) {
      if (offset > end && (this.config.system.updateConsumerOffsets || request.wantsEnd)) {
        return { kind: "moved", offset: end };
      }
      return { kind: "empty" };
    }
    return { kind: "slice", log, offset, length: log.readableAt(offset, request.maxBytes) };
  }

  #getReply(command: GetCommand, outcome: ReadOutcome, stat: boolean, fromFiles: boolean): Reply {
    const { topic, partition, group } = command;
    const miss = () => {
      this.stats.counters.getMiss += 1;
      if (stat) this.stats.record("get_miss", topic, group);
    };
    switch (outcome.kind) {
      case "refused":
        if (outcome.error.kind === "notFound") miss();
        return errorReply(outcome.error);
      case "moved":
        miss();
        this.stats.counters.cmdOffset += 1;
        return result(301, String(outcome.offset));
      case "empty":
        miss();
        return errorReply(
          BrokerError.verbatim("notFound", `Could not find message at position ${command.offset}`),
        );
      case "slice":
        break;
    }
    const filter = this.#options.filterFor?.(topic, group);
    if (filter) return this.#filtered(command, outcome, filter);
    const { log, offset, length } = outcome;
    const header = encodeValueHeader(length, command.opaque);
    const read: BodyReader = (target, at, from, bytes) =>
      log.readInto(target, at, offset + from, bytes);
    // A body left in its file is sent when the socket gets to it, maybe after retention has
    // deleted its segment: the range is held (its file kept open) until then.
    const held = fromFiles && length >= FILE_FRAME_BYTES_MIN
      ? log.holdRange?.(offset, length)
      : undefined;
    // Pooled buffers, not zero-filled: the header and the reads overwrite every byte.
    const frame = held
      ? this.#frames.fileFrame(header, length, held)
      : this.#frames.frame(header, length, read);
    this.stats.served(topic, partition, length);
    return { kind: "frame", ...frame };
  }

  #filtered(
    command: GetCommand,
    slice: Extract<ReadOutcome, { kind: "slice" }>,
    filter: RecordFilter,
  ): Reply {
    const raw = new Uint8Array(slice.length);
    slice.log.readInto(raw, 0, slice.offset, slice.length);
    const verdict = filter(raw);
    if ("skip" in verdict) return result(301, String(command.offset + verdict.skip));
    const header = encodeValueHeader(verdict.serve, command.opaque);
    const frame = new Uint8Array(header.length + verdict.serve);
    frame.set(header, 0);
    frame.set(raw.subarray(0, verdict.serve), header.length);
    this.stats.served(command.topic, command.partition, verdict.serve);
    return { kind: "frame", bytes: frame };
  }

  /** Counts a failed put and builds MetaQ's reply for it. */
  #failedPut(
    command: PutCommand,
    kind: BrokerError["kind"],
    detail: string,
    partition: number,
  ): Reply {
    this.stats.counters.putFailed += 1;
    if (this.topicSettings(command.topic)?.stat) {
      this.stats.record("put_failed", command.topic, String(partition));
    }
    return errorReply(
      BrokerError.verbatim(kind, this.#putFailure(command.topic, partition, detail)),
    );
  }

  /** A log's refusal in MetaQ's put-failure text, keeping the refusal's kind (and status). */
  #putError(error: BrokerError, topic: string, partition: number): BrokerError {
    return BrokerError.verbatim(error.kind, this.#putFailure(topic, partition, error.message));
  }

  #putFailure(topic: string, partition: number, detail?: string): string {
    const base =
      `Put message to [broker '${this.#brokerUrl}'] [partition '${topic}-${partition}'] failed.`;
    return detail ? `${base}Detail:${detail}` : base;
  }
}

/**
 * A late first attempt's lookup covers the log from where the forwarder said it could lie; past
 * this much (a copy that waited minutes on a stalled link) the lookup would read a large part
 * of the log for a request nobody waits for any more, so it is refused instead.
 */
const LATE_FORWARD_LOOKUP_BYTES_MAX = 64 * 1024 * 1024;

/**
 * Why a forwarded put that must be looked for (see PutOnce) is refused unappended: the part of
 * the log where an earlier attempt could lie is gone (retention) or too long to search.
 */
function lateForwardRefusal(once: PutOnce, log: Log): BrokerError | undefined {
  if (once.retry) return undefined; // a retry's lookup is as it always was
  const gone = once.since < log.startOffset;
  if (!gone && log.endOffset - once.since <= LATE_FORWARD_LOOKUP_BYTES_MAX) return undefined;
  return new BrokerError(
    "unavailable",
    `a forwarded put sent in term ${once.epoch} arrived in term ${log.writer.epoch}, and the log ` +
      `since offset ${once.since} is ${gone ? "gone" : "too long to search"} for an earlier ` +
      "copy of it; not appended",
  );
}

/**
 * @module MessageStore: every partition log of a broker, found by directory name
 * (`<topic>-<partition>` under each data path, topic = text before the last '-'), created
 * lazily on first write, closed together. Holds a lock file so two brokers never share a data
 * directory. Knows nothing of the protocol; the broker decides which topics exist.
 */
import * as fs from "node:fs";
import process from "node:process";
import { assert } from "../assert.ts";
import type { Clock } from "../clock.ts";
import { type Config, topicSettings } from "../config/config.ts";
import { topicNameProblem } from "../config/names.ts";
import { BrokerError, describeError } from "../errors.ts";
import { RECORD_DATA_BYTES_MAX } from "../limits.ts";
import { isInternalTopic } from "./log.ts";
import type { Logger } from "../log.ts";
import { CorruptLogError, type FlushPolicy, flushPolicyOf, PartitionLog } from "./partition_log.ts";
import type { SyncModeChooser } from "./sync_mode.ts";
import { parseSegmentFileName } from "./segment.ts";
import { joinPath, makeDirDurably, parentDir, type Storage } from "./storage.ts";

export interface MessageStoreOptions {
  readonly storage: Storage;
  readonly config: Config;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Check every segment's checksums at open, not just the active segment's. */
  readonly verifyAll: boolean;
  /** A flush policy for a topic other than its configured one (the broker's own logs). */
  readonly flushFor?: (topic: string) => FlushPolicy | undefined;
  /** Cut damaged logs at the damage instead of refusing them. */
  readonly repair: boolean;
  /** Where group commits sync (lib/store/sync_mode.ts); default: the process's chooser. */
  readonly syncModes?: SyncModeChooser;
}

export class DataDirLockedError extends Error {
  override readonly name = "DataDirLockedError";
}

const LOCK_FILE = ".lock";

export const partitionKey = (topic: string, partition: number) => `${topic}-${partition}`;

export class MessageStore {
  readonly options: MessageStoreOptions;
  readonly #logs = new Map<string, PartitionLog>();
  /** The same logs by topic and partition number: the put path looks up without a string key. */
  readonly #byTopic = new Map<string, PartitionLog[]>();
  readonly #creating = new Map<string, Promise<PartitionLog>>();
  readonly #failures = new Map<string, Error>();
  readonly #lockedDirs: string[] = [];
  readonly #openListeners = new Set<(log: PartitionLog) => void>();
  #lastId: bigint | undefined;
  #closed = false;

  private constructor(options: MessageStoreOptions) {
    this.options = options;
  }

  /** Opens every partition found under the data paths. Damaged ones are refused, not fatal. */
  static async open(options: MessageStoreOptions): Promise<MessageStore> {
    const store = new MessageStore(options);
    for (const dir of store.#dataPaths()) await store.#lock(dir);
    for (const dir of store.#dataPaths()) await store.#load(dir);
    return store;
  }

  /** Highest message id recovered from disk, so new ids can stay above it. */
  get lastRecoveredId(): bigint | undefined {
    return this.#lastId;
  }

  get(topic: string, partition: number): PartitionLog | undefined {
    return this.#byTopic.get(topic)?.[partition];
  }

  /** Why a partition was refused at open (damage), if it was. */
  failure(topic: string, partition: number): Error | undefined {
    return this.#failures.get(partitionKey(topic, partition));
  }

  failures(): ReadonlyMap<string, Error> {
    return this.#failures;
  }

  /** Every open log, in name order. */
  logs(): PartitionLog[] {
    return [...this.#logs.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, log]) => log);
  }

  /** Topics with at least one partition on disk, and their partitions sorted by number. */
  topics(): Map<string, { partition: number; log: PartitionLog }[]> {
    const topics = new Map<string, { partition: number; log: PartitionLog }[]>();
    for (const [key, log] of this.#logs) {
      const { topic, partition } = splitPartitionKey(key)!;
      const list = topics.get(topic) ?? [];
      list.push({ partition, log });
      topics.set(topic, list);
    }
    for (const list of topics.values()) list.sort((a, b) => a.partition - b.partition);
    return new Map([...topics.entries()].sort(([a], [b]) => a.localeCompare(b)));
  }

  /** Returns the partition's log, creating its directory and first segment if needed. */
  getOrCreate(topic: string, partition: number, initialOffset = 0): Promise<PartitionLog> {
    const key = partitionKey(topic, partition);
    const existing = this.#logs.get(key);
    if (existing) return Promise.resolve(existing);
    const failure = this.#failures.get(key);
    if (failure) return Promise.reject(failure);
    let creating = this.#creating.get(key);
    if (!creating) {
      const refusal = this.#beyondLimits(topic);
      if (refusal) return Promise.reject(refusal);
      assert(!this.#closed, "store is closed");
      assert(topicNameProblem(topic) === undefined, `invalid topic ${topic}`);
      assert(Number.isInteger(partition) && partition >= 0);
      creating = this.#openLog(topic, partition, initialOffset).then((log) => {
        for (const listener of this.#openListeners) listener(log);
        return log;
      }).finally(() => this.#creating.delete(key));
      this.#creating.set(key, creating);
    }
    return creating;
  }

  /**
   * Reopens a partition refused at start-up as damaged, cutting it at the damage (copies of the
   * damaged files are kept). A replica persists that it is repairing, and its former end
   * (`filesEndOffset`), before calling this.
   */
  async repair(topic: string, partition: number): Promise<PartitionLog> {
    const key = partitionKey(topic, partition);
    assert(this.#failures.has(key), `${key} is not damaged`);
    this.#failures.delete(key);
    return await this.#openLog(topic, partition, 0, true);
  }

  /**
   * Closes a partition's log and deletes its directory: the copy moved to other nodes. The
   * caller (a cluster node) knows the copy is no longer needed before it asks.
   */
  async drop(topic: string, partition: number): Promise<void> {
    const key = partitionKey(topic, partition);
    await this.#creating.get(key)?.catch(() => {});
    const log = this.#logs.get(key);
    this.#logs.delete(key);
    this.#failures.delete(key);
    const list = this.#byTopic.get(topic);
    if (list && list[partition] === log) delete list[partition];
    if (list && !list.some((entry) => entry !== undefined)) this.#byTopic.delete(topic);
    await log?.close();
    const { storage } = this.options;
    const dir = this.#dirFor(topic, partition);
    for (const name of storage.list(dir)) storage.remove(joinPath(dir, name));
    storage.removeDir(dir);
    await storage.syncDir(parentDir(dir));
  }

  /** Where a partition's files end (its log end before any cut); 0 when it has none. */
  filesEndOffset(topic: string, partition: number): number {
    const dir = this.#dirFor(topic, partition);
    const { storage } = this.options;
    let end = 0;
    for (const name of storage.list(dir)) {
      const start = parseSegmentFileName(name);
      if (start !== undefined) {
        end = Math.max(end, start + (storage.stat(joinPath(dir, name))?.size ?? 0));
      }
    }
    return end;
  }

  /** The directory a partition's files live in. */
  dirOf(topic: string, partition: number): string {
    return this.#dirFor(topic, partition);
  }

  /**
   * Calls `listener` with every log created from now on (by a first write, a topic created over
   * HTTP, or a replica); returns an unsubscribe function. Metrics and live streams attach
   * through it.
   */
  onOpen(listener: (log: PartitionLog) => void): () => void {
    this.#openListeners.add(listener);
    return () => this.#openListeners.delete(listener);
  }

  /** Syncs the logs that flush by threshold and whose interval has passed (a timer's job). */
  async syncIfDue(): Promise<void> {
    // Any order will do: no sort of thousands of names every second.
    for (const log of [...this.#logs.values()]) {
      await log.syncIfDue().catch((error) =>
        this.options.logger.log("error", "Cannot sync partition", {
          partition: log.name,
          reason: describeError(error),
        })
      );
    }
  }

  /** Syncs and closes every log and releases the data directory locks. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#creating.values()]);
    const results = await Promise.allSettled(this.logs().map((log) => log.close()));
    for (const dir of this.#lockedDirs) this.options.storage.remove(joinPath(dir, LOCK_FILE));
    const failed = results.find((result) => result.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  #dataPaths(): string[] {
    const { config } = this.options;
    const paths = new Set([config.system.dataPath]);
    for (const section of config.topics) if (section.dataPath) paths.add(section.dataPath);
    return [...paths];
  }

  #dirFor(topic: string, partition: number): string {
    const dataPath = topicSettings(this.options.config, topic)?.dataPath ??
      this.options.config.system.dataPath;
    return joinPath(dataPath, partitionKey(topic, partition));
  }

  async #lock(dir: string): Promise<void> {
    const { storage } = this.options;
    await makeDirDurably(storage, dir);
    const path = joinPath(dir, LOCK_FILE);
    const [holderText, startText] = new TextDecoder().decode(
      storage.readFile(path) ?? new Uint8Array(),
    )
      .trim().split(" ");
    const holder = /^\d+$/.test(holderText ?? "") ? Number(holderText) : 0;
    if (holder && holder !== process.pid && isProcessAlive(holder, startText)) {
      throw new DataDirLockedError(
        `Cannot open data directory ${dir}: it is in use by process ${holder}; stop that broker or use another --data`,
      );
    }
    const file = storage.open(path, { create: true });
    file.truncate(0);
    file.write([
      new TextEncoder().encode(`${process.pid} ${processStartTime(process.pid) ?? ""}\n`),
    ], 0);
    file.close();
    this.#lockedDirs.push(dir);
  }

  async #load(dataPath: string): Promise<void> {
    const { storage, logger } = this.options;
    for (const name of storage.list(dataPath)) {
      const parsed = splitPartitionKey(name);
      if (!parsed || !storage.isDirectory(joinPath(dataPath, name))) continue;
      if (topicNameProblem(parsed.topic)) {
        logger.log("warn", "Skipping directory with an invalid topic name", { dir: name });
        continue;
      }
      if (this.#dirFor(parsed.topic, parsed.partition) !== joinPath(dataPath, name)) continue;
      try {
        const log = await this.#openLog(parsed.topic, parsed.partition, 0);
        const lastId = log.recovery.lastId;
        if (lastId !== undefined && (this.#lastId === undefined || lastId > this.#lastId)) {
          this.#lastId = lastId;
        }
      } catch (error) {
        if (!(error instanceof CorruptLogError)) throw error;
        this.#failures.set(name, error);
        logger.log("error", "Refusing damaged partition", {
          partition: name,
          reason: describeError(error),
        });
      }
    }
  }

  /** Why one more partition of `topic` would exceed maxTopics or maxPartitions, if it would. */
  #beyondLimits(topic: string): BrokerError | undefined {
    // The broker's own logs (`__meta`, `__tx`) are not the users' topics: they never count.
    if (isInternalTopic(topic)) return undefined;
    const { maxTopics, maxPartitions } = this.options.config.system;
    const userKey = (key: string) => !isInternalTopic(key);
    const opening = [...this.#logs.keys()].filter(userKey).length +
      [...this.#creating.keys()].filter(userKey).length;
    if (opening >= maxPartitions) {
      return new BrokerError(
        "limitReached",
        `this broker holds ${opening} partitions, maxPartitions is ${maxPartitions}`,
      );
    }
    const known = this.#byTopic.has(topic) ||
      [...this.#creating.keys()].some((key) => splitPartitionKey(key)?.topic === topic);
    const topics = [...this.#byTopic.keys()].filter(userKey).length;
    if (!known && topics >= maxTopics) {
      return new BrokerError(
        "limitReached",
        `this broker holds ${topics} topics, maxTopics is ${maxTopics}`,
      );
    }
    return undefined;
  }

  async #openLog(
    topic: string,
    partition: number,
    initialOffset: number,
    repair = this.options.repair,
  ): Promise<PartitionLog> {
    const { config, storage, clock, logger } = this.options;
    const settings = topicSettings(config, topic);
    const system = config.system;
    const log = await PartitionLog.open({
      storage,
      dir: this.#dirFor(topic, partition),
      name: partitionKey(topic, partition),
      // Internal logs (`__meta`) roll small so that compaction behind snapshots can drop them.
      segmentBytesMax: topic.startsWith("__") ? system.metaSegmentSize : system.maxSegmentSize,
      recordDataBytesMax: RECORD_DATA_BYTES_MAX,
      flush: this.options.flushFor?.(topic) ?? flushPolicyOf(
        settings?.unflushThreshold ?? system.unflushThreshold,
        settings?.unflushInterval ?? system.unflushInterval,
      ),
      clock,
      logger,
      syncModes: this.options.syncModes,
    }, { verifyAll: this.options.verifyAll, repair, initialOffset });
    this.#logs.set(partitionKey(topic, partition), log);
    let partitions = this.#byTopic.get(topic);
    if (!partitions) this.#byTopic.set(topic, partitions = []);
    partitions[partition] = log;
    return log;
  }
}

/** Splits `<topic>-<partition>` at the last '-'; undefined when it is not such a name. */
export function splitPartitionKey(name: string): { topic: string; partition: number } | undefined {
  const dash = name.lastIndexOf("-");
  if (dash <= 0) return undefined;
  const digits = name.slice(dash + 1);
  if (!/^\d{1,9}$/.test(digits)) return undefined;
  return { topic: name.slice(0, dash), partition: Number(digits) };
}

/**
 * Whether the process that wrote a lock still runs. On Linux a zombie (killed, not yet reaped)
 * counts as gone, and a reused pid is told apart by its start time; elsewhere, kill(pid, 0).
 */
function isProcessAlive(pid: number, recordedStart: string | undefined): boolean {
  const stat = procStat(pid);
  if (stat !== undefined) {
    if (stat.state === "Z" || stat.state === "X") return false;
    // On Linux every lock we write carries the start time; one without (torn by a power cut,
    // or left by something else) cannot prove its process still runs.
    return recordedStart === stat.startTime;
  }
  try {
    process.kill(pid, 0);
    return !fs.existsSync("/proc/self/stat"); // /proc exists but had no entry: the pid is gone
  } catch (error) {
    return (error as { code?: string }).code === "EPERM";
  }
}

function processStartTime(pid: number): string | undefined {
  return procStat(pid)?.startTime;
}

/** State and start time (clock ticks after boot) from /proc/<pid>/stat, when there is one. */
function procStat(pid: number): { state: string; startTime: string } | undefined {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name is in parentheses and may contain spaces: fields start after the last ')'.
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0], startTime: fields[19] };
  } catch {
    return undefined;
  }
}

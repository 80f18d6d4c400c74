/**
 * @module LocalLogs: the Logs of a broker that runs alone, one LocalLog per partition of the
 * message store. Every partition is served here and created by its first write.
 */
import type { Logger } from "../log.ts";
import { LocalLog } from "./local_log.ts";
import type { Log, LogEntry, Logs } from "./log.ts";
import type { MessageStore } from "./message_store.ts";
import type { PartitionLog } from "./partition_log.ts";

export class LocalLogs implements Logs {
  readonly store: MessageStore;
  readonly #logger: Logger;
  readonly #logs = new Map<PartitionLog, LocalLog>();
  readonly #listeners = new Set<(entry: LogEntry) => void>();

  constructor(store: MessageStore, logger: Logger) {
    this.store = store;
    this.#logger = logger;
    store.onOpen((segments) => {
      const log = this.#wrap(segments);
      const [topic, partition] = splitName(segments.name);
      for (const listener of this.#listeners) listener({ topic, partition, log });
    });
  }

  get(topic: string, partition: number): Log | undefined {
    const segments = this.store.get(topic, partition);
    return segments ? this.#wrap(segments) : undefined;
  }

  async open(topic: string, partition: number): Promise<Log> {
    return this.#wrap(await this.store.getOrCreate(topic, partition));
  }

  failure(topic: string, partition: number): Error | undefined {
    return this.store.failure(topic, partition);
  }

  failures(): ReadonlyMap<string, Error> {
    return this.store.failures();
  }

  list(): readonly LogEntry[] {
    const entries: LogEntry[] = [];
    for (const [topic, partitions] of this.store.topics()) {
      for (const { partition, log } of partitions) {
        entries.push({ topic, partition, log: this.#wrap(log) });
      }
    }
    return entries;
  }

  /**
   * Closes `topic`'s partitions and deletes their files (a deleted topic), those refused as
   * damaged at start-up too; returns how many.
   */
  async dropTopic(topic: string): Promise<number> {
    const partitions = new Set<number>();
    for (const { partition } of this.store.topics().get(topic) ?? []) partitions.add(partition);
    for (const name of this.store.failures().keys()) {
      if (name.slice(0, name.lastIndexOf("-")) === topic) {
        partitions.add(Number(name.slice(name.lastIndexOf("-") + 1)));
      }
    }
    for (const partition of partitions) {
      const segments = this.store.get(topic, partition);
      if (segments) this.#logs.delete(segments);
      await this.store.drop(topic, partition);
    }
    return partitions.size;
  }

  onOpen(listener: (entry: LogEntry) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #wrap(segments: PartitionLog): LocalLog {
    let log = this.#logs.get(segments);
    if (!log) {
      log = new LocalLog(segments, { storage: this.store.options.storage, logger: this.#logger });
      this.#logs.set(segments, log);
    }
    return log;
  }
}

function splitName(name: string): [string, number] {
  const dash = name.lastIndexOf("-");
  return [name.slice(0, dash), Number(name.slice(dash + 1))];
}

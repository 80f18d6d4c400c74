/**
 * @module RecoverStore: MetaQ's local recovery store for one (topic, group): messages the handler
 * kept failing are written here (durably) so consumption can move on, and a recovery task
 * re-delivers them later; a message leaves the store only when its handler succeeds. One Journal
 * per store at `<dir>/<topic>@<group>/recover.log`, locked by the process that uses it.
 *
 * Journal bodies are JSON: `{"op":"add", "key", "partition", "offset", "id", "flag", "data"}`
 * (`id` as decimal text, `data` as base64) or `{"op":"remove", "key"}`. The journal is compacted
 * at open and once removed entries dominate.
 */
import { Buffer } from "node:buffer";
import { BrokerError } from "../errors.ts";
import { Journal } from "../broker/groups/journal.ts";
import type { Logger } from "../log.ts";
import { joinPath, type Storage } from "../store/storage.ts";

/** Messages one store holds; beyond it a rejection fails and the message is retried instead. */
export const RECOVER_MESSAGES_MAX = 100_000;
const BODY_BYTES_MAX = 96 * 1024 * 1024;
const COMPACT_BYTES_MIN = 1024 * 1024;

export interface StoredMessage {
  /** `<partition>-<offset>`: where the message was read, unique per topic. */
  readonly key: string;
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly id: bigint;
  readonly flag: number;
  /** The record's data: attribute block (when flag bit 0 is set) and payload. */
  readonly data: Uint8Array;
}

export interface RecoverStoreOptions {
  readonly storage: Storage;
  readonly dir: string;
  readonly topic: string;
  readonly group: string;
  readonly logger: Logger;
}

type Body =
  | {
    op: "add";
    key: string;
    partition: number;
    offset: number;
    id: string;
    flag: number;
    data: string;
  }
  | { op: "remove"; key: string };

export class RecoverStore {
  readonly topic: string;
  readonly group: string;
  readonly #journal: Journal;
  readonly #messages = new Map<string, StoredMessage>();
  #removedSinceCompaction = 0;
  #compacting: Promise<void> | undefined;

  private constructor(journal: Journal, topic: string, group: string) {
    this.#journal = journal;
    this.topic = topic;
    this.group = group;
  }

  static async open(options: RecoverStoreOptions): Promise<RecoverStore> {
    const path = joinPath(options.dir, `${options.topic}@${options.group}`, "recover.log");
    const { journal, bodies } = await Journal.open({
      storage: options.storage,
      path,
      bodyBytesMax: BODY_BYTES_MAX,
      lock: true,
      logger: options.logger,
    });
    const store = new RecoverStore(journal, options.topic, options.group);
    for (const body of bodies) store.#replay(JSON.parse(new TextDecoder().decode(body)));
    await journal.compact([...store.#messages.values()].map(encodeAdd));
    return store;
  }

  get size(): number {
    return this.#messages.size;
  }

  /** Messages waiting for re-delivery, oldest first. */
  list(): StoredMessage[] {
    return [...this.#messages.values()];
  }

  /** Keeps `message` durably; resolves once it would survive a crash. */
  async add(message: Omit<StoredMessage, "key" | "topic">): Promise<void> {
    if (this.#messages.size >= RECOVER_MESSAGES_MAX) {
      throw new BrokerError(
        "storageFull",
        `recovery store ${this.topic}@${this.group} holds ${RECOVER_MESSAGES_MAX} messages`,
      );
    }
    const stored = { ...message, topic: this.topic, key: `${message.partition}-${message.offset}` };
    await this.#journal.append([encodeAdd(stored)]);
    this.#messages.set(stored.key, stored);
  }

  /** Forgets a message after its handler succeeded. */
  async remove(key: string): Promise<void> {
    if (!this.#messages.has(key)) return;
    await this.#journal.append([encode({ op: "remove", key })]);
    this.#messages.delete(key);
    this.#removedSinceCompaction += 1;
    if (
      !this.#compacting && this.#journal.sizeBytes > COMPACT_BYTES_MIN &&
      this.#removedSinceCompaction > this.#messages.size
    ) {
      this.#removedSinceCompaction = 0;
      // A failed compaction marks the journal failed, which logs it and refuses later writes.
      this.#compacting = this.#journal.compact([...this.#messages.values()].map(encodeAdd))
        .catch(() => {})
        .finally(() => (this.#compacting = undefined));
    }
  }

  async close(): Promise<void> {
    await this.#compacting;
    await this.#journal.close();
  }

  #replay(body: Body): void {
    if (body.op === "remove") {
      this.#messages.delete(body.key);
      return;
    }
    this.#messages.set(body.key, {
      key: body.key,
      topic: this.topic,
      partition: body.partition,
      offset: body.offset,
      id: BigInt(body.id),
      flag: body.flag,
      data: new Uint8Array(Buffer.from(body.data, "base64")),
    });
  }
}

function encodeAdd(message: StoredMessage): Uint8Array {
  return encode({
    op: "add",
    key: message.key,
    partition: message.partition,
    offset: message.offset,
    id: message.id.toString(),
    flag: message.flag,
    data: Buffer.from(message.data).toString("base64"),
  });
}

function encode(body: Body): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(body));
}

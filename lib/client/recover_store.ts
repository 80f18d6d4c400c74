/**
 * @module RecoverStore: MetaQ's local recovery store for one (topic, group): messages the handler
 * kept failing are written here (durably) so consumption can move on, and a recovery task
 * re-delivers them later; a message leaves the store only when its handler succeeds. One
 * RecordFile per store at `<dir>/<topic>@<group>/recover.records`, locked by the process that
 * uses it.
 *
 * Record data is JSON: `{"op":"add", "key", "partition", "offset", "id", "flag", "data"}` (`id`
 * as decimal text, `data` as base64) or `{"op":"remove", "key"}`. The file is compacted at open
 * and once removed messages dominate.
 */
import { Buffer } from "node:buffer";
import * as path from "node:path";
import { BrokerError, describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { RecordFile, warnOfEarlierFile } from "./record_file.ts";

/** Messages one store holds; beyond it a rejection fails and the message is retried instead. */
export const RECOVER_MESSAGES_MAX = 100_000;
/** Largest record: a message at MESSAGE_BYTES_LIMIT_MAX in base64, with its JSON around it. */
const RECORD_DATA_BYTES_MAX = 96 * 1024 * 1024;
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
  /** Stores live in `<dir>/<topic>@<group>/`. */
  readonly dir: string;
  readonly topic: string;
  readonly group: string;
  /** Cut a damaged file at the damage instead of refusing to open it. */
  readonly repair?: boolean;
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

/** The directory of the store of (topic, group) under `dir`. */
export function recoverStoreDir(dir: string, topic: string, group: string): string {
  return path.join(dir, `${topic}@${group}`);
}

export class RecoverStore {
  readonly topic: string;
  readonly group: string;
  readonly #file: RecordFile;
  readonly #logger: Logger;
  readonly #messages = new Map<string, StoredMessage>();
  #removedSinceCompaction = 0;
  #compacting: Promise<void> | undefined;

  private constructor(file: RecordFile, options: RecoverStoreOptions) {
    this.#file = file;
    this.#logger = options.logger;
    this.topic = options.topic;
    this.group = options.group;
  }

  static async open(options: RecoverStoreOptions): Promise<RecoverStore> {
    const { dir, topic, group } = options;
    const storeDir = recoverStoreDir(dir, topic, group);
    const filePath = path.join(storeDir, "recover.records");
    warnOfEarlierFile(path.join(storeDir, "recover.log"), options.logger);
    const { file, bodies } = await RecordFile.open({
      path: filePath,
      dataBytesMax: RECORD_DATA_BYTES_MAX,
      repair: options.repair,
      lock: true,
      logger: options.logger,
    });
    const store = new RecoverStore(file, options);
    try {
      for (const body of bodies) store.#replay(decodeBody(body, filePath));
      await file.compact(store.#snapshot());
    } catch (error) {
      await file.close();
      throw error;
    }
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
    const body = encodeAdd(stored);
    if (body.length > RECORD_DATA_BYTES_MAX) {
      throw new BrokerError("messageTooLarge", `${body.length} bytes to keep for ${stored.key}`);
    }
    // In memory first, so a compaction started before the append resolves keeps it.
    const previous = this.#messages.get(stored.key);
    this.#messages.set(stored.key, stored);
    try {
      await this.#file.append([body]);
    } catch (error) {
      if (previous) this.#messages.set(stored.key, previous);
      else this.#messages.delete(stored.key);
      throw error;
    }
  }

  /** Forgets a message after its handler succeeded. */
  async remove(key: string): Promise<void> {
    const previous = this.#messages.get(key);
    if (!previous) return;
    this.#messages.delete(key);
    try {
      await this.#file.append([encode({ op: "remove", key })]);
    } catch (error) {
      this.#messages.set(key, previous);
      throw error;
    }
    this.#removedSinceCompaction += 1;
    this.#compactIfMostlyRemoved();
  }

  async close(): Promise<void> {
    await this.#compacting;
    await this.#file.close();
  }

  #compactIfMostlyRemoved(): void {
    if (this.#compacting || this.#file.sizeBytes <= COMPACT_BYTES_MIN) return;
    if (this.#removedSinceCompaction <= this.#messages.size) return;
    this.#removedSinceCompaction = 0;
    this.#compacting = this.#file.compact(this.#snapshot())
      .catch((error) =>
        this.#logger.log("error", "Cannot compact the recovery store", {
          topic: this.topic,
          group: this.group,
          reason: describeError(error),
        })
      )
      .finally(() => (this.#compacting = undefined));
  }

  #snapshot(): Uint8Array[] {
    return [...this.#messages.values()].map(encodeAdd);
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

/**
 * One record's operation. The checksum matched, so a record that does not decode was written by
 * something else: the file is not a recovery store.
 */
function decodeBody(bytes: Uint8Array, filePath: string): Body {
  let body: Body;
  try {
    body = JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw notRecoverStore(filePath, describeError(error));
  }
  if (body?.op === "remove" && typeof body.key === "string") return body;
  if (body?.op === "add" && isAdd(body)) return body;
  throw notRecoverStore(filePath, `${JSON.stringify(body).slice(0, 80)} is not an operation`);
}

function isAdd(body: Body & { op: "add" }): boolean {
  return typeof body.key === "string" && Number.isSafeInteger(body.partition) &&
    Number.isSafeInteger(body.offset) && typeof body.id === "string" &&
    /^-?[0-9]+$/.test(body.id) &&
    Number.isInteger(body.flag) && typeof body.data === "string";
}

function notRecoverStore(filePath: string, detail: string): BrokerError {
  return new BrokerError("corruption", `${filePath} is not a recovery store: ${detail}`);
}

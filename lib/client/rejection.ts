/**
 * @module Rejection: what happens to a message its handler failed `maxFetchRetries` times, and the
 * recovery task that re-delivers kept messages. Policies:
 *
 * - `recover` (default, MetaQ's LocalRecoverPolicy): write it to the local recovery store of its
 *   (topic, group); the recovery task re-delivers it every `recoverIntervalMs` until the handler
 *   succeeds, and only then removes it;
 * - `dlq` (beyond MetaQ): produce it to `<topic>.DLQ` with its attribute; if that fails, keep it
 *   in the recovery store instead;
 * - `drop` (MetaQ's DropPolicy): count it, log it, move on.
 *
 * Nothing is lost silently: every path is counted, and when a message cannot be kept (the store
 * is full or failing) `reject` throws, so the reader does not move past it.
 */
import * as fs from "node:fs";
import { describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { joinAttribute, RECORD_HEADER_BYTES, splitAttribute } from "../protocol/record.ts";
import type { MetaqClient } from "./client.ts";
import type { ConsumedMessage, MessageHandler } from "./partition_reader.ts";
import { Producer } from "./producer.ts";
import { RecoverStore, recoverStoreDir, type StoredMessage } from "./recover_store.ts";

export type RejectionPolicy = "recover" | "drop" | "dlq";

export interface RejectionCounters {
  /** Messages written to the recovery store. */
  recoverStored: number;
  /** Messages produced to the dead-letter topic. */
  deadLettered: number;
  /** Messages that could not be produced to the dead-letter topic (then kept locally). */
  deadLetterFailures: number;
  dropped: number;
  /** Messages re-delivered from the recovery store with success (and removed). */
  recovered: number;
  /** Re-deliveries from the recovery store that failed again (kept for the next round). */
  recoverFailures: number;
}

export interface RejectionOptions {
  readonly policy: RejectionPolicy;
  readonly client: MetaqClient;
  readonly group: string;
  /** Recovery stores live in `<recoverDir>/<topic>@<group>/`. */
  readonly recoverDir: string;
  /** Cut a damaged recovery store at the damage instead of refusing to open it. */
  readonly repair?: boolean;
  readonly counters: RejectionCounters;
  readonly logger: Logger;
}

export class Rejection {
  readonly options: RejectionOptions;
  readonly #stores = new Map<string, Promise<RecoverStore>>();
  #producer: Producer | undefined;

  constructor(options: RejectionOptions) {
    this.options = options;
  }

  /** Hands a message on by the policy; throws when it could not be kept anywhere. */
  async reject(message: ConsumedMessage, error: unknown): Promise<void> {
    const { policy, logger, counters, group } = this.options;
    const where = { topic: message.topic, partition: message.partition, offset: message.offset };
    if (policy === "drop") {
      counters.dropped += 1;
      logger.log("warn", "Dropping a message its handler keeps failing", {
        ...where,
        group,
        id: message.id,
        reason: describeError(error),
      });
      return;
    }
    if (policy === "dlq" && await this.#deadLetter(message)) return;
    const store = await this.store(message.topic);
    await store.add({
      partition: message.partition,
      offset: message.offset,
      id: message.id,
      flag: message.flag,
      data: rawData(message),
    });
    counters.recoverStored += 1;
    logger.log("warn", "Kept a failing message in the recovery store", {
      ...where,
      group,
      reason: describeError(error),
    });
  }

  /** Opens stores left by earlier runs for these topics, so their messages are re-delivered. */
  async openExisting(topics: readonly string[]): Promise<void> {
    const { recoverDir, group } = this.options;
    for (const topic of topics) {
      if (!isDirectory(recoverStoreDir(recoverDir, topic, group))) continue;
      await this.store(topic).catch((error) =>
        this.options.logger.log("warn", "Cannot open the recovery store; its messages wait", {
          topic,
          group,
          reason: describeError(error),
        })
      );
    }
  }

  /** The recovery store of `topic` for this group, opened once. */
  store(topic: string): Promise<RecoverStore> {
    let store = this.#stores.get(topic);
    if (!store) {
      const { recoverDir, group, repair, logger } = this.options;
      store = RecoverStore.open({ dir: recoverDir, topic, group, repair, logger });
      store.catch(() => this.#stores.delete(topic)); // a later rejection tries again
      this.#stores.set(topic, store);
    }
    return store;
  }

  /** One recovery round: each kept message goes to its topic's handler; removed on success. */
  async recoverOnce(handlers: ReadonlyMap<string, MessageHandler>): Promise<void> {
    const { counters, logger, group } = this.options;
    for (const [topic, opening] of this.#stores) {
      const handler = handlers.get(topic);
      const store = await opening.catch(() => undefined);
      if (!handler || !store) continue;
      for (const stored of store.list()) {
        try {
          const pending = handler(recoveredMessage(stored));
          if (pending) await pending;
        } catch (error) {
          counters.recoverFailures += 1;
          logger.log(
            "warn",
            "Re-delivery from the recovery store failed; kept for the next round",
            {
              topic,
              group,
              key: stored.key,
              reason: describeError(error),
            },
          );
          continue;
        }
        await store.remove(stored.key);
        counters.recovered += 1;
      }
    }
  }

  async close(): Promise<void> {
    for (const opening of this.#stores.values()) {
      const store = await opening.catch(() => undefined);
      await store?.close();
    }
    this.#stores.clear();
  }

  /** True when the message is in `<topic>.DLQ`; false (counted) when it must be kept locally. */
  async #deadLetter(message: ConsumedMessage): Promise<boolean> {
    const { counters, logger, client } = this.options;
    this.#producer ??= new Producer(client, { windowMax: 64 });
    try {
      await this.#producer.send(`${message.topic}.DLQ`, message.payload, {
        attribute: message.attribute,
      });
      counters.deadLettered += 1;
      return true;
    } catch (error) {
      counters.deadLetterFailures += 1;
      logger.log("error", "Cannot produce to the dead-letter topic; keeping the message locally", {
        topic: `${message.topic}.DLQ`,
        reason: describeError(error),
      });
      return false;
    }
  }
}

/** The record's data as stored: the attribute block is rebuilt from the split message. */
function rawData(message: ConsumedMessage): Uint8Array {
  return message.attribute === undefined
    ? message.payload
    : joinAttribute(message.attribute, message.payload);
}

function recoveredMessage(stored: StoredMessage): ConsumedMessage {
  let attribute: string | undefined;
  let payload = stored.data;
  try {
    ({ attribute, payload } = splitAttribute(stored.flag, stored.data));
  } catch {
    // Delivered as stored, as the reader does for such records.
  }
  return {
    topic: stored.topic,
    partition: stored.partition,
    offset: stored.offset,
    nextOffset: stored.offset + RECORD_HEADER_BYTES + stored.data.length,
    id: stored.id,
    flag: stored.flag,
    attribute,
    payload,
    ack() {},
    rollback() {
      throw new Error("Cannot roll back a message re-delivered from the recovery store");
    },
  };
}

function isDirectory(dir: string): boolean {
  try {
    return fs.statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

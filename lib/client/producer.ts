/**
 * @module Producer: sends messages with a bounded window of unacknowledged puts (pipelining
 * many messages per round trip), choosing partitions with a selector: round robin (default),
 * random, by key hash (same key, same partition, so per-key order holds), or custom.
 */
import { crc32 } from "../crc32.ts";
import type { Message, MetaqClient, PutResult } from "./client.ts";

export interface SelectorInput {
  readonly topic: string;
  readonly partitions: number;
  readonly key?: string;
}

/** Returns a partition in [0, partitions). */
export type PartitionSelector = (input: SelectorInput) => number;

export function roundRobinSelector(): PartitionSelector {
  const next = new Map<string, number>();
  return ({ topic, partitions }) => {
    const value = next.get(topic) ?? 0;
    next.set(topic, value + 1);
    return value % partitions;
  };
}

export function randomSelector(random: () => number = Math.random): PartitionSelector {
  return ({ partitions }) => Math.floor(random() * partitions);
}

/** CRC-32 of the key's UTF-8 bytes modulo the partition count; keyless messages go round robin. */
export function keyHashSelector(
  fallback: PartitionSelector = roundRobinSelector(),
): PartitionSelector {
  const encoder = new TextEncoder();
  return (input) =>
    input.key === undefined ? fallback(input) : crc32(encoder.encode(input.key)) % input.partitions;
}

export interface ProducerOptions {
  /** Most puts in flight at once (MetaQ's async producer bounds its window too). */
  readonly windowMax?: number;
  readonly selector?: PartitionSelector;
}

export interface SendOptions {
  /** Explicit partition; overrides the selector. */
  readonly partition?: number;
  /** Routes by key hash when the selector is keyHashSelector (the default selector honours keys). */
  readonly key?: string;
  readonly attribute?: string;
  readonly flag?: number;
}

export class Producer {
  readonly client: MetaqClient;
  readonly windowMax: number;
  readonly #selector: PartitionSelector;
  readonly #partitions = new Map<string, Promise<number>>();
  #inFlight = 0;
  #waiters: (() => void)[] = [];
  #idleWaiters: (() => void)[] = [];

  constructor(client: MetaqClient, options: ProducerOptions = {}) {
    this.client = client;
    this.windowMax = options.windowMax ?? 1024;
    this.#selector = options.selector ?? keyHashSelector();
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Sends one message; waits for a window slot first, then for the broker's acknowledgement. */
  async send(
    topic: string,
    payload: Uint8Array | string,
    options: SendOptions = {},
  ): Promise<PutResult> {
    while (this.#inFlight >= this.windowMax) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    this.#inFlight += 1; // reserved before any await, so callers that do not await still see it
    try {
      const partition = options.partition ??
        this.#selector({ topic, partitions: await this.partitionCount(topic), key: options.key });
      const message: Message = {
        payload: typeof payload === "string" ? new TextEncoder().encode(payload) : payload,
        attribute: options.attribute,
        flag: options.flag,
      };
      return await this.client.put(topic, partition, message);
    } finally {
      this.#inFlight -= 1;
      this.#waiters.shift()?.();
      if (this.#inFlight === 0) { for (const wake of this.#idleWaiters.splice(0)) wake(); }
    }
  }

  /** Partition count of `topic`, asked once from the broker and cached. */
  partitionCount(topic: string): Promise<number> {
    let count = this.#partitions.get(topic);
    if (!count) {
      count = this.client.topicMetadata(topic).then((meta) => meta.partitions);
      count.catch(() => this.#partitions.delete(topic));
      this.#partitions.set(topic, count);
    }
    return count;
  }

  /** Resolves when a send would not wait for a window slot. */
  async whenWritable(): Promise<void> {
    while (this.#inFlight >= this.windowMax) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /** Resolves when nothing is in flight. */
  async flush(): Promise<void> {
    while (this.#inFlight > 0) {
      await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    }
  }
}

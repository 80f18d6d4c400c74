/**
 * @module ZkProducer: sends to a topic across every broker that publishes it in ZooKeeper, as
 * MetaQ's Java producer does (ProducerZooKeeper): the partitions are the masters'
 * `topics-pub/<topic>/<id>-m` entries, `<id>-0 .. <id>-(N-1)`, sorted by broker id then partition,
 * and each message goes to the next one round-robin (RoundRobinPartitionSelector), on a connection
 * to that broker id's master. The list is read again when the topic's publishers change (a watch
 * on `topics-pub/<topic>`, which a master moving within a cluster also triggers).
 *
 * A put that was never written (no connection to that master, or it answered 503 while shutting
 * down) goes to the next partition instead; one whose outcome is unknown (the connection broke
 * with it in flight, or no answer in time) is never sent elsewhere, since it may be stored
 * already. A put routed by key or to a named partition is not moved either.
 */
import type { ZkClient } from "../zk/client.ts";
import { MetaLayout } from "../zk/meta_layout.ts";
import { type ClientOptions, type Message, MetaqClient, type PutResult } from "./client.ts";
import { BrokerError } from "./errors.ts";
import { failureOutcome, keyHashSelector } from "./producer.ts";
import { type FleetPartition, publishablePartitions } from "./zk_fleet.ts";

export interface ZkProducerOptions {
  /** An open ZooKeeper client; the producer does not close it. */
  readonly zk: ZkClient;
  readonly root?: string;
  readonly clientOptions?: Omit<ClientOptions, "brokers">;
}

export interface ZkPutResult extends PutResult {
  readonly brokerId: number;
  /** `<brokerId>-<partition>`. */
  readonly name: string;
}

type Publishable = FleetPartition & { address: string };

export class ZkProducer {
  readonly options: ZkProducerOptions;
  readonly layout: MetaLayout;
  readonly #partitions = new Map<string, Promise<Publishable[]>>();
  readonly #next = new Map<string, number>();
  readonly #clients = new Map<string, MetaqClient>();
  readonly #byKey = keyHashSelector();

  readonly #unsubscribe: () => void;

  constructor(options: ZkProducerOptions) {
    this.options = options;
    this.layout = new MetaLayout(options.root ?? "/meta");
    // A new session has none of the old one's watches: read every list again when next used.
    this.#unsubscribe = options.zk.onState((state) => {
      if (state === "session") this.#partitions.clear();
    });
  }

  /** The partitions `topic` is published on now, in the order puts go round. */
  partitionsOf(topic: string): Promise<Publishable[]> {
    let partitions = this.#partitions.get(topic);
    if (!partitions) {
      partitions = this.#read(topic);
      this.#partitions.set(topic, partitions);
      partitions.catch(() => this.#partitions.delete(topic));
    }
    return partitions;
  }

  /**
   * Sends `message` to the next partition of `topic` round-robin, or to the partition `route`
   * names (`<brokerId>-<partition>`), or to the one its key hashes to (as `metaq produce --key`
   * does, over the partitions in the order above: the same partition for a key while the topic's
   * publishers stay the same).
   */
  async put(
    topic: string,
    message: Message,
    route: { readonly name?: string; readonly key?: string } = {},
  ): Promise<ZkPutResult> {
    const partitions = await this.partitionsOf(topic);
    if (partitions.length === 0) {
      throw new BrokerError("topicNotFound", `no broker publishes ${topic} in ZooKeeper`);
    }
    if (route.name !== undefined) {
      const target = partitions.find((partition) => partition.name === route.name);
      if (!target) {
        throw new BrokerError(
          "badRequest",
          `${topic} has no partition ${route.name} (published: ${
            partitions.map((partition) => partition.name).join(", ")
          })`,
        );
      }
      return await this.#send(topic, target, message);
    }
    if (route.key !== undefined) {
      const index = this.#byKey({ topic, partitions: partitions.length, key: route.key });
      return await this.#send(topic, partitions[index], message);
    }
    let failure: unknown;
    for (let attempt = 0; attempt < partitions.length; attempt++) {
      const index = this.#next.get(topic) ?? 0;
      this.#next.set(topic, (index + 1) % partitions.length);
      const target = partitions[index % partitions.length];
      try {
        return await this.#send(topic, target, message);
      } catch (error) {
        if (failureOutcome(error) !== "notWritten") throw error;
        failure = error;
      }
    }
    throw failure;
  }

  /**
   * Dials the masters publishing `topic` until one answers (after a lost connection); throws the
   * last failure when none does.
   */
  async reach(topic: string): Promise<void> {
    const addresses = [...new Set((await this.partitionsOf(topic)).map((p) => p.address))];
    if (addresses.length === 0) {
      throw new BrokerError("topicNotFound", `no broker publishes ${topic} in ZooKeeper`);
    }
    let failure: unknown;
    for (const address of addresses) {
      try {
        await this.#clientFor(address).connection();
        return;
      } catch (error) {
        failure = error;
      }
    }
    throw failure;
  }

  close(): void {
    this.#unsubscribe();
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
  }

  async #send(topic: string, target: Publishable, message: Message): Promise<ZkPutResult> {
    const result = await this.#clientFor(target.address).put(topic, target.partition, message);
    return { ...result, brokerId: target.brokerId, name: target.name };
  }

  async #read(topic: string): Promise<Publishable[]> {
    const { zk } = this.options;
    // Forget the list when the publishers change; the next put reads it again.
    await zk.getChildren(
      `${this.layout.brokerTopicsPub}/${topic}`,
      () => this.#partitions.delete(topic),
    )
      .catch(() =>
        zk.exists(`${this.layout.brokerTopicsPub}/${topic}`, () => this.#partitions.delete(topic))
      );
    return await publishablePartitions(zk, this.layout, topic);
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
}

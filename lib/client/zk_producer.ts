/**
 * @module ZkProducer: sends to a topic across every broker that publishes it in ZooKeeper, as
 * MetaQ's Java producer does (ProducerZooKeeper): the partitions are the masters'
 * `topics-pub/<topic>/<id>-m` entries, `<id>-0 .. <id>-(N-1)`, sorted by broker id then partition,
 * and each message goes to the next one round-robin (RoundRobinPartitionSelector), on a connection
 * to that broker id's master. The list is read again when the topic's publishers change (a watch
 * on `topics-pub/<topic>`, which a master moving within a cluster also triggers).
 */
import type { ZkClient } from "../zk/client.ts";
import { MetaLayout } from "../zk/meta_layout.ts";
import { type ClientOptions, type Message, MetaqClient, type PutResult } from "./client.ts";
import { BrokerError } from "./errors.ts";
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

  constructor(options: ZkProducerOptions) {
    this.options = options;
    this.layout = new MetaLayout(options.root ?? "/meta");
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
   * Sends `message` to the next partition of `topic` (or to `name`, `<brokerId>-<partition>`).
   * A broker that cannot be reached is skipped for the next partition, once per partition.
   */
  async put(topic: string, message: Message, name?: string): Promise<ZkPutResult> {
    const partitions = await this.partitionsOf(topic);
    if (partitions.length === 0) {
      throw new BrokerError("topicNotFound", `no broker publishes ${topic} in ZooKeeper`);
    }
    if (name !== undefined) {
      const target = partitions.find((partition) => partition.name === name);
      if (!target) throw new BrokerError("badRequest", `${topic} has no partition ${name}`);
      return await this.#send(topic, target, message);
    }
    let failure: unknown;
    for (let attempt = 0; attempt < partitions.length; attempt++) {
      const index = this.#next.get(topic) ?? 0;
      this.#next.set(topic, (index + 1) % partitions.length);
      const target = partitions[index % partitions.length];
      try {
        return await this.#send(topic, target, message);
      } catch (error) {
        if (error instanceof BrokerError) throw error; // the broker answered: not a routing matter
        failure = error;
      }
    }
    throw failure;
  }

  close(): void {
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

/**
 * @module Descriptions of topics and partitions as the JSON API and the dashboard show them:
 * the configured partition count, each stored partition's start and visible end, size, message
 * count, segment files and live rates. Read-only views over the store.
 */
import type { Broker } from "../broker/broker.ts";
import type { PartitionLog } from "../store/partition_log.ts";
import type { Rates, RateTracker } from "./rates.ts";

export interface PartitionInfo extends Rates {
  readonly partition: number;
  readonly startOffset: number;
  /** Offset after the last record consumers may read. */
  readonly endOffset: number;
  readonly bytes: number;
  /** Records appended (approximate across restarts, as MetaQ's count). */
  readonly messages: number;
  readonly segments: number;
  readonly closed: boolean;
}

export interface TopicInfo extends Rates {
  readonly name: string;
  /** Partitions the configuration gives the topic (0 when no section accepts it any more). */
  readonly numPartitions: number;
  readonly messages: number;
  readonly bytes: number;
  readonly acceptPublish: boolean;
  readonly acceptSubscribe: boolean;
  /** Partitions with a log on disk; others are created by their first message. */
  readonly partitions: readonly PartitionInfo[];
}

export function partitionInfo(
  broker: Broker,
  rates: RateTracker,
  entry: { topic: string; partition: number; log: PartitionLog },
): PartitionInfo {
  const { topic, partition, log } = entry;
  return {
    partition,
    startOffset: log.startOffset,
    endOffset: broker.readLimit(topic, partition, log),
    bytes: log.sizeBytes,
    messages: log.messageCount,
    segments: log.segmentStarts.length,
    closed: broker.closedPartitions.has(log.name),
    ...rates.partition(log.name),
  };
}

/** The topic as stored and configured, or undefined when it is neither. */
export function topicInfo(
  broker: Broker,
  rates: RateTracker,
  topic: string,
): TopicInfo | undefined {
  const stored = broker.store.topics().get(topic) ?? [];
  const configured = broker.config.topics.some((section) => section.pattern === topic);
  if (stored.length === 0 && !configured) return undefined;
  const settings = broker.topicSettings(topic);
  const partitions = stored.map((entry) => partitionInfo(broker, rates, { topic, ...entry }));
  const sum = (pick: (info: PartitionInfo) => number) =>
    partitions.reduce((total, info) => total + pick(info), 0);
  const round = (value: number) => Math.round(value * 100) / 100;
  return {
    name: topic,
    numPartitions: settings?.numPartitions ?? 0,
    messages: sum((info) => info.messages),
    bytes: sum((info) => info.bytes),
    acceptPublish: settings?.acceptPublish ?? broker.config.system.acceptPublish,
    acceptSubscribe: settings?.acceptSubscribe ?? broker.config.system.acceptSubscribe,
    produceMessagesPerSecond: round(sum((info) => info.produceMessagesPerSecond)),
    produceBytesPerSecond: round(sum((info) => info.produceBytesPerSecond)),
    consumeBytesPerSecond: round(sum((info) => info.consumeBytesPerSecond)),
    partitions,
  };
}

/** Every stored topic, then every exactly-named configured topic that has no data yet. */
export function topicNames(broker: Broker): string[] {
  const names = [...broker.store.topics().keys()];
  for (const section of broker.config.topics) {
    if (!section.pattern.includes("*") && !names.includes(section.pattern)) {
      names.push(section.pattern);
    }
  }
  return names;
}

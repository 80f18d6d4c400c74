/**
 * @module Descriptions of topics and partitions as the JSON API and the dashboard show them:
 * the configured partition count, each partition's start and readable end, size, message
 * count, segment files, live rates and (in a cluster) leader. Read-only views over the
 * partition facts (partition_facts.ts), the same on every node of a cluster. Internal `__`
 * topics are never described.
 */
import type { Broker } from "../broker/broker.ts";
import { isInternalTopic } from "../store/log.ts";
import type { AdminContext } from "./context.ts";
import { type PartitionFact, partitionFacts } from "./partition_facts.ts";
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
  /** Closed by an operator on the answering node. */
  readonly closed: boolean;
  /** The node leading the partition, in a cluster (null: alone, or no leader known now). */
  readonly leader: string | null;
}

export interface TopicInfo extends Rates {
  readonly name: string;
  /** Partitions the configuration gives the topic (0 when no section accepts it any more). */
  readonly numPartitions: number;
  readonly messages: number;
  readonly bytes: number;
  readonly acceptPublish: boolean;
  readonly acceptSubscribe: boolean;
  /** Partitions with a log; others are created by their first message. */
  readonly partitions: readonly PartitionInfo[];
}

/** What describing topics needs: the broker, the rates, and the facts sampled once. */
export interface TopicsInput {
  readonly broker: Broker;
  readonly rates: RateTracker;
  readonly facts: readonly PartitionFact[];
}

/** The partition facts now, with the rates sampled from them. */
export function sampleTopics(context: AdminContext): TopicsInput {
  const facts = partitionFacts(context);
  context.rates.sample(() => facts);
  return { broker: context.broker, rates: context.rates, facts };
}

export function partitionInfo(input: TopicsInput, fact: PartitionFact): PartitionInfo {
  return {
    partition: fact.partition,
    startOffset: fact.startOffset,
    endOffset: fact.endOffset,
    bytes: fact.bytes,
    messages: fact.messages,
    segments: fact.segments,
    closed: input.broker.closedPartitions.has(fact.name),
    leader: fact.leader ?? null,
    ...input.rates.partition(fact.name),
  };
}

/** The topic as stored and configured, or undefined when it is neither (or internal). */
export function topicInfo(input: TopicsInput, topic: string): TopicInfo | undefined {
  const { broker } = input;
  if (isInternalTopic(topic)) return undefined;
  const stored = input.facts.filter((fact) => fact.topic === topic);
  const named = broker.isNamedTopic(topic);
  if (stored.length === 0 && !named) return undefined;
  const settings = broker.topicSettings(topic);
  const partitions = stored.map((fact) => partitionInfo(input, fact));
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

/**
 * Every topic with a partition (but a deleted one whose copies are on their way out), then every
 * topic a section names exactly or an operator created without one yet.
 */
export function topicNames(input: TopicsInput): string[] {
  const names = [...new Set(input.facts.map((fact) => fact.topic))]
    .filter((name) => !input.broker.catalogueEntry(name)?.deleted);
  for (const name of input.broker.namedTopics()) if (!names.includes(name)) names.push(name);
  return names;
}

/** Every topic described. */
export function allTopics(input: TopicsInput): TopicInfo[] {
  return topicNames(input).map((name) => topicInfo(input, name)!);
}

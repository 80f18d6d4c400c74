/**
 * @module The partitions the topic routes, the overview, the dashboard and `/metrics` describe,
 * with their figures. On a broker that runs alone: every log open here. In a cluster: every
 * user partition with a known leader, described by its leader (this node's own log when it
 * leads, else the figures the leader shares, cluster_figures.ts), so every node shows the same
 * numbers; a partition held here whose leader is unknown is described by the copy here. The
 * readable end is the furthest one known (the leader's, or this copy's when it is ahead of the
 * last figures heard). The broker's own `__` logs are never listed.
 */
import type { Broker } from "../broker/broker.ts";
import type { Clock } from "../clock.ts";
import { isInternalTopic, type Log } from "../store/log.ts";
import { decodeFigures, figuresOfLog, type PartitionFigures } from "./cluster_figures.ts";
import type { ClusterView } from "./views.ts";

/** Names the clock of figures taken on this node. */
export const THIS_NODE = "self";

export interface PartitionFact extends PartitionFigures {
  readonly topic: string;
  readonly partition: number;
  /** `<topic>-<partition>`. */
  readonly name: string;
  /** The node whose figures these are (`timeMs` is its clock): THIS_NODE or a node id. */
  readonly source: string;
  /** The partition's leader, in a cluster, when one is known. */
  readonly leader?: string;
}

export interface FactParts {
  readonly broker: Broker;
  readonly clock: Clock;
  readonly cluster?: ClusterView;
}

/** Every user partition described, sorted by topic, then partition. */
export function partitionFacts(parts: FactParts): PartitionFact[] {
  const { broker, clock } = parts;
  const local = (log: Log) => figuresOfLog(broker, clock, log);
  const facts = new Map<string, PartitionFact>();
  for (const lead of parts.cluster?.partitions?.() ?? []) {
    const { topic, partition } = lead;
    const log = broker.logs.get(topic, partition);
    const shared = lead.here ? undefined : decodeFigures(lead.figures);
    const figures = shared ?? (log ? local(log) : undefined);
    if (!figures) continue; // led elsewhere, and its leader has not shared figures yet
    const endOffset = Math.max(figures.endOffset, log?.endOffset ?? 0);
    const name = `${topic}-${partition}`;
    const source = shared ? lead.leader : THIS_NODE;
    facts.set(name, { ...figures, endOffset, topic, partition, name, source, leader: lead.leader });
  }
  for (const { topic, partition, log } of broker.logs.list()) {
    if (isInternalTopic(topic) || facts.has(log.name)) continue;
    facts.set(log.name, { ...local(log), topic, partition, name: log.name, source: THIS_NODE });
  }
  return [...facts.values()].sort((a, b) =>
    a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1
  );
}

/** The furthest readable end known of each partition, by `<topic>-<partition>`. */
export function endsOf(facts: readonly PartitionFact[]): Map<string, number> {
  return new Map(facts.map((fact) => [fact.name, fact.endOffset]));
}

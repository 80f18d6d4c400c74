/**
 * @module The dashboard's view of the broker: one JSON snapshot (topics with rates and, in a
 * cluster, each partition's leader; groups with lag; every cluster node with its role and
 * health; recent errors; the last minute of throughput), served once at `/v1/overview` and
 * every second over SSE at `/v1/events`, with an edge's uplink. Topics, rates and lag are cluster-wide (a partition's
 * figures are its leader's), so every node shows the same; the request counters, connections
 * and recent errors are this node's own.
 */
import { METAQ_VERSION } from "../broker/broker.ts";
import { isInternalTopic } from "../store/log.ts";
import type { AdminContext } from "./context.ts";
import { allGroups } from "./group_info.ts";
import { clusterStatus } from "./ops_routes.ts";
import { endsOf } from "./partition_facts.ts";
import { sleep, type SseEvent, type SseSource } from "./sse.ts";
import { allTopics, sampleTopics } from "./topic_info.ts";

/** Recent log entries a snapshot carries. */
const SNAPSHOT_ERRORS_MAX = 20;

export async function buildSnapshot(context: AdminContext) {
  const { broker, rates } = context;
  const input = sampleTopics(context);
  const topics = allTopics(input);
  let groups = null;
  let groupsError: string | null = null;
  if (context.groups) {
    try {
      groups = await allGroups(endsOf(input.facts), context.groups);
    } catch (error) {
      groupsError = (error as Error).message;
    }
  }
  const cluster = await clusterStatus(context);
  return {
    timeMs: context.clock.wallMs(),
    broker: {
      brokerId: broker.config.system.brokerId,
      version: METAQ_VERSION,
      url: broker.brokerUrl,
      uptimeSeconds: broker.stats.uptimeSeconds(),
      connections: broker.connectionCount,
      streams: context.streams.open,
      damagedPartitions: [...broker.logs.failures().keys()].filter((name) =>
        !isInternalTopic(name)
      ),
    },
    totals: {
      ...broker.stats.counters,
      ...rates.total(),
      messages: topics.reduce((total, topic) => total + topic.messages, 0),
      bytes: topics.reduce((total, topic) => total + topic.bytes, 0),
    },
    history: rates.history(),
    topics,
    groups,
    groupsError,
    cluster: cluster ?? null,
    uplink: context.uplink?.status() ?? null,
    delayed: context.delayed?.status() ?? null,
    recentErrors: (context.recentLog?.recent() ?? []).slice(0, SNAPSHOT_ERRORS_MAX),
    recentErrorsTotal: context.recentLog?.total ?? 0,
  };
}

/** A snapshot every `snapshotIntervalMs`, as `snapshot` events. */
export class SnapshotFeed implements SseSource {
  readonly #context: AdminContext;
  #lastMs = Number.NEGATIVE_INFINITY;

  constructor(context: AdminContext) {
    this.#context = context;
  }

  async next(): Promise<SseEvent[]> {
    const now = this.#context.clock.monotonicMs();
    if (now - this.#lastMs < this.#context.snapshotIntervalMs) return [];
    this.#lastMs = now;
    const snapshot = await buildSnapshot(this.#context);
    return [{ event: "snapshot", data: JSON.stringify(snapshot) }];
  }

  wait(signal: AbortSignal): Promise<void> {
    const elapsed = this.#context.clock.monotonicMs() - this.#lastMs;
    return sleep(Math.max(1, this.#context.snapshotIntervalMs - elapsed), signal);
  }

  close(): void {}
}

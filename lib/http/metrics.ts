/**
 * @module `/metrics` in the Prometheus text exposition format (version 0.0.4): counters from the
 * broker's stats, one gauge per partition (its leader's figures in a cluster, so every node
 * exports the same partition values), consumer-group lag and raft state from the providers,
 * and an fsync latency histogram fed by every log's onSync hook on this node. Rendering is a
 * pure function of what it is given; FsyncHistogram is the only state.
 */
import type { DelayedStatus } from "../broker/delayed/delayed_part.ts";
import { LATENESS_BUCKETS_MS } from "../broker/delayed/lateness.ts";
import type { Broker } from "../broker/broker.ts";
import { METAQ_VERSION } from "../broker/broker.ts";
import type { Logs } from "../store/log.ts";
import type { PartitionFact } from "./partition_facts.ts";
import type { Rates } from "./rates.ts";
import type { ClusterStatus, UplinkPartitionStatus, UplinkStatus } from "./views.ts";

/** Upper bounds of the fsync histogram buckets, in seconds. */
export const FSYNC_BUCKETS_SECONDS = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
] as const;

/** Cumulative fsync latencies of every log on this node, attached as logs open. */
export class FsyncHistogram {
  readonly counts: number[] = FSYNC_BUCKETS_SECONDS.map(() => 0);
  count = 0;
  sumSeconds = 0;
  readonly #detach: (() => void)[] = [];

  /** Observes every log open now and every log opened later; `detach()` stops it. */
  attach(logs: Logs): void {
    const observe = (latencyMs: number) => this.observe(latencyMs / 1000);
    for (const { log } of logs.list()) this.#detach.push(log.onSync(observe));
    this.#detach.push(logs.onOpen(({ log }) => this.#detach.push(log.onSync(observe))));
  }

  detach(): void {
    for (const detach of this.#detach.splice(0)) detach();
  }

  observe(seconds: number): void {
    this.count += 1;
    this.sumSeconds += seconds;
    const index = FSYNC_BUCKETS_SECONDS.findIndex((bound) => seconds <= bound);
    if (index >= 0) this.counts[index] += 1;
  }
}

/** A group's lag on one partition, computed by the API from the provider's offsets. */
export interface LagSample {
  readonly group: string;
  readonly topic: string;
  readonly partition: number;
  readonly committedOffset: number;
  readonly lagBytes: number;
}

export interface MetricsInput {
  readonly broker: Broker;
  readonly fsync: FsyncHistogram;
  readonly rates: Rates;
  /** User partitions and their figures (partition_facts.ts). */
  readonly facts: readonly PartitionFact[];
  readonly openStreams: number;
  /** Undefined when no groups provider is configured. */
  readonly lags?: readonly LagSample[];
  readonly cluster?: ClusterStatus;
  /** An edge's uplink, when it has one. */
  readonly uplink?: UplinkStatus;
  /** Delayed messages as this node sees them. */
  readonly delayed?: DelayedStatus;
}

/** Broker-wide values: name, type, help, and how to read it. */
const BROKER_METRICS: readonly [string, string, string, (input: MetricsInput) => number][] = [
  [
    "metaq_uptime_seconds",
    "gauge",
    "Seconds since the broker started.",
    (input) => input.broker.stats.uptimeSeconds(),
  ],
  [
    "metaq_connections",
    "gauge",
    "Open client connections on the MetaQ port.",
    (input) => input.broker.connectionCount,
  ],
  ["metaq_http_streams", "gauge", "Open HTTP event streams.", (input) => input.openStreams],
  [
    "metaq_put_requests_total",
    "counter",
    "put commands received (TCP and HTTP).",
    (input) => input.broker.stats.counters.cmdPut,
  ],
  [
    "metaq_put_failed_total",
    "counter",
    "put commands that failed.",
    (input) => input.broker.stats.counters.putFailed,
  ],
  [
    "metaq_auth_failures_total",
    "counter",
    "Refused authentications and requests made without one (TCP and HTTP).",
    (input) => input.broker.stats.counters.authFailures,
  ],
  [
    "metaq_auth_denied_total",
    "counter",
    "Requests refused because the user lacks the permission.",
    (input) => input.broker.stats.counters.authDenied,
  ],
  [
    "metaq_connections_refused_total",
    "counter",
    "Client connections refused by maxConnections or maxConnectionsPerIp.",
    (input) => input.broker.stats.counters.connectionsRefused,
  ],
  [
    "metaq_connections_timed_out_total",
    "counter",
    "Client connections closed by idleTimeoutMs or frameTimeoutMs.",
    (input) => input.broker.stats.counters.connectionsTimedOut,
  ],
  [
    "metaq_put_bytes_total",
    "counter",
    "Message data bytes accepted by put.",
    (input) => input.broker.stats.counters.putBytes,
  ],
  [
    "metaq_get_requests_total",
    "counter",
    "get commands and HTTP fetches.",
    (input) => input.broker.stats.counters.cmdGet,
  ],
  [
    "metaq_get_miss_total",
    "counter",
    "get commands that found no data.",
    (input) => input.broker.stats.counters.getMiss,
  ],
  [
    "metaq_get_bytes_total",
    "counter",
    "Bytes served to consumers.",
    (input) => input.broker.stats.counters.getBytes,
  ],
  [
    "metaq_offset_requests_total",
    "counter",
    "offset commands (and 301 replies).",
    (input) => input.broker.stats.counters.cmdOffset,
  ],
  [
    "metaq_produce_messages_per_second",
    "gauge",
    "Messages appended per second.",
    (input) => input.rates.produceMessagesPerSecond,
  ],
  [
    "metaq_produce_bytes_per_second",
    "gauge",
    "Log bytes appended per second.",
    (input) => input.rates.produceBytesPerSecond,
  ],
  [
    "metaq_consume_bytes_per_second",
    "gauge",
    "Bytes served per second.",
    (input) => input.rates.consumeBytesPerSecond,
  ],
];

export function renderMetrics(input: MetricsInput): string {
  const out = new MetricsWriter();
  const counters = input.broker.stats.counters;
  out.family("metaq_build_info", "gauge", "Version of the running broker.");
  out.sample("metaq_build_info", { version: METAQ_VERSION }, 1);
  for (const [name, type, help, read] of BROKER_METRICS) out.single(name, type, help, read(input));
  out.family("metaq_transactions_total", "counter", "Transaction events by kind.");
  out.sample("metaq_transactions_total", { event: "begin" }, counters.txBegin);
  out.sample("metaq_transactions_total", { event: "xa_begin" }, counters.txXaBegin);
  out.sample("metaq_transactions_total", { event: "commit" }, counters.txCommit);
  out.sample("metaq_transactions_total", { event: "rollback" }, counters.txRollback);
  partitions(out, input.facts);
  fsync(out, input.fsync);
  if (input.lags) lags(out, input.lags);
  if (input.cluster) raft(out, input.cluster);
  if (input.uplink) uplink(out, input.uplink);
  if (input.delayed) delayed(out, input.delayed);
  return out.text();
}

function partitions(out: MetricsWriter, facts: readonly PartitionFact[]): void {
  const families: [string, string, string, (fact: PartitionFact) => number][] = [
    ["metaq_partition_start_offset", "gauge", "First offset still stored.", (f) => f.startOffset],
    [
      "metaq_partition_end_offset",
      "gauge",
      "Offset after the last readable record.",
      (f) => f.endOffset,
    ],
    [
      "metaq_partition_size_bytes",
      "gauge",
      "Bytes stored in the partition's segments.",
      (f) => f.bytes,
    ],
    [
      "metaq_partition_messages",
      "gauge",
      "Records appended (approximate across restarts).",
      (f) => f.messages,
    ],
    ["metaq_partition_segments", "gauge", "Segment files of the partition.", (f) => f.segments],
    [
      "metaq_partition_served_bytes_total",
      "counter",
      "Bytes served from the partition (by its leader, in a cluster).",
      (f) => f.servedBytes,
    ],
  ];
  for (const [name, type, help, read] of families) {
    out.family(name, type, help);
    for (const fact of facts) {
      out.sample(name, { topic: fact.topic, partition: String(fact.partition) }, read(fact));
    }
  }
  const led = facts.filter((fact) => fact.leader !== undefined);
  if (led.length === 0) return;
  out.family("metaq_partition_leader", "gauge", "Node id of the partition's leader.");
  for (const fact of led) {
    const labels = { topic: fact.topic, partition: String(fact.partition) };
    out.sample("metaq_partition_leader", labels, Number(fact.leader));
  }
}

function fsync(out: MetricsWriter, histogram: FsyncHistogram): void {
  const name = "metaq_fsync_duration_seconds";
  out.family(name, "histogram", "Latency of partition log fsyncs.");
  let cumulative = 0;
  FSYNC_BUCKETS_SECONDS.forEach((bound, index) => {
    cumulative += histogram.counts[index];
    out.sample(`${name}_bucket`, { le: String(bound) }, cumulative);
  });
  out.sample(`${name}_bucket`, { le: "+Inf" }, histogram.count);
  out.sample(`${name}_sum`, {}, histogram.sumSeconds);
  out.sample(`${name}_count`, {}, histogram.count);
}

function lags(out: MetricsWriter, samples: readonly LagSample[]): void {
  out.family("metaq_group_committed_offset", "gauge", "Offset a consumer group reads next.");
  for (const sample of samples) {
    out.sample("metaq_group_committed_offset", groupLabels(sample), sample.committedOffset);
  }
  out.family("metaq_group_lag_bytes", "gauge", "Bytes between a group's offset and the end.");
  for (const sample of samples) {
    out.sample("metaq_group_lag_bytes", groupLabels(sample), sample.lagBytes);
  }
}

function groupLabels(sample: LagSample): Record<string, string> {
  return { group: sample.group, topic: sample.topic, partition: String(sample.partition) };
}

function raft(out: MetricsWriter, status: ClusterStatus): void {
  out.family("metaq_raft_role", "gauge", "1 for this node's current raft role.");
  out.sample("metaq_raft_role", { node: status.nodeId, role: status.role }, 1);
  out.single("metaq_raft_term", "gauge", "Current raft term.", status.term);
  out.single(
    "metaq_raft_commit_index",
    "gauge",
    "Highest raft index known committed.",
    status.commitIndex,
  );
  out.family("metaq_raft_node_healthy", "gauge", "1 when a cluster node is reachable.");
  for (const node of status.nodes) {
    out.sample("metaq_raft_node_healthy", { node: node.id, role: node.role }, node.healthy ? 1 : 0);
  }
}

/**
 * Delayed messages: what waits (every node applies `__delay-0`), and what the node delivering
 * them counted, with the lateness of each delivery as a histogram in seconds.
 */
function delayed(out: MetricsWriter, status: DelayedStatus): void {
  const gauges: [string, string, number][] = [
    [
      "metaq_delayed_writing",
      "1 on the node that holds and delivers delayed messages.",
      status.writing ? 1 : 0,
    ],
    ["metaq_delayed_pending", "Delayed messages waiting for their time.", status.pending],
    ["metaq_delayed_firing", "Delayed messages on their way into their partitions.", status.firing],
    [
      "metaq_delayed_next_due_timestamp_seconds",
      "When the earliest pending delayed message is due (0: none).",
      (status.nextDueMs ?? 0) / 1000,
    ],
    ["metaq_delayed_log_bytes", "Bytes the delayed-messages log holds.", status.logBytes],
    ["metaq_delayed_index_bytes", "Memory of the delayed-messages index.", status.indexBytes],
  ];
  for (const [name, help, value] of gauges) out.single(name, "gauge", help, value);
  const counters: [string, string, number][] = [
    ["metaq_delayed_accepted_total", "Delayed messages this node accepted.", status.accepted],
    ["metaq_delayed_delivered_total", "Delayed messages this node delivered.", status.delivered],
    ["metaq_delayed_cancelled_total", "Delayed messages this node cancelled.", status.cancelled],
  ];
  for (const [name, help, value] of counters) out.single(name, "counter", help, value);
  const lateness = status.lateness;
  const name = "metaq_delayed_lateness_seconds";
  out.family(name, "histogram", "How long after its time each delayed message became readable.");
  LATENESS_BUCKETS_MS.forEach((boundMs, i) => {
    out.sample(`${name}_bucket`, { le: String(boundMs / 1000) }, lateness.buckets[i]);
  });
  out.sample(`${name}_bucket`, { le: "+Inf" }, lateness.count);
  out.sample(`${name}_sum`, {}, lateness.sumMs / 1000);
  out.sample(`${name}_count`, {}, lateness.count);
}

/** The edge's link to its hub, and per forwarded partition its lag, progress and drops. */
function uplink(out: MetricsWriter, status: UplinkStatus): void {
  out.single(
    "metaq_uplink_connected",
    "gauge",
    "1 while the uplink to the hub is up.",
    status.state === "up" ? 1 : 0,
  );
  out.single(
    "metaq_uplink_connects_total",
    "counter",
    "Connections made to the hub.",
    status.connects,
  );
  out.single(
    "metaq_uplink_failures_total",
    "counter",
    "Failed connection attempts and broken links to the hub.",
    status.failures,
  );
  out.single(
    "metaq_uplink_in_flight_bytes",
    "gauge",
    "Batch bytes read and not yet acknowledged by the hub.",
    status.inFlightBytes,
  );
  const families: [string, string, string, (p: UplinkPartitionStatus) => number][] = [
    [
      "metaq_uplink_lag_messages",
      "gauge",
      "Messages not yet at the hub (counted as the backlog is read).",
      (p) => p.lagMessages,
    ],
    ["metaq_uplink_lag_bytes", "gauge", "Log bytes not yet at the hub.", (p) => p.lagBytes],
    [
      "metaq_uplink_position",
      "gauge",
      "Source offset below which the hub has every message.",
      (p) => p.position,
    ],
    [
      "metaq_uplink_saved_position",
      "gauge",
      "The position as saved on the edge's disk (retention keeps everything above it).",
      (p) => p.savedPosition,
    ],
    [
      "metaq_uplink_forwarded_messages_total",
      "counter",
      "Messages the hub acknowledged (since start).",
      (p) => p.forwardedMessages,
    ],
    [
      "metaq_uplink_forwarded_bytes_total",
      "counter",
      "Batch bytes the hub acknowledged (since start).",
      (p) => p.forwardedBytes,
    ],
    [
      "metaq_uplink_last_ack_timestamp_seconds",
      "gauge",
      "When the hub last acknowledged a batch of the partition (0: not since start).",
      (p) => (p.lastAckWallMs ?? 0) / 1000,
    ],
    [
      "metaq_uplink_dropped_messages_total",
      "counter",
      "Messages the backlog cap gave up before the hub had them.",
      (p) => p.droppedMessages,
    ],
    [
      "metaq_uplink_dropped_bytes_total",
      "counter",
      "Log bytes the backlog cap gave up.",
      (p) => p.droppedBytes,
    ],
    [
      "metaq_uplink_looped_messages_total",
      "counter",
      "Messages not sent because they came from this edge through the hub (a loop).",
      (p) => p.loopedMessages,
    ],
  ];
  for (const [name, type, help, read] of families) {
    out.family(name, type, help);
    for (const p of status.partitions) {
      out.sample(name, { topic: p.topic, partition: String(p.partition) }, read(p));
    }
  }
  out.family("metaq_uplink_partition_state", "gauge", "1 for each forwarded partition's state.");
  for (const p of status.partitions) {
    out.sample("metaq_uplink_partition_state", {
      topic: p.topic,
      partition: String(p.partition),
      state: p.state,
    }, 1);
  }
}

class MetricsWriter {
  readonly #lines: string[] = [];

  family(name: string, type: string, help: string): void {
    this.#lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  }

  sample(name: string, labels: Record<string, string>, value: number): void {
    const pairs = Object.entries(labels).map(([key, text]) => `${key}="${escapeLabel(text)}"`);
    const rendered = Number.isFinite(value)
      ? String(value)
      : Number.isNaN(value)
      ? "NaN"
      : value > 0
      ? "+Inf"
      : "-Inf";
    this.#lines.push(`${name}${pairs.length ? `{${pairs.join(",")}}` : ""} ${rendered}`);
  }

  single(name: string, type: string, help: string, value: number): void {
    this.family(name, type, help);
    this.sample(name, {}, value);
  }

  text(): string {
    return `${this.#lines.join("\n")}\n`;
  }
}

function escapeLabel(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

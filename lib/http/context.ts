/**
 * @module The parts every admin route may use, assembled once by createAdminApp. Routes read
 * through them and never keep state of their own.
 */
import type { Broker } from "../broker/broker.ts";
import type { StatsItems } from "../broker/stats_report.ts";
import type { Clock } from "../clock.ts";
import type { LogRing } from "../log_ring.ts";
import type { FsyncHistogram } from "./metrics.ts";
import type { RateTracker } from "./rates.ts";
import type { PartitionReads } from "./reads.ts";
import type { StreamLimit } from "./sse.ts";
import type { ClusterView, DelayedView, GroupsView, UplinkView } from "./views.ts";
import type { Dispatch } from "./wire_reply.ts";

export interface AdminContext {
  readonly broker: Broker;
  /**
   * Serves a wire command (puts, MetaQ's `/get` and `/offset`): through the edge, which sends
   * it to the node that must serve it in a cluster, or to the broker when the app has no edge.
   */
  readonly dispatch: Dispatch;
  /** Whole records of a partition, here or through the edge. */
  readonly reads: PartitionReads;
  readonly clock: Clock;
  readonly rates: RateTracker;
  readonly fsync: FsyncHistogram;
  readonly streams: StreamLimit;
  /** Aborted at shutdown: every open event stream ends. */
  readonly shutdown: AbortSignal;
  readonly heartbeatMs: number;
  /** Milliseconds between two dashboard snapshots. */
  readonly snapshotIntervalMs: number;
  /** `stats` items other parts contribute (`cluster`...). */
  readonly statsItems: StatsItems;
  readonly groups?: GroupsView;
  readonly cluster?: ClusterView;
  /** An edge's uplink to its hub, when it has one. */
  readonly uplink?: UplinkView;
  /** Delayed messages (every broker has them; tests may leave them out). */
  readonly delayed?: DelayedView;
  readonly recentLog?: LogRing;
}

/**
 * @module The parts every admin route may use, assembled once by createAdminApp. Routes read
 * through them and never keep state of their own.
 */
import type { Broker } from "../broker/broker.ts";
import type { Reply } from "../protocol/reply.ts";
import type { PutCommand } from "../protocol/commands.ts";
import type { Clock } from "../clock.ts";
import type { LogRing } from "../log_ring.ts";
import type { FsyncHistogram } from "./metrics.ts";
import type { RateTracker } from "./rates.ts";
import type { StreamLimit } from "./sse.ts";
import type { ClusterView, GroupsView } from "./views.ts";

/** Serves one put: through the router, which forwards it to the partition's leader in a cluster. */
export type PutPath = (command: PutCommand, done: (reply: Reply) => void) => void;

export interface AdminContext {
  readonly broker: Broker;
  readonly put: PutPath;
  readonly clock: Clock;
  readonly rates: RateTracker;
  readonly fsync: FsyncHistogram;
  readonly streams: StreamLimit;
  /** Aborted at shutdown: every open event stream ends. */
  readonly shutdown: AbortSignal;
  readonly heartbeatMs: number;
  /** Milliseconds between two dashboard snapshots. */
  readonly snapshotIntervalMs: number;
  readonly groups?: GroupsView;
  readonly cluster?: ClusterView;
  readonly recentLog?: LogRing;
}

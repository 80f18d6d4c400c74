/**
 * @module Consumer groups in a cluster: the leader of `__meta-0` coordinates every group (the
 * routing sends group commands there), committed offsets live in that group's log (meta_state.ts),
 * so a new leader starts coordinating from them after a failover. Members of the old
 * coordinator are unknown to the new one and join again; its generations start above any the
 * old one issued (they are based on the Raft term), so a stale member's commit is refused.
 *
 * The log does not grow for ever: each time a quarter of `metaSegmentSize` of records was
 * applied, the coordinator writes a snapshot of the table (meta_state.ts), and every node then
 * drops its `__meta-0` segments below the snapshot's base, the leader first (its followers only
 * follow the start it announces, as for any replicated partition).
 */
import type { GroupService } from "../broker/groups/group_service.ts";
import { describeError } from "../errors.ts";
import { applyRetention } from "../store/retention.ts";
import {
  groupServiceOf,
  installGroupFilters,
  registerGroupCommands,
} from "../server/group_commands.ts";
import type { ClusterNode } from "./cluster_node.ts";
import { MetaState, type OffsetsSummary, ReplicatedOffsetStore } from "./meta_state.ts";
import type { Replica } from "./replica.ts";
import { META_GROUP, META_TOPIC } from "./placement.ts";

/** Generations of one coordinator live in [term * 2^20, (term + 1) * 2^20). */
const GENERATIONS_PER_TERM = 2 ** 20;

/** A follower refused compaction (its leader has not dropped those segments yet) retries after. */
const COMPACT_RETRY_MS = 1000;
/** Retries per snapshot; the next snapshot starts over (its base is further on). */
const COMPACT_RETRIES_MAX = 30;

export class ClusterGroups {
  readonly #node: ClusterNode;
  #state: MetaState | undefined;
  #service: GroupService | undefined;
  #store: ReplicatedOffsetStore | undefined;
  #serviceTerm = 0;
  #snapshotting = false;
  /** After a failed snapshot, the next waits until the log is applied this far. */
  #snapshotNotBefore = 0;
  #compacting = false;
  #compactedBase = 0;
  #compactRetries = 0;
  #compactTimer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  constructor(node: ClusterNode) {
    this.#node = node;
  }

  /** The coordinator on this node now, if this node leads `__meta-0`. */
  get service(): GroupService | undefined {
    return this.#service;
  }

  /** Registers the group commands and filters; called before the client port opens. */
  install(): void {
    const running = this.#node.running;
    registerGroupCommands(running.router, () => this.#service, running.logger);
    installGroupFilters(running, running.logger);
    this.#node.onGroupEvent(META_GROUP, () => this.#update());
  }

  /** This node's table of committed offsets, for `cluster status`. */
  offsetsSummary(): OffsetsSummary | undefined {
    return this.#state?.summary();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#compactTimer);
    await this.#service?.stop();
    this.#service = undefined;
  }

  /** On every commit and role change of `__meta-0`: apply, then start or stop coordinating. */
  #update(): void {
    const replica = this.#node.replica(META_TOPIC, 0);
    if (!replica) return;
    this.#state ??= new MetaState(replica.log.startOffset);
    this.#state.catchUp(replica);
    const status = replica.status();
    // A new leader knows every earlier commit only once it committed in its own term.
    const ready = replica.isLeader && status.commit.epoch === status.term;
    if (this.#service && (!replica.isLeader || status.term !== this.#serviceTerm)) {
      const old = this.#service;
      this.#service = undefined;
      old.stop().catch((error) =>
        this.#node.running.logger.log("warn", "Cannot stop group coordinator", {
          reason: describeError(error),
        })
      );
    }
    if (ready && !this.#service) this.#startService(status.term);
    if (this.#service) this.#snapshotIfDue();
    this.#compactIfDue(replica);
  }

  #snapshotIfDue(): void {
    const state = this.#state!;
    const every = Math.max(1, Math.floor(this.#node.running.config.system.metaSegmentSize / 4));
    if (this.#snapshotting || state.bytesSinceSnapshot < every) return;
    if (state.appliedOffset < this.#snapshotNotBefore) return;
    this.#snapshotting = true;
    const logger = this.#node.running.logger;
    this.#store!.snapshot().then(
      (bytes) => {
        if (bytes === undefined) return; // records in flight: tried again on the next commit
        logger.log("info", "Wrote a snapshot of committed offsets", {
          entries: state.entries().length,
          bytes,
        });
      },
      (error) => {
        this.#snapshotNotBefore = state.appliedOffset + every;
        logger.log("warn", "Cannot write a snapshot of committed offsets", {
          reason: describeError(error),
        });
      },
    ).finally(() => this.#snapshotting = false);
  }

  /**
   * Drops `__meta-0` segments wholly below the latest applied snapshot's base, once per
   * snapshot. A follower may be refused until its leader has dropped them too: it tries again
   * a second later.
   */
  #compactIfDue(replica: Replica): void {
    const base = this.#state!.snapshotBase;
    if (this.#compacting || this.#compactTimer || base === this.#compactedBase) return;
    if (base <= replica.log.startOffset) return;
    const { clock, logger, store } = this.#node.running;
    this.#compacting = true;
    let refused = false;
    applyRetention(replica.log, {
      policy: { kind: "delete", maxAgeMs: -Infinity, source: "snapshot" },
      nowMs: clock.wallMs(),
      storage: store.options.storage,
      logger,
      mayStartAt: (offset) => {
        if (offset > base) return false;
        if (replica.compactTo(offset)) return true;
        refused = true;
        return false;
      },
    }).then(
      () => {
        if (refused && ++this.#compactRetries <= COMPACT_RETRIES_MAX) {
          this.#compactTimer = setTimeout(() => this.#retryCompaction(), COMPACT_RETRY_MS);
          (this.#compactTimer as { unref?: () => void }).unref?.();
          return;
        }
        this.#compactedBase = base; // done, or given up until the next snapshot
        this.#compactRetries = 0;
      },
      (error) => {
        this.#compactedBase = base; // tried again after the next snapshot
        logger.log("error", "Cannot drop old segments of __meta-0", {
          reason: describeError(error),
        });
      },
    ).finally(() => this.#compacting = false);
  }

  #retryCompaction(): void {
    this.#compactTimer = undefined;
    if (!this.#stopped) this.#update();
  }

  #startService(term: number): void {
    const node = this.#node;
    const state = this.#state!;
    this.#store = new ReplicatedOffsetStore(() => node.replica(META_TOPIC, 0), state);
    this.#service = groupServiceOf(node.running, this.#store, term * GENERATIONS_PER_TERM);
    this.#service.start();
    this.#serviceTerm = term;
    node.running.logger.log("info", "Coordinating consumer groups", {
      node: node.nodeId,
      term,
      offsets: state.entries().length,
    });
  }
}

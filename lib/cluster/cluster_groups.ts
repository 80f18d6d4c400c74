/**
 * @module Consumer groups in a cluster: the leader of `__meta-0` coordinates every group (the
 * routing sends group commands there), committed offsets live in that group's log (meta_state.ts),
 * so a new leader starts coordinating from them after a failover. Members of the old
 * coordinator are unknown to the new one and join again; its generations start above any the
 * old one issued (they are based on the Raft term), so a stale member's commit is refused.
 */
import { GroupService } from "../groups/group_service.ts";
import { describeError } from "../errors.ts";
import { installGroupFilters, registerGroupCommands } from "../server/group_commands.ts";
import type { ClusterNode } from "./cluster_node.ts";
import { MetaState, ReplicatedOffsetStore } from "./meta_state.ts";
import { META_GROUP, META_TOPIC } from "./placement.ts";

/** Generations of one coordinator live in [term * 2^20, (term + 1) * 2^20). */
const GENERATIONS_PER_TERM = 2 ** 20;

export class ClusterGroups {
  readonly #node: ClusterNode;
  #state: MetaState | undefined;
  #service: GroupService | undefined;
  #serviceTerm = 0;

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

  async stop(): Promise<void> {
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
  }

  #startService(term: number): void {
    const node = this.#node;
    const { config, broker, logger, clock } = node.running;
    const state = this.#state!;
    this.#service = new GroupService({
      brokerId: config.system.brokerId,
      sessionTimeoutMs: config.system.groupSessionTimeoutMs,
      store: new ReplicatedOffsetStore(() => node.replica(META_TOPIC, 0), state),
      clock,
      logger,
      partitionCount: (topic) => broker.topicSettings(topic)?.numPartitions,
      logBounds: (topic, partition) => {
        const log = broker.store.get(topic, partition);
        if (!log) return undefined;
        return { start: log.startOffset, end: broker.readLimit(topic, partition, log) };
      },
      generationBase: term * GENERATIONS_PER_TERM,
    });
    this.#service.start();
    this.#serviceTerm = term;
    logger.log("info", "Coordinating consumer groups", {
      node: node.nodeId,
      term,
      offsets: state.entries().length,
    });
  }
}

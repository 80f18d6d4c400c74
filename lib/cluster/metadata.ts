/**
 * @module ClusterMetadata: the cluster's state (cluster_state.ts) kept in the metadata group
 * `__cluster-0`, which every member holds. Applies the group's committed records as they become
 * readable, snapshots and compacts it like the broker's own logs (lib/store/state_log.ts), and
 * appends records for the operator's commands. The node that first leads a new cluster's
 * metadata group writes its `init` record from `--peers`.
 */
import { describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { MessageIdGenerator } from "../protocol/message_id.ts";
import type { Log } from "../store/log.ts";
import { StateLog } from "../store/state_log.ts";
import { BrokerError } from "../errors.ts";
import { type ClusterRecord, ClusterState, encodeClusterRecord } from "./cluster_state.ts";

export const CLUSTER_TOPIC = "__cluster";
export const CLUSTER_GROUP = `${CLUSTER_TOPIC}-0`;

/** A snapshot is written once this much was applied after the previous one. */
const SNAPSHOT_EVERY_BYTES = 256 * 1024;

export interface ClusterMetadataOptions {
  readonly log: Log;
  readonly ids: MessageIdGenerator;
  readonly logger: Logger;
  readonly now: () => number;
  /** The `init` record this node writes if it leads a cluster that has none (not when joining). */
  readonly seed?: ClusterRecord & { kind: "init" };
}

export class ClusterMetadata {
  readonly state = new ClusterState();
  readonly #options: ClusterMetadataOptions;
  readonly #log: StateLog;
  readonly #listeners = new Set<() => void>();
  readonly #unsubscribe: () => void;
  #initializing = false;
  #stopped = false;

  constructor(options: ClusterMetadataOptions) {
    this.#options = options;
    const state = this.state;
    this.#log = new StateLog({
      log: options.log,
      machine: {
        apply: (data, offset) => state.apply(data, offset).snapshot !== undefined,
        snapshot: (base) => state.snapshot(base),
      },
      ids: options.ids,
      logger: options.logger,
      now: options.now,
      snapshotEveryBytes: SNAPSHOT_EVERY_BYTES,
    });
    this.#unsubscribe = options.log.onChange(() => this.update());
    this.update();
  }

  get log(): Log {
    return this.#log.log;
  }

  /** Calls `listener` after every change of the state. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Resolves once the state is initialized (a new cluster's leader writes `init` right after its
   * first election, so a command sent just after start waits for it instead of failing); false
   * when `timeoutMs` passes first.
   */
  whenInitialized(timeoutMs: number): Promise<boolean> {
    if (this.state.initialized) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (initialized: boolean) => {
        clearTimeout(timer);
        unsubscribe();
        resolve(initialized);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      const unsubscribe = this.onChange(() => {
        if (this.state.initialized) finish(true);
      });
    });
  }

  /** Applies what became readable; the writer initializes a new cluster. */
  update(): void {
    if (this.#stopped) return;
    const version = this.state.version;
    this.#log.catchUp();
    this.#log.maintain();
    if (this.state.version !== version) {
      for (const listener of [...this.#listeners]) listener();
    }
    this.#maybeInitialize();
  }

  /**
   * Appends `record` (on the writer of the metadata group) after checking it against the state
   * as applied here; resolves once it is applied.
   */
  async propose(record: ClusterRecord): Promise<void> {
    const log = this.#log.log;
    if (!log.writer.writable) {
      throw new BrokerError("notLeader", `this node does not lead ${CLUSTER_GROUP}`);
    }
    this.#log.catchUp();
    if (!this.state.initialized && record.kind !== "init") {
      throw new BrokerError("unavailable", "the cluster's metadata is not initialized yet");
    }
    const problem = this.state.problemWith(record);
    if (problem) throw new BrokerError("badRequest", problem);
    await this.#log.append(encodeClusterRecord(record));
    this.update();
  }

  stop(): void {
    this.#stopped = true;
    this.#unsubscribe();
    this.#log.stop();
  }

  #maybeInitialize(): void {
    const seed = this.#options.seed;
    const writer = this.#log.log.writer;
    if (!seed || this.state.initialized || this.#initializing || !writer.ready) return;
    if (this.#log.appliedOffset < this.#log.log.endOffset) return;
    this.#initializing = true;
    this.propose(seed).catch((error) =>
      this.#options.logger.log("warn", "Cannot initialize the cluster's metadata yet", {
        reason: describeError(error),
      })
    ).finally(() => {
      this.#initializing = false;
    });
  }
}

/**
 * @module The consumer-groups part of a broker: the group verbs, and the coordinator behind
 * them. Committed offsets live in the broker's own log `__meta-0` (offsets_state.ts), applied
 * on every node; the node that writes that log (the only node on a broker that runs alone; the
 * leader of `__meta-0` in a cluster) coordinates every group, and the edge sends the verbs
 * there. After a change of writer, the new coordinator starts from the applied offsets; members
 * of the old one join again, and its generations start above any the old one issued (they are
 * based on the log's writer epoch), so a stale member's commit is refused.
 */
import type { Clock } from "../../clock.ts";
import { metaqChecksum } from "../../crc32.ts";
import type { Config } from "../../config/config.ts";
import { describeError } from "../../errors.ts";
import { COORDINATOR_WAIT_MS, RECORD_DATA_BYTES_MAX, RECORD_HEADER_BYTES } from "../../limits.ts";
import type { Logger } from "../../log.ts";
import type { CommandTable, Home } from "../../protocol/command_table.ts";
import type { MessageIdGenerator } from "../../protocol/message_id.ts";
import { readHeader } from "../../protocol/record.ts";
import type { Log, Logs } from "../../store/log.ts";
import type { Broker } from "../broker.ts";
import { CoordinatorSlot } from "../coordinator_slot.ts";
import { StateLog, whenOpen } from "../../store/state_log.ts";
import type { OffsetEntry } from "../../protocol/group_wire.ts";
import { groupCommands } from "./group_commands.ts";
import { GroupService } from "./group_service.ts";
import { LogOffsetStore, OffsetsState, type OffsetsSummary } from "./offsets_state.ts";

/** Where a partition starts and ends (readable end). */
export interface PartitionBounds {
  readonly start: number;
  readonly end: number;
}

/** The broker's own log that keeps committed offsets. */
export const OFFSETS_TOPIC = "__meta";
/**
 * Generations of one coordinator live in [(epoch - 1) * 2^20, epoch * 2^20): above every one an
 * earlier writer issued (epochs start at 1, so a broker that runs alone starts at 0).
 */
const GENERATIONS_PER_EPOCH = 2 ** 20;
/** How often the offsets log's upkeep (snapshot, compaction) runs when nothing else moves it. */
const UPKEEP_MS = 1000;

export interface GroupsPartOptions {
  readonly config: Config;
  readonly broker: Broker;
  readonly logs: Logs;
  readonly ids: MessageIdGenerator;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Brings offsets kept before `__meta-0` existed (an older data directory) into it. */
  readonly migrate?: (write: (entries: readonly OffsetEntry[]) => Promise<void>) => Promise<void>;
  /**
   * First offset and readable end of a partition this node holds no copy of (in a cluster,
   * from what its leader shares); undefined when unknown.
   */
  readonly boundsElsewhere?: (topic: string, partition: number) => PartitionBounds | undefined;
  /** The same, asked of the partition's leader now (a reset checks its offset against it). */
  readonly askBounds?: (topic: string, partition: number) => Promise<PartitionBounds | undefined>;
  /** Resolve `start` only once `__meta-0` is attached (default true; a cluster passes false). */
  readonly waitForLog?: boolean;
  /**
   * `__meta-0` is replicated (a cluster): reads of committed offsets first confirm that this
   * node still writes it, so a deposed coordinator never answers with an offset its successor
   * has moved on from.
   */
  readonly replicated?: boolean;
}

export class GroupsPart {
  readonly name = "groups";
  readonly commands: CommandTable;
  readonly #options: GroupsPartOptions;
  readonly #state = new OffsetsState();
  #log: StateLog | undefined;
  readonly #slot = new CoordinatorSlot<GroupService>();
  #serviceEpoch = 0;
  #unsubscribe: (() => void) | undefined;
  #cancelOpen: (() => void) | undefined;
  #upkeep: ReturnType<typeof setInterval> | undefined;
  #stopped = false;

  constructor(options: GroupsPartOptions) {
    this.#options = options;
    const home: Home = { kind: "leader", topic: OFFSETS_TOPIC, partition: 0 };
    this.commands = groupCommands(
      () => this.#slot.value,
      // A node just made the writer of `__meta-0` coordinates once it is ready: wait for it.
      () => this.#slot.when(this.#log?.log.writer.writable ? COORDINATOR_WAIT_MS : 0),
      home,
      options.logger,
    );
  }

  /** The coordinator on this node now, if this node writes `__meta-0`. */
  get service(): GroupService | undefined {
    return this.#slot.value;
  }

  /** This node's table of committed offsets, to compare nodes (`cluster status`). */
  offsetsSummary(): OffsetsSummary {
    return this.#state.summary();
  }

  /** Resolves once `__meta-0` is attached (at once on one node; a cluster node may wait). */
  async start(): Promise<void> {
    if (this.#options.waitForLog !== false) {
      // One node: the log is here (or damaged, and the broker must not start without it).
      return await this.#attach(await this.#options.logs.open(OFFSETS_TOPIC, 0));
    }
    this.#cancelOpen = whenOpen(this.#options.logs, OFFSETS_TOPIC, 0, (log) => {
      this.#attach(log).catch((error) =>
        this.#options.logger.log("error", "Cannot attach the offsets log", {
          reason: describeError(error),
        })
      );
    });
  }

  async #attach(log: Log): Promise<void> {
    const { ids, logger, config } = this.#options;
    this.#log = new StateLog({
      log,
      machine: this.#state,
      ids,
      logger,
      now: () => this.#options.clock.monotonicMs(),
      snapshotEveryBytes: Math.max(1, Math.floor(config.system.metaSegmentSize / 4)),
    });
    // Offsets of an older data directory go in first, so the coordinator starts with them.
    this.#log.catchUp();
    if (this.#options.migrate && log.endOffset === log.startOffset && log.writer.ready) {
      const store = new LogOffsetStore(this.#state, this.#log);
      await this.#options.migrate((entries) => store.reset(entries));
    }
    this.#unsubscribe = log.onChange(() => this.#update());
    this.#update();
    // Snapshots wait for a quiet moment and a follower's compaction for its leader's: try
    // again every second even when nothing changes.
    this.#upkeep = setInterval(() => this.#update(), UPKEEP_MS);
    (this.#upkeep as { unref?: () => void }).unref?.();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#cancelOpen?.();
    clearInterval(this.#upkeep);
    this.#unsubscribe?.();
    this.#log?.stop();
    const service = this.#slot.take();
    this.#slot.close();
    await service?.stop();
  }

  /** On every change of `__meta-0`: apply, then start or stop coordinating. */
  #update(): void {
    const log = this.#log;
    if (!log || this.#stopped) return;
    log.catchUp();
    const writer = log.log.writer;
    if (this.#slot.value && (!writer.writable || writer.epoch !== this.#serviceEpoch)) {
      const old = this.#slot.take()!;
      old.stop().catch((error) =>
        this.#options.logger.log("warn", "Cannot stop group coordinator", {
          reason: describeError(error),
        })
      );
    }
    // A new writer knows every earlier offset only once it is ready (committed in its epoch).
    if (writer.ready && !this.#slot.value && log.appliedOffset >= log.log.endOffset) {
      this.#startService(log, writer.epoch);
    }
    log.maintain();
  }

  #startService(log: StateLog, epoch: number): void {
    const { broker, config, clock, logger } = this.#options;
    const service = new GroupService({
      brokerId: config.system.brokerId,
      sessionTimeoutMs: config.system.groupSessionTimeoutMs,
      store: new LogOffsetStore(this.#state, log, this.#options.replicated ?? false),
      clock,
      logger,
      partitionCount: (topic) => broker.topicSettings(topic)?.numPartitions,
      partitionCountsVersion: () => broker.topicsVersion,
      logBounds: (topic, partition) => {
        const partitionLog = broker.logs.get(topic, partition);
        if (!partitionLog) return this.#options.boundsElsewhere?.(topic, partition);
        return { start: partitionLog.startOffset, end: partitionLog.endOffset };
      },
      recordStartsAt: (topic, partition, offset) => {
        const partitionLog = broker.logs.get(topic, partition);
        if (!partitionLog || offset >= partitionLog.endOffset) return undefined;
        return recordStartsAt(partitionLog, offset);
      },
      freshBounds: (topic, partition) =>
        broker.logs.get(topic, partition) || !this.#options.askBounds
          ? Promise.resolve(undefined)
          : this.#options.askBounds(topic, partition),
      generationBase: Math.max(0, epoch - 1) * GENERATIONS_PER_EPOCH,
    });
    service.start();
    this.#serviceEpoch = epoch;
    this.#slot.set(service);
    logger.log("info", "Coordinating consumer groups", {
      epoch,
      offsets: this.#state.entries().length,
    });
  }
}

/** Whether a whole record with a valid checksum starts at `offset` (below the log's end). */
function recordStartsAt(log: Log, offset: number): boolean {
  if (offset < log.startOffset || offset >= log.endOffset) return false;
  if (log.readableAt(offset, RECORD_HEADER_BYTES) < RECORD_HEADER_BYTES) return false;
  const header = new Uint8Array(RECORD_HEADER_BYTES);
  log.readInto(header, 0, offset, RECORD_HEADER_BYTES);
  const { length, checksum } = readHeader(header, 0);
  if (length < 0 || length > RECORD_DATA_BYTES_MAX) return false;
  const whole = RECORD_HEADER_BYTES + length;
  if (log.readableAt(offset, whole) < whole) return false;
  const data = new Uint8Array(length);
  log.readInto(data, 0, offset + RECORD_HEADER_BYTES, length);
  return metaqChecksum(data) === checksum;
}

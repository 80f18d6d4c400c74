/**
 * @module The uplink part of an edge broker (`metaq serve --uplink host:port`, `[uplink]` in
 * server.ini): keeps accepting writes while the hub is away and forwards every matching
 * partition to it when it is back, once and in order (docs/uplink.md). It owns the broker's
 * own log `__uplink-0` (site name, forwarding positions, drops; uplink_state.ts), one HubLink,
 * and one PartitionPump per forwarded partition, started for the partitions open now and for
 * every one opened later. Retention asks it how far a partition may be deleted (never past
 * what the hub acknowledged and the edge saved). Runs on a broker that runs alone.
 */
import * as os from "node:os";
import { StateLog } from "../store/state_log.ts";
import type { Clock } from "../clock.ts";
import { ConfigError, topicMatches } from "../config/config.ts";
import type { UplinkConfig } from "../config/uplink_config.ts";
import { describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Random } from "../prng.ts";
import type { MessageIdGenerator } from "../protocol/message_id.ts";
import { SITE_PATTERN } from "../protocol/uplink_origin.ts";
import { isInternalTopic, type LogEntry, type Logs } from "../store/log.ts";
import * as fs from "node:fs";
import { BufferPool } from "./buffer_pool.ts";
import { ByteBudget } from "./byte_budget.ts";
import { HubLink, type LinkFacts } from "./hub_link.ts";
import { HubTopics } from "./hub_target.ts";
import { PartitionPump, type PositionStore, type PumpStatus } from "./partition_pump.ts";
import {
  type DropRecord,
  dropRecord,
  type DropTotals,
  type ForwardPosition,
  partitionKey,
  positionsRecord,
  siteRecord,
  UplinkState,
} from "./uplink_state.ts";

/** The broker's own log that keeps the uplink's state. */
export const UPLINK_TOPIC = "__uplink";

/** How often the state log's upkeep (snapshot, compaction) runs. */
const UPKEEP_MS = 1000;
/** How long stop() waits for pumps to finish the round in progress. */
const STOP_WAIT_MS = 5000;

export interface UplinkPartOptions {
  readonly uplink: UplinkConfig;
  readonly logs: Logs;
  /** The topic's partition count at the edge (its settings). */
  readonly partitionsOf: (topic: string) => number;
  readonly ids: MessageIdGenerator;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly random: Random;
  /** A state snapshot is due after this many bytes of records. */
  readonly snapshotEveryBytes: number;
}

export interface UplinkStatus extends LinkFacts {
  readonly site: string;
  readonly hubs: readonly string[];
  readonly inFlightBytes: number;
  readonly partitions: readonly PumpStatus[];
}

export class UplinkPart {
  readonly name = "uplink";
  readonly #options: UplinkPartOptions;
  readonly #config: UplinkConfig;
  readonly #state = new UplinkState();
  #stateLog: StateLog | undefined;
  #writer: PositionWriter | undefined;
  #link: HubLink | undefined;
  #hubTopics: HubTopics | undefined;
  readonly #budget: ByteBudget;
  readonly #pool: BufferPool;
  readonly #pumps = new Map<string, PartitionPump>();
  #site = "";
  #credentials: ReturnType<typeof readCredentials> = { auth: undefined, tls: undefined };
  #unsubscribe: (() => void) | undefined;
  #upkeep: ReturnType<typeof setInterval> | undefined;
  #stopped = false;

  constructor(options: UplinkPartOptions) {
    this.#options = options;
    this.#config = options.uplink;
    this.#budget = new ByteBudget(options.uplink.maxInFlightBytes);
    // Two buffers (read, built) per batch the budget lets be in flight at once.
    const batches = Math.ceil(options.uplink.maxInFlightBytes / options.uplink.batchBytes);
    this.#pool = new BufferPool(2 * batches);
  }

  /** Whether `topic` goes up. */
  forwards(topic: string): boolean {
    return !isInternalTopic(topic) &&
      this.#config.topics.some((pattern) => topicMatches(pattern, topic));
  }

  /**
   * How far retention may delete `topic`-`partition`: below the saved forwarding position of a
   * forwarded partition (nothing at all before the uplink has saved one); undefined for a
   * partition that does not go up.
   */
  retentionFloor(topic: string, partition: number): number | undefined {
    if (!this.forwards(topic)) return undefined;
    return this.#state.position(topic, partition)?.offset ??
      this.#options.logs.get(topic, partition)?.startOffset ?? 0;
  }

  /**
   * Opens `__uplink-0` and checks what it says against the partitions on disk, before clients
   * may write (the assembly calls it before the client port listens); start() then forwards.
   */
  async prepare(): Promise<void> {
    const { logs, ids, logger } = this.#options;
    if (this.#config.hubs.length === 0) {
      throw new ConfigError("Cannot start the uplink: give [uplink] hubs= or --uplink host:port");
    }
    this.#credentials = readCredentials(this.#config);
    const stateLog = this.#stateLog = new StateLog({
      log: await logs.open(UPLINK_TOPIC, 0),
      machine: this.#state,
      ids,
      logger,
      snapshotEveryBytes: this.#options.snapshotEveryBytes,
      now: () => this.#options.clock.monotonicMs(),
    });
    stateLog.catchUp();
    this.#writer = new PositionWriter(stateLog, this.#state, logger);
    this.#site = await this.#siteName(stateLog);
    await this.#forgetLostPositions();
  }

  start(): void {
    const { logs, logger } = this.#options;
    const stateLog = this.#stateLog!;
    this.#link = new HubLink({
      hubs: this.#config.hubs,
      ...this.#credentials,
      requestTimeoutMs: this.#config.requestTimeoutMs,
      retryMinMs: this.#config.retryMinMs,
      retryMaxMs: this.#config.retryMaxMs,
      random: this.#options.random,
      logger,
      now: () => this.#options.clock.monotonicMs(),
    });
    this.#hubTopics = new HubTopics(this.#link, () => this.#options.clock.monotonicMs());
    this.#link.ensureDialing();
    for (const entry of logs.list()) this.#consider(entry);
    this.#unsubscribe = logs.onOpen((entry) => this.#consider(entry));
    this.#upkeep = setInterval(() => stateLog.maintain(), UPKEEP_MS);
    (this.#upkeep as { unref?: () => void }).unref?.();
    logger.log("info", "Uplink started", {
      site: this.#site,
      hubs: this.#config.hubs.join(","),
      topics: this.#config.topics.join(","),
      partitions: this.#pumps.size,
    });
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#unsubscribe?.();
    if (this.#upkeep) clearInterval(this.#upkeep);
    this.#link?.close();
    const pumps = Promise.all([...this.#pumps.values()].map((pump) => pump.stop()));
    await withinMs(pumps, STOP_WAIT_MS);
    await withinMs(this.#writer?.idle() ?? Promise.resolve(), STOP_WAIT_MS);
    this.#stateLog?.stop();
  }

  status(): UplinkStatus {
    const link = this.#link?.facts() ?? { state: "connecting", connects: 0, failures: 0 };
    return {
      ...link,
      site: this.#site,
      hubs: this.#config.hubs,
      inFlightBytes: this.#budget.heldBytes,
      partitions: [...this.#pumps.values()]
        .map((pump) => pump.status())
        .sort((a, b) => a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition),
    };
  }

  /** The `stats uplink` item: the link, then one line per forwarded partition. */
  statsLines(): string[] {
    const status = this.status();
    const lines = [
      `site ${status.site}`,
      `hubs ${status.hubs.join(",")}`,
      `state ${status.state}`,
      `hub ${status.hub ?? "-"}`,
      `connects ${status.connects}`,
      `failures ${status.failures}`,
      `in_flight_bytes ${status.inFlightBytes}`,
    ];
    for (const p of status.partitions) {
      lines.push(
        [
          `${p.topic}-${p.partition}`,
          `state ${p.state}`,
          `hub ${p.hubTopic === undefined ? "-" : `${p.hubTopic}-${p.hubPartition}`}`,
          `position ${p.position}`,
          `saved ${p.savedPosition}`,
          `end ${p.endOffset}`,
          `lag_messages ${p.lagMessages}`,
          `lag_bytes ${p.lagBytes}`,
          `forwarded_messages ${p.forwardedMessages}`,
          `last_ack_ms ${p.lastAckWallMs ?? 0}`,
          `dropped_messages ${p.droppedMessages}`,
          `dropped_bytes ${p.droppedBytes}`,
          `looped_messages ${p.loopedMessages}`,
        ].join(" "),
      );
    }
    return lines;
  }

  /**
   * A partition whose log ends before its saved position lost what the hub has (a restored
   * backup, a replaced disk, `--repair`): new messages will take those offsets, and with them
   * origins the hub has seen. Checked before anything is written, its position goes back to the
   * log's end with no hub partition, so the pump looks for batches from the hub partition's end,
   * past every old origin.
   */
  async #forgetLostPositions(): Promise<void> {
    const { logs, logger } = this.#options;
    for (const saved of this.#state.positions()) {
      if (logs.failure(saved.topic, saved.partition)) continue; // damaged: refused, not lost
      const log = logs.get(saved.topic, saved.partition);
      const end = log ? Math.min(log.endOffset, log.facts().durableEnd) : 0;
      if (saved.offset <= end) continue;
      logger.log("error", "Uplink position is past the end of the edge's log", {
        partition: partitionKey(saved.topic, saved.partition),
        position: saved.offset,
        end,
        hint: "the edge lost data the hub has; new messages are forwarded from the end",
      });
      await this.#writer!.saveNow({ ...saved, offset: end, hubTopic: "", hubPartition: -1 });
    }
  }

  /** Starts a pump for a partition that goes up (once). */
  #consider(entry: LogEntry): void {
    if (this.#stopped || !this.forwards(entry.topic)) return;
    const key = partitionKey(entry.topic, entry.partition);
    if (this.#pumps.has(key)) return;
    const pump = new PartitionPump({
      topic: entry.topic,
      partition: entry.partition,
      log: entry.log,
      site: this.#site,
      config: this.#config,
      link: this.#link!,
      hubTopics: this.#hubTopics!,
      budget: this.#budget,
      pool: this.#pool,
      positions: this.#writer!,
      edgePartitions: () => this.#options.partitionsOf(entry.topic),
      clock: this.#options.clock,
      random: this.#options.random,
      logger: this.#options.logger,
    });
    this.#pumps.set(key, pump);
    pump.start();
  }

  /** The configured site, else the one saved, else a new one (saved before anything is sent). */
  async #siteName(stateLog: StateLog): Promise<string> {
    const site = this.#config.site || this.#state.site || generatedSite();
    if (this.#state.site !== site) {
      if (this.#state.site !== undefined) {
        this.#options.logger.log("warn", "Uplink site name changed", {
          was: this.#state.site,
          now: site,
        });
      }
      await stateLog.append(siteRecord(site));
    }
    return site;
  }
}

/**
 * Writes positions and drops to `__uplink-0` in the order they were made. Positions saved
 * while a write is in progress are merged into one record (the newest per partition wins), so
 * a fast stream of acknowledgements costs one write at a time.
 */
class PositionWriter implements PositionStore {
  readonly #log: StateLog;
  readonly #state: UplinkState;
  readonly #logger: Logger;
  readonly #queue: QueueItem[] = [];
  #writing: Promise<void> | undefined;

  constructor(log: StateLog, state: UplinkState, logger: Logger) {
    this.#log = log;
    this.#state = state;
    this.#logger = logger;
  }

  persisted(topic: string, partition: number): ForwardPosition | undefined {
    return this.#state.position(topic, partition);
  }

  dropped(topic: string, partition: number): DropTotals {
    return this.#state.drops(topic, partition);
  }

  save(position: ForwardPosition): void {
    this.#positionsItem().positions.set(partitionKey(position.topic, position.partition), position);
    this.#kick();
  }

  saveNow(position: ForwardPosition): Promise<void> {
    const item = this.#positionsItem();
    item.positions.set(partitionKey(position.topic, position.partition), position);
    const done = new Promise<void>((resolve, reject) => item.waiters.push({ resolve, reject }));
    this.#kick();
    return done;
  }

  drop(drop: DropRecord): Promise<void> {
    const done = new Promise<void>((resolve, reject) => {
      this.#queue.push({ kind: "drop", drop, waiters: [{ resolve, reject }] });
    });
    this.#kick();
    return done;
  }

  /** Resolves once nothing is queued or being written. */
  async idle(): Promise<void> {
    // Each pass writes at least one queued item; items queued meanwhile are bounded by pumps.
    while (this.#writing) await this.#writing;
  }

  #positionsItem(): Extract<QueueItem, { kind: "positions" }> {
    const last = this.#queue.at(-1);
    if (last?.kind === "positions") return last;
    const item: QueueItem = { kind: "positions", positions: new Map(), waiters: [] };
    this.#queue.push(item);
    return item;
  }

  #kick(): void {
    this.#writing ??= this.#drain().finally(() => (this.#writing = undefined));
  }

  async #drain(): Promise<void> {
    // Each pass takes one item off the queue.
    while (this.#queue.length > 0) {
      const item = this.#queue.shift()!;
      const record = item.kind === "drop"
        ? dropRecord(item.drop)
        : positionsRecord([...item.positions.values()]);
      try {
        await this.#log.append(record);
        for (const waiter of item.waiters) waiter.resolve();
      } catch (error) {
        this.#logger.log("error", "Cannot save the uplink's position", {
          reason: describeError(error),
        });
        for (const waiter of item.waiters) waiter.reject(error as Error);
      }
    }
  }
}

type Waiter = { resolve: () => void; reject: (error: Error) => void };
type QueueItem =
  | { kind: "positions"; positions: Map<string, ForwardPosition>; waiters: Waiter[] }
  | { kind: "drop"; drop: DropRecord; waiters: Waiter[] };

/** The hub credentials and trust of `[uplink]`, read from their files now. */
function readCredentials(config: UplinkConfig) {
  const read = (path: string, key: string) => {
    try {
      return fs.readFileSync(path, "utf8");
    } catch (error) {
      throw new ConfigError(`Cannot read [uplink] ${key} ${path}: ${describeError(error)}`);
    }
  };
  const token = config.tokenFile !== ""
    ? read(config.tokenFile, "tokenFile").split(/\r?\n/)[0].trim()
    : config.token;
  return {
    auth: config.user !== "" ? { user: config.user, token } : undefined,
    tls: config.tls
      ? {
        ca: config.tlsCaFile !== "" ? read(config.tlsCaFile, "tlsCaFile") : undefined,
        servername: config.tlsServerName || undefined,
      }
      : undefined,
  };
}

/**
 * `<host name>-<8 random hex digits>`: readable, and unique across edges that share a host name
 * (cloned containers do), so two edges never claim the same origins.
 */
function generatedSite(): string {
  const host = os.hostname().replace(/[^A-Za-z0-9_.\-]/g, "-").replace(/^[.\-]+/, "").slice(0, 40);
  const suffix = Array.from(
    crypto.getRandomValues(new Uint8Array(4)),
    (byte) => byte.toString(16).padStart(2, "0"),
  ).join("");
  const site = `${host || "edge"}-${suffix}`;
  return SITE_PATTERN.test(site) ? site : `edge-${suffix}`;
}

async function withinMs(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    promise.catch(() => {}),
    new Promise((resolve) => (timer = setTimeout(resolve, ms))),
  ]);
  clearTimeout(timer);
}

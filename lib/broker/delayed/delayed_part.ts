/**
 * @module The delayed-messages part of a broker: the `delay` and `delayed` commands
 * (lib/protocol/delayed.ts has their grammar). The messages wait in the broker's own log
 * `__delay-0`, applied on every node (DelayState); the node that writes that log accepts them
 * and delivers them (DelayFirer), and the edge sends these commands there. On a cluster the
 * log is replicated like `__tx-0`, so after a failover the new writer finds every acknowledged
 * message, and every delivery left half done, in its own copy.
 *
 * A `delay` is acknowledged once its record is durable in `__delay-0`: that log is synced
 * before any reply on one node and committed on a quorum on a cluster, as every put is at
 * least. Timers: the log's upkeep (completing firings that failed, dropping segments that hold
 * nothing live) every UPKEEP_MS.
 */
import type { Clock } from "../../clock.ts";
import { BrokerError, describeError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { ExtensionCommand, PutCommand } from "../../protocol/commands.ts";
import type { CommandTable, Home } from "../../protocol/command_table.ts";
import {
  CRON_VERB,
  decodeScheduleSpec,
  DELAY_MS_LIMIT_MAX,
  DELAY_VERB,
  DELAYED_VERB,
  parseWhen,
  SCHEDULE_NAME_PATTERN,
  type ScheduleListing,
  type ScheduleSpec,
} from "../../protocol/delayed.ts";
import { FLAG_HAS_ATTRIBUTE, joinAttribute } from "../../protocol/record.ts";
import { parseCron } from "../../config/cron.ts";
import { CronPlanner, nextOccurrence, readSchedule } from "./cron_planner.ts";
import type { MessageIdGenerator } from "../../protocol/message_id.ts";
import { errorReply, type RequestContext, type Respond, result } from "../../protocol/reply.ts";
import { MESSAGE_BYTES_LIMIT_MAX, RECORD_DATA_BYTES_MAX } from "../../limits.ts";
import type { Log, Logs } from "../../store/log.ts";
import { StateLog, whenOpen } from "../../store/state_log.ts";
import type { CancelTimer, Timers } from "../../timers.ts";
import type { Broker } from "../broker.ts";
import { CoordinatorSlot } from "../coordinator_slot.ts";
import type { PartitionWriter } from "../tx/manager.ts";
import { DelayFirer } from "./delay_firer.ts";
import { moveOldestForward } from "./delay_mover.ts";
import { encodeDelayRecord, type ScheduleRecord } from "./delay_record.ts";
import { DelayState } from "./delay_state.ts";
import { LatenessStats } from "./lateness.ts";

/** The broker's own log that holds delayed messages until their time. */
export const DELAY_TOPIC = "__delay";

/** How often failed deliveries are tried again and the log's upkeep runs. */
const UPKEEP_MS = 1000;
/** A new writer waits this long for itself to be ready before refusing a request. */
const WRITER_WAIT_MS = 3000;

export interface DelayedPartOptions {
  readonly broker: Broker;
  readonly logs: Logs;
  readonly ids: MessageIdGenerator;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly logger: Logger;
  /** Appends deliveries on their partitions' leaders (the `commitbatch` path). */
  readonly writer: PartitionWriter;
  /** Resolve `start` only once `__delay-0` is attached (default true; a cluster passes false). */
  readonly waitForLog?: boolean;
  /** Longest delay accepted (default DELAY_MS_LIMIT_MAX). */
  readonly delayMsMax?: number;
  /** TEST ONLY: see DelayFirerOptions.crashAfterFirings. */
  readonly crashAfterFirings?: number;
  readonly crash?: () => void;
}

/** What `delayed status` and the stats show. */
export interface DelayedStatus {
  readonly writing: boolean;
  readonly pending: number;
  readonly firing: number;
  readonly nextDueMs: number | null;
  readonly heldBytes: number;
  readonly logBytes: number;
  readonly indexBytes: number;
  readonly accepted: number;
  readonly delivered: number;
  readonly cancelled: number;
  readonly lateness: ReturnType<LatenessStats["summary"]>;
}

export class DelayedPart {
  readonly name = "delayed";
  readonly commands: CommandTable;
  readonly lateness = new LatenessStats();
  readonly #options: DelayedPartOptions;
  readonly #state: DelayState;
  #journal: StateLog | undefined;
  readonly #slot = new CoordinatorSlot<DelayFirer>();
  #firerEpoch = 0;
  #planner: CronPlanner | undefined;
  #stopUpkeep: CancelTimer | undefined;
  #unsubscribe: (() => void) | undefined;
  #cancelOpen: (() => void) | undefined;
  #compacting = false;
  #moving = false;
  #stopped = false;
  #accepted = 0;
  #cancelled = 0;
  #deliveredBefore = 0;

  constructor(options: DelayedPartOptions) {
    this.#options = options;
    this.#state = new DelayState({ onMessage: (at) => this.#slot.value?.wake(at) });
    const writer: Home = { kind: "leader", topic: DELAY_TOPIC, partition: 0 };
    this.commands = {
      [`ext:${DELAY_VERB}`]: {
        // A body a little over the message size limit is read and refused with a clear error,
        // as a put's is; a far larger one ends the connection (the parser's limit).
        spec: {
          args: 6,
          bodyLengthArg: 2,
          bodyBytesMax: Math.min(
            2 * options.broker.config.system.maxMessageSize,
            RECORD_DATA_BYTES_MAX,
          ),
        },
        home: () => writer,
        handle: (command: ExtensionCommand, _context: RequestContext, respond: Respond) =>
          this.#delay(command, respond),
      },
      [`ext:${CRON_VERB}`]: {
        spec: { args: 3, bodyLengthArg: 2, bodyBytesMax: SCHEDULE_BODY_BYTES_MAX },
        home: () => writer,
        handle: (command: ExtensionCommand, _context: RequestContext, respond: Respond) =>
          this.#live(respond, (_firer, journal) => this.#cron(command, journal, respond)),
      },
      [`ext:${DELAYED_VERB}`]: {
        spec: { args: 2 },
        home: () => writer,
        handle: (command: ExtensionCommand, _context: RequestContext, respond: Respond) =>
          this.#delayed(command, respond),
      },
    };
  }

  /** The applied state (tests, the bench). */
  get state(): DelayState {
    return this.#state;
  }

  status(): DelayedStatus {
    const firer = this.#slot.value;
    const index = this.#state.index;
    return {
      writing: firer !== undefined,
      pending: this.#state.pendingCount,
      firing: index.firingCount,
      nextDueMs: index.nextDueMs() ?? null,
      heldBytes: index.bytes,
      logBytes: this.#journal ? this.#journal.log.endOffset - this.#journal.log.startOffset : 0,
      indexBytes: index.memoryBytes,
      accepted: this.#accepted,
      delivered: this.#deliveredBefore + (firer?.deliveredCount ?? 0),
      cancelled: this.#cancelled,
      lateness: this.lateness.summary(),
    };
  }

  /** The `stats delayed` item. */
  statsLines(): string[] {
    const status = this.status();
    const { lateness } = status;
    return [
      `writing ${status.writing}`,
      `pending ${status.pending}`,
      `firing ${status.firing}`,
      `next_due_ms ${status.nextDueMs ?? -1}`,
      `held_bytes ${status.heldBytes}`,
      `log_bytes ${status.logBytes}`,
      `index_bytes ${status.indexBytes}`,
      `accepted ${status.accepted}`,
      `delivered ${status.delivered}`,
      `cancelled ${status.cancelled}`,
      `lateness_p50_ms ${lateness.p50Ms}`,
      `lateness_p99_ms ${lateness.p99Ms}`,
      `lateness_max_ms ${lateness.maxMs}`,
    ];
  }

  /** Resolves once `__delay-0` is attached (at once on one node; a cluster node may wait). */
  async start(): Promise<void> {
    this.#stopUpkeep = this.#options.timers.every(UPKEEP_MS, () => this.#upkeep());
    if (this.#options.waitForLog !== false) {
      this.#attach(await this.#options.logs.open(DELAY_TOPIC, 0));
      return;
    }
    this.#cancelOpen = whenOpen(this.#options.logs, DELAY_TOPIC, 0, (log) => this.#attach(log));
  }

  stop(): void {
    this.#stopped = true;
    this.#cancelOpen?.();
    this.#stopUpkeep?.();
    this.#unsubscribe?.();
    this.#journal?.stop();
    this.#slot.take()?.close();
    this.#planner?.close();
    this.#slot.close();
  }

  #attach(log: Log): void {
    const { ids, logger } = this.#options;
    this.#journal = new StateLog({
      log,
      machine: this.#state,
      ids,
      logger,
      now: () => this.#options.clock.monotonicMs(),
      // No snapshots: a million pending messages do not fit one record. The log is compacted
      // below its lowest live record instead (#compact).
      snapshotEveryBytes: Number.MAX_SAFE_INTEGER,
    });
    this.#unsubscribe = log.onChange(() => this.#update());
    this.#update();
  }

  /** On every change of `__delay-0`: apply, then start or stop delivering. */
  #update(): void {
    const journal = this.#journal;
    if (!journal || this.#stopped) return;
    journal.catchUp();
    const writer = journal.log.writer;
    if (this.#slot.value && (!writer.writable || writer.epoch !== this.#firerEpoch)) {
      const firer = this.#slot.take()!;
      this.#deliveredBefore += firer.deliveredCount;
      firer.close();
      this.#planner?.close();
      this.#planner = undefined;
    }
    if (writer.ready && !this.#slot.value && journal.appliedOffset >= journal.log.endOffset) {
      this.#startFirer(journal, writer.epoch);
    }
  }

  #startFirer(journal: StateLog, epoch: number): void {
    const { clock, timers, logger, writer, ids } = this.#options;
    const highest = this.#state.highestId;
    if (highest !== undefined) ids.observe(highest);
    const firer = new DelayFirer({
      journal,
      state: this.#state,
      writer,
      clock,
      timers,
      logger,
      lateness: this.lateness,
      crashAfterFirings: this.#options.crashAfterFirings,
      crash: this.#options.crash,
    });
    this.#firerEpoch = epoch;
    this.#slot.set(firer);
    logger.log("info", "Delivering delayed messages", {
      epoch,
      pending: this.#state.pendingCount,
      unfinishedFirings: this.#state.firings.size,
    });
    firer.start();
    this.#planner = new CronPlanner({
      journal,
      state: this.#state,
      ids,
      clock,
      timers,
      logger,
      pickPartition: (topic) =>
        this.#options.broker.putPartition({
          kind: "put",
          topic,
          partition: -1,
          flag: 0,
          checksum: -1,
          opaque: 0,
          body: new Uint8Array(0),
        }) ?? 0,
    });
    this.#planner.start();
  }

  #upkeep(): void {
    if (this.#stopped) return;
    this.#update();
    this.#slot.value?.completeUnfinished();
    this.#moveForward();
    this.#compact();
  }

  /** On the writer: moves old pending messages forward so that compaction can pass them. */
  #moveForward(): void {
    const firer = this.#slot.value;
    const journal = this.#journal;
    if (!firer || !journal || this.#moving) return;
    this.#moving = true;
    moveOldestForward({
      journal,
      state: this.#state,
      firer,
      segmentBytes: this.#options.broker.config.system.metaSegmentSize,
    }).catch((error) =>
      this.#options.logger.log("warn", "Cannot move old delayed messages forward", {
        reason: describeError(error),
      })
    ).finally(() => this.#moving = false);
  }

  /** Drops the log's segments that hold no live record (on every copy). */
  #compact(): void {
    const journal = this.#journal;
    if (!journal || this.#compacting) return;
    const log = journal.log;
    const floor = this.#state.liveFloor() ?? journal.appliedOffset;
    if (floor <= log.startOffset) return;
    this.#compacting = true;
    log.compactBefore(floor).catch((error) =>
      this.#options.logger.log("warn", "Cannot drop old segments of the delayed messages", {
        reason: describeError(error),
      })
    ).finally(() => this.#compacting = false);
  }

  /**
   * Runs `then` with the firer: now, or once this node (just made the log's writer) is ready;
   * a 503 when this node does not write `__delay-0`.
   */
  #live(respond: Respond, then: (firer: DelayFirer, journal: StateLog) => void): void {
    const firer = this.#slot.value;
    if (firer && this.#journal) return then(firer, this.#journal);
    const waitMs = this.#journal?.log.writer.writable ? WRITER_WAIT_MS : 0;
    void this.#slot.when(waitMs).then((ready) => {
      if (ready && this.#journal) return then(ready, this.#journal);
      respond(errorReply(
        new BrokerError("unavailable", "this node does not hold delayed messages now; retry"),
      ));
    });
  }

  /** `delay <topic> <partition> <length> <flag> <checksum> <when>` + the message's data. */
  #delay(command: ExtensionCommand, respond: Respond): void {
    const [topic, partitionText, _length, flagText, checksumText, whenText] = command.args;
    const partition = Number(partitionText);
    const flag = Number(flagText);
    const checksum = Number(checksumText);
    if (![partition, flag, checksum].every((n) => Number.isSafeInteger(n))) {
      const detail = `delay ${topic}: partition, flag and checksum must be integers`;
      return respond(errorReply(new BrokerError("badRequest", detail)));
    }
    const now = this.#options.clock.wallMs();
    const deliverAtMs = parseWhen(whenText, now);
    const limit = this.#options.delayMsMax ?? DELAY_MS_LIMIT_MAX;
    if (deliverAtMs === undefined || deliverAtMs - now > limit) {
      const detail = deliverAtMs === undefined
        ? `'${whenText}' is not +<delay ms> or <epoch ms>`
        : `${new Date(deliverAtMs).toISOString()} is more than ${limit} ms ahead`;
      return respond(errorReply(new BrokerError("badRequest", `delay ${topic}: ${detail}`)));
    }
    const put: PutCommand = {
      kind: "put",
      topic,
      partition,
      flag,
      checksum,
      opaque: command.opaque,
      body: command.body,
    };
    const checked = this.#options.broker.checkPut(put);
    if (!checked.ok) return respond(checked.reply);
    this.#live(respond, (_firer, journal) => {
      const id = this.#options.ids.nextId().toBigInt();
      const record = encodeDelayRecord({
        type: "message",
        id,
        deliverAtMs,
        topic,
        partition: checked.partition,
        flag,
        schedule: "",
        data: command.body,
      });
      if (record.length > RECORD_DATA_BYTES_MAX) {
        const detail = `a delayed message of ${command.body.length} bytes`;
        return respond(errorReply(new BrokerError("messageTooLarge", detail)));
      }
      journal.append(record).then(
        () => {
          this.#accepted += 1;
          respond(result(200, `${id} ${checked.partition} -1 ${deliverAtMs}`));
        },
        (error) => respond(errorReply(asBrokerError(error))),
      );
    });
  }

  /** `delayed status -` | `delayed cancel <id>`. */
  #delayed(command: ExtensionCommand, respond: Respond): void {
    const [action, argument] = command.args;
    if (action === "status") return respond(result(200, JSON.stringify(this.status())));
    if (action !== "cancel") {
      const detail = `delayed ${action}: expected status or cancel`;
      return respond(errorReply(new BrokerError("badRequest", detail)));
    }
    if (
      !/^-?\d{1,20}$/.test(argument) || BigInt.asIntN(64, BigInt(argument)) !== BigInt(argument)
    ) {
      const detail = `delayed cancel '${argument}': not a message id`;
      return respond(errorReply(new BrokerError("badRequest", detail)));
    }
    const id = BigInt(argument);
    this.#live(respond, (firer, journal) => {
      const index = this.#state.index;
      const slot = index.find(id);
      if (slot < 0) {
        const detail = `no delayed message ${id} is pending (delivered, cancelled, or never sent)`;
        return respond(errorReply(new BrokerError("notFound", detail)));
      }
      if (!firer.hold(slot)) {
        const detail = `delayed message ${id} is being delivered`;
        return respond(errorReply(new BrokerError("conflict", detail)));
      }
      journal.append(encodeDelayRecord({ type: "cancel", id })).then(
        () => {
          this.#cancelled += 1;
          respond(result(200, String(id)));
        },
        (error) => {
          firer.release(slot);
          respond(errorReply(asBrokerError(error)));
        },
      );
    });
  }

  /** `cron list|add|pause|resume|rm <name>` (docs/delayed.md#scheduled-messages). */
  #cron(command: ExtensionCommand, journal: StateLog, respond: Respond): void {
    const [action, name] = command.args;
    const fail = (kind: BrokerError["kind"], detail: string) =>
      respond(errorReply(new BrokerError(kind, `cron ${action} ${name}: ${detail}`)));
    if (action === "list") return respond(result(200, JSON.stringify(this.schedules())));
    if (!SCHEDULE_NAME_PATTERN.test(name)) {
      return fail("badRequest", "a name is letters, digits and _ . - (up to 64, not first . -)");
    }
    const existing = this.#state.schedules.get(name);
    const done = (promise: Promise<unknown>): void =>
      void promise.then(
        () => respond(result(200, name)),
        (error) => respond(errorReply(asBrokerError(error))),
      );
    switch (action) {
      case "add": {
        if (existing) return fail("conflict", "a schedule of that name exists (rm it first)");
        let record: ScheduleRecord;
        try {
          record = this.#newSchedule(decodeScheduleSpec(name, command.body));
        } catch (error) {
          if (error instanceof BrokerError) return respond(errorReply(error));
          return fail("badRequest", describeError(error));
        }
        return done(journal.append(encodeDelayRecord({ type: "schedule", ...record })));
      }
      case "pause":
      case "resume": {
        if (!existing) return fail("notFound", "no such schedule");
        const record = readSchedule(journal, existing);
        const paused = action === "pause";
        // Resumed from now on: what it missed while paused is not published late.
        const lastAtMs = paused
          ? record.lastAtMs
          : Math.max(record.lastAtMs, this.#options.clock.wallMs());
        const updated = { ...record, paused, lastAtMs };
        return done(journal.append(encodeDelayRecord({ type: "schedule", ...updated })));
      }
      case "rm":
        if (!existing) return fail("notFound", "no such schedule");
        return done(journal.append(encodeDelayRecord({ type: "unschedule", name })));
      default:
        return fail("badRequest", "expected list, add, pause, resume or rm");
    }
  }

  /** Every schedule, as `cron list` shows it. */
  schedules(): ScheduleListing[] {
    const now = this.#options.clock.wallMs();
    const sorted = [...this.#state.schedules.values()].sort((a, b) => a.name.localeCompare(b.name));
    return sorted.map((schedule) => {
      let nextAtMs: number | undefined;
      try {
        nextAtMs = schedule.paused
          ? undefined
          : nextOccurrence(parseCron(schedule.cron), schedule, now);
      } catch {
        nextAtMs = undefined; // a cron that no longer parses: listed, never planned
      }
      return {
        name: schedule.name,
        cron: schedule.cron,
        topic: schedule.topic,
        partition: schedule.partition,
        paused: schedule.paused,
        payloadBytes: schedule.payloadBytes,
        nextAtMs,
        lastAtMs: schedule.lastAtMs === 0 ? undefined : schedule.lastAtMs,
        createdAtMs: schedule.createdAtMs,
      };
    });
  }

  /** A new schedule's record from what `cron add` asked for; throws on what a put would refuse. */
  #newSchedule(spec: ScheduleSpec): ScheduleRecord {
    try {
      parseCron(spec.cron);
    } catch (error) {
      throw new BrokerError("badRequest", `cron add ${spec.name}: ${describeError(error)}`);
    }
    const { attribute, payload } = spec;
    const data = attribute === undefined ? payload : joinAttribute(attribute, payload);
    const flag = (spec.flag ?? 0) | (attribute === undefined ? 0 : FLAG_HAS_ATTRIBUTE);
    const checked = this.#options.broker.checkPut({
      kind: "put",
      topic: spec.topic,
      partition: spec.partition,
      flag,
      checksum: -1,
      opaque: 0,
      body: data,
    });
    if (!checked.ok) {
      const reply = checked.reply;
      const text = reply.kind === "result" && typeof reply.text === "string" ? reply.text : "";
      throw new BrokerError("badRequest", `cron add ${spec.name}: ${text}`);
    }
    return {
      name: spec.name,
      cron: spec.cron,
      topic: spec.topic,
      partition: spec.partition,
      flag,
      paused: spec.paused ?? false,
      createdAtMs: this.#options.clock.wallMs(),
      lastAtMs: 0,
      data,
    };
  }
}

/** Longest `cron add` body: a message of the largest size, in base64, and the rest. */
const SCHEDULE_BODY_BYTES_MAX = Math.ceil(MESSAGE_BYTES_LIMIT_MAX / 3) * 4 + 64 * 1024;

function asBrokerError(error: unknown): BrokerError {
  return error instanceof BrokerError ? error : new BrokerError("internal", describeError(error));
}

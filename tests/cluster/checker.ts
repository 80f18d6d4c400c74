/**
 * @module The history checker: a pure function of (client history, final drains, replica dumps,
 * node traces, fault windows, harness measurements) that enforces the reliability plan's
 * invariants I1-I13, two for transactions (I14, I15), and computes its figures. It trusts the
 * system under test for nothing but the data it returned. No clock, no I/O, no randomness.
 *
 * Each discrepancy is reported under one invariant, the most specific one, so a planted anomaly
 * fails exactly one invariant; a client-visible one also carries the name Jepsen's reports give
 * it (anomalies.ts defines each name, the terms, and how it differs from Jepsen's checker):
 *
 * | discrepancy                                                        | invariant | anomaly              |
 * | ------------------------------------------------------------------ | --------- | -------------------- |
 * | committed value missing from the final log                         | I1        | lost-write           |
 * | committed value in the final log never delivered to a consumer     | I1        | unseen               |
 * |   that had to read everything                                      |           |                      |
 * | value read (fetch, drain, replica) that nobody sent; damaged bytes | I2        |                      |
 * |   served by a drain                                                |           |                      |
 * | two values read at one (partition, offset)                         | I3        | inconsistent-offsets |
 * | acknowledged value present, but not at the offset its ack gave     | I4        | inconsistent-offsets |
 * | value at two offsets of the final log, not sent twice              | I5        | duplicate            |
 * | one producer's committed values out of send order (acks or log)    | I6        | nonmonotonic-send    |
 * | fetched value missing from the final log (read, then lost)         | I7        | lost-write           |
 * | fetched value at another offset of the final log than fetched      | I7        | inconsistent-offsets |
 * | a value whose send failed (503, rolled back), read                 | I7        | aborted-read         |
 * | a session's next record further on than the next in the log        | I8        | poll-skip            |
 * | a session's next record at or before one it already received       | I8        | nonmonotonic-poll    |
 * | committed offset observed going back, or above what was fetched    | I9        |                      |
 * | two leaders in one (group, term); two batches at one (offset, term)| I10       |                      |
 * | replica log differs from the final log after heal                  | I11       |                      |
 * | partition not serving within its bound; replica stuck in repair    | I12       |                      |
 * | unexpected exit, failed assertion in a log, RSS above the cap      | I13       |                      |
 * | transaction partly in the final log, or split by other records     | I14       | torn-transaction     |
 * | a transaction read another's value, yet precedes it in a partition | I15       | G1c                  |
 *
 * An acknowledged value whose ack offset now holds another value is I1 (the loss is the cause);
 * produce acks are held against the final log by I1 and I4, reads against each other by I3. A
 * committed transaction missing in part is I14, missing whole I1.
 */
import { ANOMALY_NAMES, type AnomalyName } from "./anomalies.ts";
import {
  type CheckInput,
  type HistoryOp,
  type LogRecord,
  type LogView,
  type OpName,
  parseValue,
  partitionKey,
  type TraceEvent,
} from "./history.ts";

export const INVARIANTS = {
  I1: "every acknowledged value is in the final committed log",
  I2: "every value read was sent by some producer",
  I3: "each (partition, offset) holds one value across all reads",
  I4: "an acknowledged value sits at the offset its ack returned",
  I5: "no duplicates unless the producer sent the value twice",
  I6: "one producer's acknowledged values keep their order",
  I7: "everything fetched stays in the final log; failed values are never read",
  I8: "a consumer session fetches contiguously",
  I9: "committed offsets never go back nor past what was fetched",
  I10: "one leader per (group, term); one batch per (offset, term)",
  I11: "replicas converge to the final log after heal",
  I12: "the cluster recovers within its bounds",
  I13: "no unexpected exits, failed assertions or runaway memory",
  I14: "a transaction is all or nothing, and one run of records per partition",
  I15: "a transaction follows, in the log, what it read before committing",
} as const;

export type InvariantId = keyof typeof INVARIANTS;
export const INVARIANT_IDS = Object.keys(INVARIANTS) as InvariantId[];

export interface Violation {
  readonly invariant: InvariantId;
  /** Jepsen's name for it, when it is one of the queue anomalies (anomalies.ts). */
  readonly anomaly?: AnomalyName;
  readonly kind: string;
  readonly message: string;
  /** The offending client operations, when there are any. */
  readonly ops?: readonly HistoryOp[];
}

export interface CheckOptions {
  /** Invariants that fail the run; the others are reported only. Default: all. */
  readonly enforce?: readonly InvariantId[];
  /** W1r: a value sent N times may appear up to N times. */
  readonly resend?: boolean;
  /**
   * Consumers that must have fetched every committed value by the end, by the `group` their
   * fetches carry: a consumer group (any member), a broadcast consumer, plain readers.
   */
  readonly deliveryGroups?: readonly string[];
  /** Violations listed per invariant (all are counted). Default 25. */
  readonly listedMax?: number;
  /**
   * Broker bugs already reproduced by a failing test: a matching violation is counted under
   * `known` and fails nothing, so a campaign keeps running while the fix is pending.
   */
  readonly known?: readonly KnownAnomaly[];
  /**
   * The topic has a retention policy (T18): an acknowledged put whose acknowledged offset lies
   * below its partition's final log start was deleted by retention, not lost. Whether retention
   * deleted only what its policy allows is the scenario's own check.
   */
  readonly retention?: boolean;
  /**
   * A relaxed mode that may lose acknowledged puts (fsync=interval after a power cut of every
   * node): the scenario bounds the loss itself (loss_bounds.ts). What follows from such a loss
   * is then not counted again: a lost value that was read before it went leaves its offset
   * holding a later value (I3 counts an offset only while two of its values are in the final
   * log), and a reader that stood past it asks for an offset that is no record boundary of the
   * rewritten log, where a MetaQ broker serves the middle of a record (I2 counts a damaged read
   * only at a record boundary of the final log, or past its end).
   */
  readonly lossAllowed?: boolean;
}

/** A violation that a failing test already shows (see CheckOptions.known). */
export interface KnownAnomaly {
  readonly anomaly: AnomalyName;
  /** Matches the `error` of an operation the violation lists. */
  readonly error: RegExp;
  /** The test that reproduces it (and fails until the broker is fixed). */
  readonly reproduction: string;
}

export interface Percentiles {
  readonly count: number;
  readonly p50: number | null;
  readonly p99: number | null;
  readonly max: number | null;
}

export interface Figures {
  readonly attempts: number;
  readonly acked: number;
  readonly failed: number;
  readonly indeterminate: number;
  /** Indeterminate produces whose value is in the final log. */
  readonly recovered: number;
  readonly lost: {
    readonly total: number;
    readonly prefix: number;
    readonly middle: number;
    readonly postfix: number;
  };
  readonly notDelivered: number;
  readonly unexpected: number;
  readonly duplicates: number;
  readonly inconsistentOffsets: number;
  readonly wrongAckOffsets: number;
  /** Acks whose offset holds another value in the final log (Jepsen's "inconsistent offsets" on sends). */
  readonly ackConflicts: number;
  readonly reorderings: number;
  readonly readsThenLost: number;
  readonly failedValuesRead: number;
  readonly fetchSkips: number;
  readonly offsetRegressions: number;
  readonly throughputPerSecond: number;
  readonly unavailabilityMs: { readonly max: number; readonly byPartition: Record<string, number> };
  readonly failoverMs: Percentiles & { readonly never: number };
  readonly elections: Record<string, number>;
  readonly termIncrements: Record<string, number>;
  readonly latencyMs: { readonly quiet: Percentiles; readonly fault: Percentiles };
  readonly convergenceMs: number | null;
  readonly repairMs: Record<string, number>;
  readonly deliveries: number;
  readonly uniqueDeliveries: number;
  readonly redeliveryRatio: number | null;
  /** Transactions by outcome; `decided`: journalled, to be completed by the broker. */
  readonly transactions: {
    readonly attempts: number;
    readonly committed: number;
    readonly decided: number;
    readonly failed: number;
    readonly indeterminate: number;
  };
}

export interface CheckResult {
  readonly valid: boolean;
  /** Enforced invariants with at least one violation. */
  readonly failed: readonly InvariantId[];
  /** Report-only invariants with at least one violation. */
  readonly reportOnly: readonly InvariantId[];
  readonly counts: Partial<Record<InvariantId, number>>;
  /** Violations per Jepsen anomaly name (all of them, listed or not). */
  readonly anomalies: Partial<Record<AnomalyName, number>>;
  readonly violations: readonly Violation[];
  /** Violations matching a known anomaly, by its reproduction; counted nowhere else. */
  readonly known: Readonly<Record<string, number>>;
  readonly knownViolations: readonly Violation[];
  readonly figures: Figures;
}

/** A client operation: an invoke and its completion. */
export interface Operation {
  readonly client: string;
  readonly op: OpName;
  readonly outcome: "ok" | "fail" | "info";
  readonly start: number;
  /** Completion time; Infinity when the operation never completed. */
  readonly end: number;
  readonly invoke: HistoryOp;
  readonly completion?: HistoryOp;
  /** invoke fields overlaid with the completion's. */
  readonly fields: HistoryOp;
}

const DEFAULT_LISTED_MAX = 25;

export function checkHistory(input: CheckInput, options: CheckOptions = {}): CheckResult {
  const ops = pairOperations(input.history);
  const world = indexWorld(input, ops);
  const all: Violation[] = [
    ...checkLoss(world, options),
    ...checkPhantoms(world, input, options),
    ...checkOffsets(world, options),
    ...checkAckOffsets(world),
    ...checkDuplicates(world, options),
    ...checkOrder(world),
    ...checkReads(world),
    ...checkSessions(world, ops),
    ...checkCommittedOffsets(world, ops),
    ...checkTraces(input.traces),
    ...checkConvergence(world, input.replicas),
    ...checkRecovery(input),
    ...checkProcesses(input),
    ...checkTransactions(world),
    ...checkCycles(world, ops),
  ];
  const known: Record<string, number> = {};
  const knownViolations: Violation[] = [];
  const found = all.filter((violation) => {
    const match = knownMatch(violation, options.known ?? []);
    if (!match) return true;
    known[match.reproduction] = (known[match.reproduction] ?? 0) + 1;
    knownViolations.push(violation);
    return false;
  });
  const enforce = new Set(options.enforce ?? INVARIANT_IDS);
  const counts: Partial<Record<InvariantId, number>> = {};
  const anomalies: Partial<Record<AnomalyName, number>> = {};
  for (const violation of found) {
    counts[violation.invariant] = (counts[violation.invariant] ?? 0) + 1;
    if (violation.anomaly) anomalies[violation.anomaly] = (anomalies[violation.anomaly] ?? 0) + 1;
  }
  const violated = INVARIANT_IDS.filter((id) => (counts[id] ?? 0) > 0);
  const listedMax = options.listedMax ?? DEFAULT_LISTED_MAX;
  const listed = new Map<InvariantId, number>();
  const violations = found.filter((violation) => {
    const count = listed.get(violation.invariant) ?? 0;
    listed.set(violation.invariant, count + 1);
    return count < listedMax;
  });
  const failed = violated.filter((id) => enforce.has(id));
  return {
    valid: failed.length === 0,
    failed,
    reportOnly: violated.filter((id) => !enforce.has(id)),
    counts,
    anomalies: Object.fromEntries(
      ANOMALY_NAMES.filter((name) => anomalies[name]).map((name) => [name, anomalies[name]]),
    ),
    violations,
    known,
    knownViolations: knownViolations.slice(0, options.listedMax ?? DEFAULT_LISTED_MAX),
    figures: computeFigures(world, input, ops, found),
  };
}

function knownMatch(
  violation: Violation,
  known: readonly KnownAnomaly[],
): KnownAnomaly | undefined {
  return known.find((entry) =>
    entry.anomaly === violation.anomaly &&
    (violation.ops ?? []).some((op) => op.error !== undefined && entry.error.test(op.error))
  );
}

/** Pairs each client's invokes with their completions (clients are sequential). */
export function pairOperations(history: readonly HistoryOp[]): Operation[] {
  const out: Operation[] = [];
  const open = new Map<string, HistoryOp>();
  const close = (invoke: HistoryOp, completion?: HistoryOp) => {
    out.push({
      client: invoke.client,
      op: invoke.op,
      outcome: completion ? completion.kind as "ok" | "fail" | "info" : "info",
      start: invoke.t,
      end: completion ? completion.t : Infinity,
      invoke,
      completion,
      fields: completion ? { ...invoke, ...completion } : invoke,
    });
  };
  for (const entry of history) {
    const pending = open.get(entry.client);
    if (entry.kind === "invoke") {
      if (pending) close(pending); // a client that moved on left the previous one indeterminate
      open.set(entry.client, entry);
      continue;
    }
    if (pending && pending.op === entry.op) {
      open.delete(entry.client);
      close(pending, entry);
    } else {
      close({ ...entry, kind: "invoke" }, entry); // a completion logged without its invoke
    }
  }
  for (const pending of open.values()) close(pending);
  return out;
}

interface ValueStat {
  readonly value: string;
  readonly part: string;
  /** Each send of the value: a produce, or the value's share of a transaction. */
  readonly ops: Operation[];
  /** The transaction that put it, when it was put in one. */
  readonly txn?: Operation;
}

interface FinalLog {
  readonly view: LogView;
  readonly byOffset: ReadonlyMap<number, LogRecord>;
  readonly offsetsOf: ReadonlyMap<string, readonly number[]>;
  /** Offset of a record → its index in the version order (0, 1, 2...). */
  readonly indexAt: ReadonlyMap<number, number>;
}

interface ReadObservation {
  readonly kind: "fetch" | "drain" | "replica";
  readonly part: string;
  readonly offset: number;
  readonly value: string;
  /** Who read it, for messages: `fetch by c1`, `drain of node 2`. */
  readonly source: string;
  readonly op?: Operation;
}

interface World {
  readonly values: ReadonlyMap<string, ValueStat>;
  readonly finals: ReadonlyMap<string, FinalLog>;
  readonly reads: readonly ReadObservation[];
  readonly fetches: readonly Operation[];
  /** Transactions (`txn` operations) with their writes as (partition key, value). */
  readonly txns: readonly { op: Operation; writes: { part: string; value: string }[] }[];
}

function indexWorld(input: CheckInput, ops: readonly Operation[]): World {
  const values = new Map<string, ValueStat>();
  const fetches: Operation[] = [];
  const reads: ReadObservation[] = [];
  const txns: World["txns"][number][] = [];
  const addSend = (op: Operation, part: string, value: string, txn?: Operation) => {
    const stat = values.get(value) ?? { value, part, ops: [], txn };
    stat.ops.push(op);
    values.set(value, stat);
  };
  for (const op of ops) {
    const part = partitionKey(op.fields.topic, op.fields.partition);
    if (op.op === "produce" && op.fields.value !== undefined) addSend(op, part, op.fields.value);
    if (op.op === "txn") {
      const writes = (op.fields.writes ?? []).map(([partition, value]) => ({
        part: partitionKey(op.fields.topic, partition),
        value,
      }));
      txns.push({ op, writes });
      for (const [partition, offset, value] of op.fields.reads ?? []) {
        const source = `read by transaction ${op.fields.txn}`;
        reads.push({
          kind: "fetch",
          part: partitionKey(op.fields.topic, partition),
          offset,
          value,
          source,
          op,
        });
      }
      for (const [partition, value] of op.fields.writes ?? []) {
        const fields = { ...op.fields, partition, value, offset: undefined };
        addSend({ ...op, fields }, partitionKey(op.fields.topic, partition), value, op);
      }
    }
    if (op.op === "fetch" && op.outcome === "ok") {
      fetches.push(op);
      for (const [offset, value] of op.fields.records ?? []) {
        reads.push({ kind: "fetch", part, offset, value, source: `fetch by ${op.client}`, op });
      }
    }
  }
  const finals = new Map<string, FinalLog>();
  for (const view of [...input.drains, ...input.replicas]) {
    const part = partitionKey(view.topic, view.partition);
    for (const record of view.records) {
      reads.push({
        kind: view.source,
        part,
        offset: record.offset,
        value: record.value,
        source: describeView(view),
      });
    }
    if (view.source === "drain" && !finals.has(part)) finals.set(part, indexLog(view));
  }
  return { values, finals, reads, fetches, txns };
}

function indexLog(view: LogView): FinalLog {
  const byOffset = new Map<number, LogRecord>();
  const offsetsOf = new Map<string, number[]>();
  const indexAt = new Map<number, number>();
  view.records.forEach((record, index) => {
    byOffset.set(record.offset, record);
    indexAt.set(record.offset, index);
    const offsets = offsetsOf.get(record.value) ?? [];
    offsets.push(record.offset);
    offsetsOf.set(record.value, offsets);
  });
  return { view, byOffset, offsetsOf, indexAt };
}

const describeView = (view: LogView) => `${view.source} of node ${view.node}`;
/** Committed: answered 200, or (a transaction) journalled and to be completed by the broker. */
const committed = (op: Operation) => op.outcome === "ok" || op.fields.decided === true;
const acked = (stat: ValueStat) => stat.ops.some(committed);
const definitelyFailed = (stat: ValueStat) => stat.ops.every((op) => op.outcome === "fail");
/** How many of a transaction's values are in the final logs. */
const presentCount = (world: World, writes: readonly { part: string; value: string }[]) =>
  writes.filter((write) => world.finals.get(write.part)?.offsetsOf.has(write.value)).length;

/** I1: acknowledged values missing from the final log, split per producer by position. */
function checkLoss(world: World, options: CheckOptions): Violation[] {
  const out: Violation[] = [];
  const readSeqs = new Map<string, number[]>();
  for (const read of world.reads) {
    const parsed = parseValue(read.value);
    if (!parsed || read.kind === "replica") continue;
    const seqs = readSeqs.get(parsed.producer) ?? [];
    seqs.push(parsed.seq);
    readSeqs.set(parsed.producer, seqs);
  }
  const bounds = new Map<string, { min: number; max: number }>();
  for (const [producer, seqs] of readSeqs) {
    bounds.set(producer, { min: minOf(seqs, Infinity), max: maxOf(seqs, -Infinity) });
  }
  const missingDrain = new Set<string>();
  for (const stat of world.values.values()) {
    if (!acked(stat)) continue;
    // A committed transaction missing in part is torn (I14), not lost.
    if (stat.txn && presentCount(world, txnWrites(world, stat.txn)) > 0) continue;
    const final = world.finals.get(stat.part);
    if (!final) {
      if (!missingDrain.has(stat.part)) {
        missingDrain.add(stat.part);
        out.push({
          invariant: "I1",
          kind: "no-final-log",
          message: `Partition ${stat.part} has acknowledged values but no final drain`,
        });
      }
      continue;
    }
    if (final.offsetsOf.has(stat.value)) continue;
    if (options.retention && belowLogStart(stat, final)) continue;
    const kind = lossKind(stat.value, bounds);
    const ack = stat.ops.find(committed)!;
    const where = ack.op === "txn"
      ? `committed in transaction ${ack.fields.txn} through node ${ack.fields.node ?? "?"}`
      : `acknowledged at offset ${ack.fields.offset} of ${stat.part} by node ${
        ack.fields.node ?? "?"
      }`;
    out.push({
      invariant: "I1",
      anomaly: "lost-write",
      kind: `lost-${kind}`,
      message: `${stat.value} ${where} is missing from the final log of ${stat.part}`,
      ops: [ack.invoke, ...(ack.completion ? [ack.completion] : [])],
    });
  }
  return [...out, ...checkDelivery(world, options)];
}

/** Whether a put was acknowledged at an offset below the final log's start (retention). */
function belowLogStart(stat: ValueStat, final: FinalLog): boolean {
  if (stat.txn) return false; // a transaction's offsets are not acknowledged
  return stat.ops.some((op) =>
    op.outcome === "ok" && op.fields.offset !== undefined && op.fields.offset < final.view.logStart
  );
}

const txnWritesCache = new WeakMap<Operation, { part: string; value: string }[]>();

/** A transaction's writes as (partition key, value). */
function txnWrites(world: World, txn: Operation): { part: string; value: string }[] {
  let writes = txnWritesCache.get(txn);
  if (!writes) {
    writes = world.txns.find((entry) => entry.op === txn)?.writes ?? [];
    txnWritesCache.set(txn, writes);
  }
  return writes;
}

function lossKind(
  value: string,
  bounds: ReadonlyMap<string, { min: number; max: number }>,
): "prefix" | "middle" | "postfix" {
  const parsed = parseValue(value);
  const range = parsed && bounds.get(parsed.producer);
  if (!parsed || !range) return "prefix"; // nothing of that producer was ever read
  if (parsed.seq < range.min) return "prefix";
  if (parsed.seq > range.max) return "postfix";
  return "middle";
}

/**
 * I1 for consumers (at-least-once), Jepsen's `unseen`: every committed value in the final log
 * was fetched by each consumer that had to read everything. Values missing from the final log
 * are lost writes, not unseen ones.
 */
function checkDelivery(world: World, options: CheckOptions): Violation[] {
  const out: Violation[] = [];
  for (const group of options.deliveryGroups ?? []) {
    const delivered = new Set<string>();
    for (const op of world.fetches) {
      if (op.fields.group !== group) continue;
      for (const [, value] of op.fields.records ?? []) delivered.add(value);
    }
    for (const stat of world.values.values()) {
      if (!acked(stat) || delivered.has(stat.value)) continue;
      if (!world.finals.get(stat.part)?.offsetsOf.has(stat.value)) continue;
      out.push({
        invariant: "I1",
        anomaly: "unseen",
        kind: "not-delivered",
        message: `${stat.value} (${stat.part}) was committed but ${group} never fetched it`,
      });
    }
  }
  return out;
}

/** I2: every value read was attempted; drains never serve damaged bytes. */
function checkPhantoms(world: World, input: CheckInput, options: CheckOptions): Violation[] {
  const out: Violation[] = [];
  const reported = new Set<string>();
  for (const read of world.reads) {
    if (world.values.has(read.value) || reported.has(read.value)) continue;
    reported.add(read.value);
    out.push({
      invariant: "I2",
      kind: "phantom",
      message: `${
        JSON.stringify(read.value)
      } at offset ${read.offset} of ${read.part} (${read.source}) was never sent`,
      ops: read.op ? [read.op.fields] : undefined,
    });
  }
  for (const entry of input.history) {
    if (entry.op !== "fetch" || !entry.error?.startsWith("damaged:")) continue;
    if (options.lossAllowed && staleOffset(world, entry)) continue;
    out.push({
      invariant: "I2",
      kind: "damaged-read",
      message: `Node ${entry.node ?? "?"} served damaged bytes to ${entry.client}: ${entry.error}`,
      ops: [entry],
    });
  }
  for (const view of input.drains) {
    if (view.damage === undefined) continue;
    out.push({
      invariant: "I2",
      kind: "damaged-read",
      message: `Node ${view.node} served damaged bytes for ${
        partitionKey(view.topic, view.partition)
      }: ${view.damage}`,
    });
  }
  return out;
}

/** I3: one value per (partition, offset) across fetches, drains and replica dumps. */
/**
 * Whether a fetch asked for an offset inside the final log that is no record boundary there: a
 * position a reader took from records that were lost and written over (CheckOptions.lossAllowed).
 */
function staleOffset(world: World, fetch: HistoryOp): boolean {
  const final = world.finals.get(partitionKey(fetch.topic, fetch.partition));
  const offset = fetch.offset;
  if (!final || offset === undefined) return false;
  return offset > final.view.logStart && offset < final.view.end && !final.byOffset.has(offset);
}

function checkOffsets(world: World, options: CheckOptions): Violation[] {
  const seen = new Map<string, Map<string, string[]>>();
  for (const read of world.reads) {
    const key = `${read.part}@${read.offset}`;
    const byValue = seen.get(key) ?? new Map<string, string[]>();
    const sources = byValue.get(read.value) ?? [];
    if (!sources.includes(read.source)) sources.push(read.source);
    byValue.set(read.value, sources);
    seen.set(key, byValue);
  }
  const out: Violation[] = [];
  for (const [key, byValue] of seen) {
    if (byValue.size < 2) continue;
    if (options.lossAllowed) {
      const part = key.slice(0, key.lastIndexOf("@"));
      const kept = [...byValue.keys()].filter((value) =>
        world.finals.get(part)?.offsetsOf.has(value) === true
      );
      if (kept.length < 2) continue; // the others were lost (and read before they went)
    }
    const described = [...byValue].map(([value, sources]) => `${value} (${sources.join(", ")})`);
    out.push({
      invariant: "I3",
      anomaly: "inconsistent-offsets",
      kind: "inconsistent-offset",
      message: `${key} holds ${byValue.size} values: ${described.join(" vs ")}`,
    });
  }
  return out;
}

/** I4: an acknowledged value that survived sits at (one of) the offset(s) its acks returned. */
function checkAckOffsets(world: World): Violation[] {
  const out: Violation[] = [];
  for (const stat of world.values.values()) {
    const offsets = world.finals.get(stat.part)?.offsetsOf.get(stat.value);
    if (!offsets) continue;
    for (const op of stat.ops) {
      const offset = op.fields.offset;
      if (op.outcome !== "ok" || offset === undefined || offsets.includes(offset)) continue;
      out.push({
        invariant: "I4",
        anomaly: "inconsistent-offsets",
        kind: "wrong-ack-offset",
        message:
          `${stat.value} was acknowledged at offset ${offset} of ${stat.part} but the final log has it at ${
            offsets.join(", ")
          }`,
        ops: [op.invoke, op.completion!],
      });
    }
  }
  return out;
}

/** I5: no value at two offsets of the final log unless it was sent that many times (W1r). */
function checkDuplicates(world: World, options: CheckOptions): Violation[] {
  const out: Violation[] = [];
  for (const [part, final] of world.finals) {
    for (const [value, offsets] of final.offsetsOf) {
      if (offsets.length < 2) continue;
      const sends = world.values.get(value)?.ops.length ?? 0;
      if (options.resend && offsets.length <= sends) continue;
      out.push({
        invariant: "I5",
        anomaly: "duplicate",
        kind: "duplicate",
        message: `${value} appears ${offsets.length} times in ${part} (offsets ${
          offsets.join(", ")
        }) but was sent ${sends} time(s)${options.resend ? "" : " and the workload never resends"}`,
      });
    }
  }
  return out;
}

/** I6: per producer and partition, acknowledged values keep seq order in acks and in the log. */
function checkOrder(world: World): Violation[] {
  const byProducer = new Map<string, { seq: number; stat: ValueStat; ack: Operation }[]>();
  for (const stat of world.values.values()) {
    const parsed = parseValue(stat.value);
    const ack = stat.ops.find((op) => op.outcome === "ok");
    if (!parsed || !ack) continue;
    const key = `${parsed.producer} on ${stat.part}`;
    const list = byProducer.get(key) ?? [];
    list.push({ seq: parsed.seq, stat, ack });
    byProducer.set(key, list);
  }
  const out: Violation[] = [];
  for (const [key, list] of byProducer) {
    list.sort((a, b) => a.seq - b.seq);
    const final = world.finals.get(list[0].stat.part);
    const positions: {
      label: string;
      offset: (entry: (typeof list)[number]) => number | undefined;
    }[] = [
      { label: "acks", offset: (entry) => entry.ack.fields.offset },
      { label: "final log", offset: (entry) => final?.offsetsOf.get(entry.stat.value)?.[0] },
    ];
    for (const { label, offset } of positions) {
      let previous: { value: string; offset: number } | undefined;
      for (const entry of list) {
        const at = offset(entry);
        if (at === undefined) continue;
        if (previous && at <= previous.offset) {
          out.push({
            invariant: "I6",
            anomaly: "nonmonotonic-send",
            kind: "reordered",
            message:
              `${key}: ${entry.stat.value} is at offset ${at} in the ${label}, not after ${previous.value} at ${previous.offset}`,
            ops: [entry.ack.completion!],
          });
        }
        previous = { value: entry.stat.value, offset: at };
      }
    }
  }
  return out;
}

/**
 * I7: fetched records stay in the final log, at the offset they were fetched from; definitely
 * failed values are never read. A fetched value gone from the final log is a lost write (Jepsen's
 * "must have committed": it was visible), one found at another offset an inconsistent offset.
 * Values reported elsewhere are left out here: committed ones missing (I1), failed ones read
 * (below), values nobody sent (I2), parts of a torn transaction (I14).
 */
function checkReads(world: World): Violation[] {
  const out: Violation[] = [];
  for (const read of world.reads) {
    if (read.kind !== "fetch") continue; // drains are the final log; replicas: I3 and I11
    const final = world.finals.get(read.part);
    if (!final || read.offset < final.view.logStart) continue; // retention may delete
    if (final.byOffset.has(read.offset)) continue; // same value, or I3 reports the other one
    const stat = world.values.get(read.value);
    const elsewhere = final.offsetsOf.get(read.value);
    if (!stat || definitelyFailed(stat)) continue;
    if (!elsewhere && (acked(stat) || stat.txn && isTorn(world, stat.txn))) continue;
    out.push({
      invariant: "I7",
      anomaly: elsewhere ? "inconsistent-offsets" : "lost-write",
      kind: elsewhere ? "read-then-moved" : "read-then-lost",
      message: `${read.value} was fetched at offset ${read.offset} of ${read.part} but the final ${
        elsewhere
          ? `log has it at ${elsewhere.join(", ")}`
          : `log has no record there (end ${final.view.end})`
      }`,
      ops: read.op ? [read.op.fields] : undefined,
    });
  }
  const reported = new Set<string>();
  for (const read of world.reads) {
    const stat = world.values.get(read.value);
    if (!stat || !definitelyFailed(stat) || read.kind === "replica") continue;
    if (reported.has(read.value)) continue;
    reported.add(read.value);
    const how = stat.txn
      ? `in transaction ${stat.txn.fields.txn}, which did not commit (${
        stat.txn.fields.error ?? "rolled back"
      })`
      : `refused (${stat.ops[0].fields.error ?? "fail"})`;
    out.push({
      invariant: "I7",
      anomaly: "aborted-read",
      kind: "failed-value-read",
      message:
        `${read.value} was ${how} yet read at offset ${read.offset} of ${read.part} (${read.source})`,
      ops: stat.ops.map((op) => op.fields),
    });
  }
  return out;
}

/**
 * I8, Jepsen's poll-skip and nonmonotonic-poll: within one consumer session (one partition,
 * between reassignments), each record received is the next one in the version order after the
 * record received before it, whether in the same fetch or the next. Three ways to see it:
 *
 * - a fetch that asks from another offset than where the previous one ended (the consumer moved
 *   itself: skip forward, or rewind);
 * - a 301 ("moved") that sends the consumer forward over records the final log still holds
 *   (below the log start is fine: retention deleted them), or back below where it was;
 * - two records received in a row whose indexes in the final log are not consecutive.
 *
 * After a discrepancy the session goes on from where it landed, so one fault is one violation.
 */
function checkSessions(world: World, ops: readonly Operation[]): Violation[] {
  const sessions = new Map<string, Operation[]>();
  for (const op of ops) {
    if (op.op !== "fetch" || op.outcome !== "ok" || op.fields.session === undefined) continue;
    const key = `${op.client}/${op.fields.session}/${
      partitionKey(op.fields.topic, op.fields.partition)
    }`;
    const list = sessions.get(key) ?? [];
    list.push(op);
    sessions.set(key, list);
  }
  const out: Violation[] = [];
  for (const [key, list] of sessions) {
    list.sort((a, b) => a.start - b.start);
    const final = world.finals.get(partitionKey(list[0].fields.topic, list[0].fields.partition));
    let last: { index: number; value: string; op: Operation } | undefined;
    let expected: number | undefined;
    for (const op of list) {
      const asked = op.fields.offset;
      if (expected !== undefined && asked !== undefined && asked !== expected) {
        out.push(sessionViolation(asked > expected, {
          kind: asked > expected ? "skip" : "rewind",
          message: `Session ${key} fetched from ${asked} after a fetch that ended at ${expected}`,
          ops: [list[list.indexOf(op) - 1].fields, op.fields],
        }));
        last = undefined;
      }
      for (const [offset, value] of op.fields.records ?? []) {
        const index = final ? indexOf(final, offset, value) : undefined;
        if (index === undefined) {
          last = undefined; // not in the final log: I3 or I7 say why
          continue;
        }
        if (last && index !== last.index + 1) {
          const skipped = index > last.index + 1
            ? final!.view.records.slice(last.index + 1, index).map((record) => record.value)
            : [];
          out.push(sessionViolation(index > last.index, {
            kind: index > last.index ? "skip" : "rewind",
            message:
              `Session ${key} received ${value} (index ${index}) right after ${last.value} (index ${last.index})${
                skipped.length > 0 ? `, skipping ${describeList(skipped)}` : ""
              }`,
            ops: last.op === op ? [op.fields] : [last.op.fields, op.fields],
          }));
        }
        last = { index, value, op };
      }
      if (op.fields.moved !== undefined && asked !== undefined && final) {
        out.push(...checkMoved(key, op, final));
        last = undefined;
      }
      expected = op.fields.moved ?? op.fields.next;
    }
  }
  return out;
}

/** A 301 may skip only records the final log no longer holds, and never sends a consumer back. */
function checkMoved(key: string, op: Operation, final: FinalLog): Violation[] {
  const asked = op.fields.offset!;
  const moved = op.fields.moved!;
  if (moved > asked) {
    const skipped = final.view.records.filter((record) =>
      record.offset >= asked && record.offset < moved
    );
    if (skipped.length === 0) return [];
    return [sessionViolation(true, {
      kind: "moved-over-records",
      message: `Session ${key} asked for ${asked} and was moved to ${moved}, over ${
        describeList(skipped.map((record) => record.value))
      } that the final log holds`,
      ops: [op.fields],
    })];
  }
  const behind = final.view.records.some((record) => record.offset < asked);
  if (moved === asked || !behind || asked > final.view.end) return [];
  return [sessionViolation(false, {
    kind: "moved-back",
    message: `Session ${key} asked for ${asked} and was moved back to ${moved}`,
    ops: [op.fields],
  })];
}

function sessionViolation(
  forward: boolean,
  parts: { kind: string; message: string; ops: HistoryOp[] },
): Violation {
  return {
    invariant: "I8",
    anomaly: forward ? "poll-skip" : "nonmonotonic-poll",
    ...parts,
  };
}

/** A received record's index in the version order: by its offset, else by its value. */
function indexOf(final: FinalLog, offset: number, value: string): number | undefined {
  if (final.byOffset.get(offset)?.value === value) return final.indexAt.get(offset);
  const offsets = final.offsetsOf.get(value);
  return offsets ? final.indexAt.get(offsets[0]) : undefined;
}

function describeList(values: readonly string[]): string {
  const shown = values.slice(0, 5).join(", ");
  return values.length > 5 ? `${shown} and ${values.length - 5} more` : shown;
}

/** I9: observed committed offsets never decrease (in real-time order) nor exceed what was read. */
function checkCommittedOffsets(world: World, ops: readonly Operation[]): Violation[] {
  const byKey = new Map<string, Operation[]>();
  for (const op of ops) {
    const isObservation = op.op === "offset-read" || op.op === "commit" || op.op === "reset";
    if (!isObservation || op.outcome !== "ok" || op.fields.offset === undefined) continue;
    const key = `${op.fields.group}/${partitionKey(op.fields.topic, op.fields.partition)}`;
    const list = byKey.get(key) ?? [];
    list.push(op);
    byKey.set(key, list);
  }
  const out: Violation[] = [];
  for (const [key, list] of byKey) {
    const part = key.slice(key.indexOf("/") + 1);
    out.push(...regressions(key, list), ...aboveHighWater(key, list, world, part));
  }
  return out;
}

function regressions(key: string, list: readonly Operation[]): Violation[] {
  const byEnd = [...list].sort((a, b) => a.end - b.end);
  const reads = list.filter((op) => op.op === "offset-read").sort((a, b) => a.start - b.start);
  const out: Violation[] = [];
  let floor: Operation | undefined;
  let next = 0;
  for (const read of reads) {
    while (next < byEnd.length && byEnd[next].end < read.start) {
      const done = byEnd[next++];
      if (done.op === "reset" || !floor || done.fields.offset! > floor.fields.offset!) floor = done;
    }
    if (floor && read.fields.offset! < floor.fields.offset!) {
      out.push({
        invariant: "I9",
        kind: "offset-regression",
        message:
          `${key}: committed offset read as ${read.fields.offset} after ${floor.op} saw ${floor.fields.offset}`,
        ops: [floor.fields, read.fields],
      });
    }
  }
  return out;
}

function aboveHighWater(
  key: string,
  list: readonly Operation[],
  world: World,
  part: string,
): Violation[] {
  const out: Violation[] = [];
  const final = world.finals.get(part);
  const fetches = world.fetches
    .filter((op) => partitionKey(op.fields.topic, op.fields.partition) === part)
    .filter((op) => op.fields.next !== undefined || op.fields.moved !== undefined)
    .sort((a, b) => a.end - b.end);
  // Highest offset any fetch had reached by each fetch's completion (a running maximum).
  const reached: number[] = [];
  for (const fetch of fetches) {
    const at = Math.max(fetch.fields.next ?? 0, fetch.fields.moved ?? 0);
    reached.push(Math.max(at, reached[reached.length - 1] ?? 0));
  }
  for (const op of list) {
    if (op.op === "reset") continue;
    const offset = op.fields.offset!;
    const done = countAtOrBefore(fetches, op.end);
    const readable = fetches.length === 0 ? undefined : done === 0 ? 0 : reached[done - 1];
    const beyondFinal = final !== undefined && offset > final.view.end;
    const beyondFetched = readable !== undefined && offset > readable;
    if (!beyondFinal && !beyondFetched) continue;
    out.push({
      invariant: "I9",
      kind: "offset-above-high-water",
      message: `${key}: committed offset ${offset} (${op.op}) is beyond ${
        beyondFinal
          ? `the final log end ${final!.view.end}`
          : `anything fetched by then (${readable})`
      }`,
      ops: [op.fields],
    });
  }
  return out;
}

/** I10 from node traces: one leader per (group, term); one batch per (group, term, offset). */
export function checkTraces(traces: readonly TraceEvent[]): Violation[] {
  const leaders = new Map<string, Set<number>>();
  const batches = new Map<string, Map<string, number[]>>();
  for (const event of traces) {
    if (event.event === "role" && event.role === "leader") {
      const key = `${event.group} term ${event.term}`;
      leaders.set(key, (leaders.get(key) ?? new Set()).add(event.node));
    }
    if (event.event === "append") {
      const key = `${event.group} term ${event.term} offset ${event.from}`;
      const byContent = batches.get(key) ?? new Map<string, number[]>();
      const content = `[${event.from}, ${event.to}) crc ${event.crc}`;
      const nodes = byContent.get(content) ?? [];
      if (!nodes.includes(event.node)) nodes.push(event.node);
      byContent.set(content, nodes);
      batches.set(key, byContent);
    }
  }
  const out: Violation[] = [];
  for (const [key, nodes] of leaders) {
    if (nodes.size < 2) continue;
    out.push({
      invariant: "I10",
      kind: "two-leaders",
      message: `${key} had ${nodes.size} leaders: nodes ${[...nodes].join(", ")}`,
    });
  }
  for (const [key, byContent] of batches) {
    if (byContent.size < 2) continue;
    const described = [...byContent].map(([content, nodes]) => `${content} on ${nodes.join(",")}`);
    out.push({
      invariant: "I10",
      kind: "divergent-batch",
      message: `${key} holds different batches: ${described.join(" vs ")}`,
    });
  }
  return out;
}

/** I11: every replica holds exactly the final log from the common log start to its end. */
function checkConvergence(world: World, replicas: readonly LogView[]): Violation[] {
  const out: Violation[] = [];
  for (const replica of replicas) {
    const part = partitionKey(replica.topic, replica.partition);
    const final = world.finals.get(part);
    if (!final) continue;
    const problem = replica.damage !== undefined
      ? `stops at damage: ${replica.damage}`
      : firstDifference(replica, final.view);
    if (problem === undefined) continue;
    out.push({
      invariant: "I11",
      kind: "divergent-replica",
      message: `Node ${replica.node}'s copy of ${part} differs from the final log: ${problem}`,
    });
  }
  return out;
}

function firstDifference(replica: LogView, final: LogView): string | undefined {
  const start = Math.max(replica.logStart, final.logStart);
  const mine = replica.records.filter((record) => record.offset >= start);
  const theirs = final.records.filter((record) => record.offset >= start);
  const count = Math.min(mine.length, theirs.length);
  for (let index = 0; index < count; index++) {
    const [a, b] = [mine[index], theirs[index]];
    const same = a.offset === b.offset && a.size === b.size && a.checksum === b.checksum &&
      a.id === b.id;
    if (!same) {
      return `record ${index} from ${start}: ${a.value}@${a.offset} (${a.size} B, crc ${a.checksum}) vs ${b.value}@${b.offset} (${b.size} B, crc ${b.checksum})`;
    }
  }
  if (replica.end !== final.end) return `ends at ${replica.end}, final log ends at ${final.end}`;
  return undefined;
}

/** I12: recovery bounds measured by the harness, and repair periods from traces. */
function checkRecovery(input: CheckInput): Violation[] {
  const out: Violation[] = [];
  for (const recovery of input.measurements.recovery) {
    if (recovery.okAfterMs !== null && recovery.okAfterMs <= recovery.boundMs) continue;
    out.push({
      invariant: "I12",
      kind: "no-recovery",
      message: recovery.okAfterMs === null
        ? `${recovery.group} accepted no produce after the heal (bound ${recovery.boundMs} ms)`
        : `${recovery.group} took ${recovery.okAfterMs} ms to accept a produce (bound ${recovery.boundMs} ms)`,
    });
  }
  for (const period of repairPeriods(input.traces, input.measurements.endT)) {
    if (period.ms <= input.measurements.repairBoundMs) continue;
    out.push({
      invariant: "I12",
      kind: period.open ? "stuck-in-repair" : "long-repair",
      message: `Node ${period.node} spent ${period.ms} ms in repair mode for ${period.group}${
        period.open ? " and never left it" : ""
      } (bound ${input.measurements.repairBoundMs} ms)`,
    });
  }
  return out;
}

/** Repair-mode periods per (node, group) from trace events; open ones end at `endT`. */
export function repairPeriods(
  traces: readonly TraceEvent[],
  endT: number,
): { node: number; group: string; ms: number; open: boolean }[] {
  const entered = new Map<string, number>();
  const out: { node: number; group: string; ms: number; open: boolean }[] = [];
  for (const event of traces) {
    if (event.event !== "repair") continue;
    const key = `${event.node}/${event.group}`;
    if (event.enter) {
      if (!entered.has(key)) entered.set(key, event.t);
    } else if (entered.has(key)) {
      out.push({
        node: event.node,
        group: event.group,
        ms: event.t - entered.get(key)!,
        open: false,
      });
      entered.delete(key);
    }
  }
  for (const [key, t] of entered) {
    const [node, group] = [Number(key.slice(0, key.indexOf("/"))), key.slice(key.indexOf("/") + 1)];
    out.push({ node, group, ms: Math.max(0, endT - t), open: true });
  }
  return out;
}

/** I13: process exits the harness did not cause, failed assertions, memory above the cap. */
function checkProcesses(input: CheckInput): Violation[] {
  const m = input.measurements;
  const out: Violation[] = [];
  for (const exit of m.exits) {
    if (exit.expected) continue;
    out.push({
      invariant: "I13",
      kind: "unexpected-exit",
      message: `Node ${exit.node} exited on its own (code ${exit.code}, signal ${exit.signal})`,
    });
  }
  for (const { node, line } of m.assertionLines) {
    out.push({ invariant: "I13", kind: "assertion", message: `Node ${node} logged: ${line}` });
  }
  for (const { node, maxBytes } of m.rss) {
    if (maxBytes <= m.rssCapBytes) continue;
    out.push({
      invariant: "I13",
      kind: "rss",
      message: `Node ${node} reached ${maxBytes} bytes of RSS (cap ${m.rssCapBytes})`,
    });
  }
  return out;
}

/**
 * I14, torn-transaction: a transaction's values are all in the final logs or none is, and in
 * each partition they form one run of records (metaq appends a partition's share of a commit
 * in one piece). Rolled-back transactions are judged by I7 (aborted-read) instead.
 */
function checkTransactions(world: World): Violation[] {
  const out: Violation[] = [];
  for (const { op, writes } of world.txns) {
    if (op.outcome === "fail" || writes.length === 0) continue;
    const present = presentCount(world, writes);
    if (present > 0 && present < writes.length) {
      const missing = writes.filter((write) =>
        !world.finals.get(write.part)?.offsetsOf.has(write.value)
      );
      out.push({
        invariant: "I14",
        anomaly: "torn-transaction",
        kind: "partial",
        message: `Transaction ${op.fields.txn} (${op.outcome}${
          op.fields.decided ? ", decided" : ""
        }) is in the final log in part: ${present} of ${writes.length} values, missing ${
          describeList(missing.map((write) => `${write.value} (${write.part})`))
        }`,
        ops: [op.invoke, ...(op.completion ? [op.completion] : [])],
      });
      continue;
    }
    for (const [part, values] of groupByPart(writes)) {
      const final = world.finals.get(part);
      if (!final || present === 0) continue;
      const indexes = values.map((value) => indexOf(final, final.offsetsOf.get(value)![0], value)!);
      const span = Math.max(...indexes) - Math.min(...indexes) + 1;
      if (span === values.length) continue;
      const inside = final.view.records.slice(Math.min(...indexes), Math.max(...indexes) + 1)
        .map((record) => record.value).filter((value) => !values.includes(value));
      out.push({
        invariant: "I14",
        anomaly: "torn-transaction",
        kind: "interleaved",
        message: `Transaction ${op.fields.txn}'s ${values.length} values in ${part} are split by ${
          describeList(inside)
        }`,
        ops: [op.invoke, ...(op.completion ? [op.completion] : [])],
      });
    }
  }
  return out;
}

function isTorn(world: World, txn: Operation): boolean {
  const writes = txnWrites(world, txn);
  const present = presentCount(world, writes);
  return present > 0 && present < writes.length;
}

function groupByPart(writes: readonly { part: string; value: string }[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const write of writes) out.set(write.part, [...(out.get(write.part) ?? []), write.value]);
  return out;
}

/**
 * I15, G1c: circular information flow between two transactions. T2 read a value of T1 before
 * its COMMIT (a write-read dependency T1 → T2), yet a record of T2 precedes a record of T1 in a
 * partition's final log (a write-write dependency T2 → T1), in a partition where metaq promises
 * the opposite order: the partition T2 read T1's value from (T1's records there were readable
 * before T2 committed), or any partition when T1's commit was acknowledged before T2 began (all
 * of T1 was readable by then). A plain put is a transaction of one write.
 *
 * Jepsen's checker hands the whole ww/wr graph to Elle and reports every cycle. Longer cycles,
 * or this one in another partition while T1's commit was in flight, are not anomalies in metaq:
 * a commit becomes visible one partition at a time (per-partition atomicity, as Kafka's), so a
 * transaction whose commit spans others can precede them in one partition and follow them in
 * another. Cycles of write-write edges alone (Adya's G0) are allowed for the same reason.
 */
function checkCycles(world: World, ops: readonly Operation[]): Violation[] {
  const out: Violation[] = [];
  const writerOf = (value: string): Operation | undefined => {
    const stat = world.values.get(value);
    return stat && (stat.txn ?? stat.ops.find(committed) ?? stat.ops[0]);
  };
  for (const reader of ops) {
    if (reader.op !== "txn" || !reader.fields.reads?.length) continue;
    const mine = placed(world, txnWrites(world, reader));
    if (mine.size === 0) continue;
    const seen = new Set<Operation>();
    for (const [partition, , value] of reader.fields.reads) {
      const writer = writerOf(value);
      if (!writer || writer === reader || seen.has(writer)) continue;
      const readPart = partitionKey(reader.fields.topic, partition);
      const acknowledged = writer.outcome === "ok" && writer.end < reader.start;
      const theirs = placed(
        world,
        writer.op === "txn" ? txnWrites(world, writer) : [{
          part: partitionKey(writer.fields.topic, writer.fields.partition),
          value: writer.fields.value!,
        }],
      );
      for (const [part, [myFirst]] of mine) {
        const their = theirs.get(part);
        if (!their || myFirst > their[1] || (part !== readPart && !acknowledged)) continue;
        seen.add(writer);
        out.push({
          invariant: "I15",
          anomaly: "G1c",
          kind: "cycle",
          message: `${describeWriter(writer)} -wr-> ${
            describeWriter(reader)
          } (read ${value} from ${readPart}${
            acknowledged ? ", after its commit was acknowledged" : ""
          }) -ww-> ${describeWriter(writer)} (in ${part} ${
            describeWriter(reader)
          }'s record at index ${myFirst} precedes one at index ${their[1]})`,
          ops: [writer.fields, reader.fields],
        });
        break;
      }
    }
  }
  return out;
}

/** Per partition, the first and last index of `writes` in its final log (present ones only). */
function placed(
  world: World,
  writes: readonly { part: string; value: string }[],
): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  for (const write of writes) {
    const final = world.finals.get(write.part);
    const offset = final?.offsetsOf.get(write.value)?.[0];
    if (offset === undefined) continue;
    const index = final!.indexAt.get(offset)!;
    const known = out.get(write.part);
    out.set(
      write.part,
      known ? [Math.min(known[0], index), Math.max(known[1], index)] : [index, index],
    );
  }
  return out;
}

const describeWriter = (op: Operation) =>
  op.op === "txn" ? `transaction ${op.fields.txn}` : `put ${op.fields.value}`;

// ---------------------------------------------------------------------------------------------
// Figures

function computeFigures(
  world: World,
  input: CheckInput,
  ops: readonly Operation[],
  found: readonly Violation[],
): Figures {
  const produces = ops.filter((op) => op.op === "produce");
  const kinds = (kind: string) => found.filter((violation) => violation.kind === kind).length;
  const recovered = produces.filter((op) => {
    const final = world.finals.get(partitionKey(op.fields.topic, op.fields.partition));
    return op.outcome === "info" && final?.offsetsOf.has(op.fields.value ?? "") === true;
  }).length;
  let duplicates = 0;
  for (const final of world.finals.values()) {
    for (const offsets of final.offsetsOf.values()) duplicates += offsets.length - 1;
  }
  const okProduces = produces.filter((op) => op.outcome === "ok");
  const windowStart = minOf(produces.map((op) => op.start), 0);
  const windowEnd = maxOf(okProduces.map((op) => op.end), windowStart);
  const deliveries = world.fetches.flatMap((op) =>
    (op.fields.records ?? []).map(([, value]) => value)
  );
  const unique = new Set(deliveries).size;
  const lostPrefix = kinds("lost-prefix");
  const lostMiddle = kinds("lost-middle");
  const lostPostfix = kinds("lost-postfix");
  return {
    attempts: produces.length,
    acked: okProduces.length,
    failed: produces.filter((op) => op.outcome === "fail").length,
    indeterminate: produces.filter((op) => op.outcome === "info").length,
    recovered,
    lost: {
      total: lostPrefix + lostMiddle + lostPostfix,
      prefix: lostPrefix,
      middle: lostMiddle,
      postfix: lostPostfix,
    },
    notDelivered: kinds("not-delivered"),
    unexpected: kinds("phantom"),
    duplicates,
    inconsistentOffsets: kinds("inconsistent-offset"),
    wrongAckOffsets: kinds("wrong-ack-offset"),
    ackConflicts: okProduces.filter((op) => {
      const final = world.finals.get(partitionKey(op.fields.topic, op.fields.partition));
      const there = op.fields.offset === undefined
        ? undefined
        : final?.byOffset.get(op.fields.offset);
      return there !== undefined && there.value !== op.fields.value;
    }).length,
    reorderings: kinds("reordered"),
    readsThenLost: kinds("read-then-lost"),
    failedValuesRead: kinds("failed-value-read"),
    fetchSkips: kinds("skip") + kinds("rewind"),
    offsetRegressions: kinds("offset-regression"),
    throughputPerSecond: produces.length === 0 || windowEnd <= windowStart
      ? 0
      : Math.round((okProduces.length * 1000) / (windowEnd - windowStart)),
    unavailabilityMs: unavailability(okProduces, windowStart, windowEnd),
    failoverMs: failover(okProduces, input),
    ...electionFigures(input.traces),
    latencyMs: latency(okProduces, input),
    convergenceMs: input.measurements.convergenceMs ?? null,
    repairMs: Object.fromEntries(
      repairPeriods(input.traces, input.measurements.endT).map((
        period,
      ) => [`node ${period.node} ${period.group}`, period.ms]),
    ),
    deliveries: deliveries.length,
    uniqueDeliveries: unique,
    redeliveryRatio: unique === 0 ? null : Math.round((deliveries.length / unique) * 1000) / 1000,
    transactions: {
      attempts: world.txns.length,
      committed: world.txns.filter(({ op }) => op.outcome === "ok").length,
      decided: world.txns.filter(({ op }) => op.outcome === "info" && op.fields.decided).length,
      failed: world.txns.filter(({ op }) => op.outcome === "fail").length,
      indeterminate: world.txns.filter(({ op }) => op.outcome === "info" && !op.fields.decided)
        .length,
    },
  };
}

/** Longest stretch without an acknowledged produce, per partition, over the workload window. */
function unavailability(
  okProduces: readonly Operation[],
  windowStart: number,
  windowEnd: number,
): Figures["unavailabilityMs"] {
  const byPartition: Record<string, number> = {};
  const times = new Map<string, number[]>();
  for (const op of okProduces) {
    const part = partitionKey(op.fields.topic, op.fields.partition);
    const list = times.get(part) ?? [];
    list.push(op.end);
    times.set(part, list);
  }
  for (const [part, list] of times) {
    list.sort((a, b) => a - b);
    let gap = 0;
    let previous = windowStart;
    for (const t of [...list, windowEnd]) {
      gap = Math.max(gap, t - previous);
      previous = t;
    }
    byPartition[part] = Math.round(gap);
  }
  return { max: maxOf(Object.values(byPartition), 0), byPartition };
}

/** Fault → first acknowledged produce invoked after it, on each partition group it aimed at. */
function failover(okProduces: readonly Operation[], input: CheckInput): Figures["failoverMs"] {
  const samples: number[] = [];
  let never = 0;
  for (const fault of input.faults) {
    for (const group of fault.groups ?? []) {
      if (group === "meta") continue;
      const first = okProduces
        .filter((op) => partitionKey(op.fields.topic, op.fields.partition) === group)
        .filter((op) => op.start >= fault.t)
        .reduce((best, op) => Math.min(best, op.end), Infinity);
      if (Number.isFinite(first)) samples.push(first - fault.t);
      else never += 1;
    }
  }
  return { ...percentiles(samples), never };
}

function electionFigures(
  traces: readonly TraceEvent[],
): Pick<Figures, "elections" | "termIncrements"> {
  const terms = new Map<string, Set<number>>();
  const range = new Map<string, { min: number; max: number }>();
  for (const event of traces) {
    if (event.event !== "role") continue;
    const known = range.get(event.group);
    range.set(event.group, {
      min: Math.min(known?.min ?? event.term, event.term),
      max: Math.max(known?.max ?? event.term, event.term),
    });
    if (event.role === "leader") {
      terms.set(event.group, (terms.get(event.group) ?? new Set()).add(event.term));
    }
  }
  return {
    elections: Object.fromEntries([...terms].map(([group, set]) => [group, set.size])),
    termIncrements: Object.fromEntries([...range].map(([group, r]) => [group, r.max - r.min])),
  };
}

/** Leader elections (distinct (group, term) with a leader) first traced after `t`. */
export function electionsAfter(traces: readonly TraceEvent[], t: number): string[] {
  const first = new Map<string, number>();
  for (const event of traces) {
    if (event.event !== "role" || event.role !== "leader") continue;
    const key = `${event.group} term ${event.term}`;
    first.set(key, Math.min(first.get(key) ?? Infinity, event.t));
  }
  return [...first].filter(([, at]) => at > t).map(([key]) => key);
}

function latency(okProduces: readonly Operation[], input: CheckInput): Figures["latencyMs"] {
  const windows = input.faults.map((fault) => [fault.t, fault.until ?? input.measurements.endT]);
  const quiet: number[] = [];
  const fault: number[] = [];
  for (const op of okProduces) {
    const inFault = windows.some(([from, to]) => op.start >= from && op.start <= to);
    (inFault ? fault : quiet).push(op.end - op.start);
  }
  return { quiet: percentiles(quiet), fault: percentiles(fault) };
}

export function percentiles(samples: readonly number[]): Percentiles {
  if (samples.length === 0) return { count: 0, p50: null, p99: null, max: null };
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
  return {
    count: sorted.length,
    p50: Math.round(rank(0.5)),
    p99: Math.round(rank(0.99)),
    max: Math.round(sorted[sorted.length - 1]),
  };
}

/** Smallest of `values` (no spread: histories hold more items than a call's argument limit). */
function minOf(values: readonly number[], empty: number): number {
  let out = Infinity;
  for (const value of values) if (value < out) out = value;
  return values.length === 0 ? empty : out;
}

function maxOf(values: readonly number[], empty: number): number {
  let out = -Infinity;
  for (const value of values) if (value > out) out = value;
  return values.length === 0 ? empty : Math.max(out, empty);
}

/** How many of `sorted` (by end) completed at or before `t` (binary search). */
function countAtOrBefore(sorted: readonly Operation[], t: number): number {
  let [low, high] = [0, sorted.length];
  while (low < high) {
    const middle = (low + high) >> 1;
    if (sorted[middle].end <= t) low = middle + 1;
    else high = middle;
  }
  return low;
}

/**
 * @module Builders for synthetic runs: client histories, logs, traces and measurements written by
 * hand, for the checker's self-test (T00) and unit tests. Record sizes are chosen by the caller so
 * offsets are easy to read; checksums and ids derive from the value, so two copies of one record
 * are identical wherever they are built.
 */
import { crc32 } from "../../lib/crc32.ts";
import type {
  CheckInput,
  FaultEvent,
  HistoryOp,
  LogRecord,
  LogView,
  Measurements,
  TraceBody,
  TraceEvent,
} from "./history.ts";

export const TOPIC = "chaos";
const encoder = new TextEncoder();

export type Outcome = "ok" | "fail" | "info";

/** A record of `size` bytes holding `value`. */
export function record(value: string, offset: number, size = 100): LogRecord {
  const checksum = crc32(encoder.encode(value)) & 0x7fffffff;
  return { offset, size, checksum, id: String(checksum + 1), value };
}

/** A log of records back to back from `start`; `[value, size]` pairs or plain values (100 B). */
export function logView(
  parts: {
    source?: "drain" | "replica";
    node?: number;
    partition: number;
    start?: number;
    values: readonly (string | readonly [string, number])[];
  },
): LogView {
  let offset = parts.start ?? 0;
  const records = parts.values.map((entry) => {
    const [value, size] = typeof entry === "string" ? [entry, 100] : entry;
    const out = record(value, offset, size);
    offset += size;
    return out;
  });
  return {
    source: parts.source ?? "drain",
    node: parts.node ?? 1,
    topic: TOPIC,
    partition: parts.partition,
    logStart: parts.start ?? 0,
    end: offset,
    records,
  };
}

/** The same log as seen in the files of `node`. */
export function replicaOf(view: LogView, node: number): LogView {
  return { ...view, source: "replica", node };
}

export class SyntheticRun {
  #t = 1_000_000;
  readonly history: HistoryOp[] = [];
  drains: LogView[] = [];
  replicas: LogView[] = [];
  traces: TraceEvent[] = [];
  faults: FaultEvent[] = [];
  measurements: Measurements = {
    recovery: [],
    exits: [],
    assertionLines: [],
    rss: [],
    rssCapBytes: 512 * 1024 * 1024,
    repairBoundMs: 15_000,
    endT: 0,
  };

  /** Advances the clock and returns the new time. */
  tick(ms = 10): number {
    this.#t += ms;
    return this.#t;
  }

  get now(): number {
    return this.#t;
  }

  /** One produce: invoke, then its completion 5 ms later. */
  produce(
    client: string,
    value: string,
    parts: { partition: number; outcome: Outcome; offset?: number; node?: number },
  ): this {
    const base = {
      client,
      op: "produce",
      topic: TOPIC,
      partition: parts.partition,
      value,
    } as const;
    this.history.push({ ...base, t: this.tick(), kind: "invoke", node: parts.node ?? 1 });
    const completion: HistoryOp = {
      ...base,
      t: this.tick(5),
      kind: parts.outcome,
      node: parts.node ?? 1,
      ...(parts.outcome === "ok" ? { offset: parts.offset } : {}),
      ...(parts.outcome === "fail" ? { error: "503 Cannot serve partition" } : {}),
      ...(parts.outcome === "info" ? { error: "timeout" } : {}),
    };
    this.history.push(completion);
    return this;
  }

  /** One successful fetch of `records` starting at `offset` (or a 301 to `moved`). */
  fetch(
    client: string,
    parts: {
      partition: number;
      offset: number;
      records: readonly (readonly [number, string])[];
      next?: number;
      moved?: number;
      group?: string;
      session?: string;
    },
  ): this {
    const base = {
      client,
      op: "fetch",
      topic: TOPIC,
      partition: parts.partition,
      group: parts.group ?? "g",
      session: parts.session ?? "s1",
      offset: parts.offset,
    } as const;
    this.history.push({ ...base, t: this.tick(), kind: "invoke", node: 1 });
    this.history.push({
      ...base,
      t: this.tick(5),
      kind: "ok",
      node: 1,
      records: parts.records,
      ...(parts.moved === undefined ? { next: parts.next } : { moved: parts.moved }),
    });
    return this;
  }

  /** Reads `view` whole as consumer `client` of `group`, one fetch per record, then the end. */
  readAll(client: string, view: LogView, parts: { group: string; session?: string }): this {
    const session = parts.session ?? `${client}/1`;
    for (const record of view.records) {
      this.fetch(client, {
        partition: view.partition,
        offset: record.offset,
        records: [[record.offset, record.value]],
        next: record.offset + record.size,
        group: parts.group,
        session,
      });
    }
    return this;
  }

  /**
   * One transaction: invoke with its writes (`[partition, value]`, in put order), completion 5
   * ms later with `outcome` and what it read before committing.
   */
  txn(
    client: string,
    parts: {
      id: string;
      kind?: "local" | "xa";
      writes: readonly (readonly [number, string])[];
      outcome: Outcome;
      reads?: readonly (readonly [number, number, string])[];
      decided?: boolean;
      node?: number;
    },
  ): this {
    const base = {
      client,
      op: "txn",
      topic: TOPIC,
      txn: parts.id,
      txKind: parts.kind ?? "local",
      node: parts.node ?? 1,
    } as const;
    this.history.push({ ...base, t: this.tick(), kind: "invoke", writes: parts.writes });
    this.history.push({
      ...base,
      t: this.tick(5),
      kind: parts.outcome,
      ...(parts.reads ? { reads: parts.reads } : {}),
      ...(parts.decided ? { decided: true } : {}),
      ...(parts.outcome === "fail" ? { error: "rolled back" } : {}),
      ...(parts.outcome === "info" ? { error: "timeout" } : {}),
    });
    return this;
  }

  /** A committed-offset observation (`offset-read`) or a commit, both successful. */
  groupOffset(
    client: string,
    parts: { op: "offset-read" | "commit"; partition: number; offset: number; group?: string },
  ): this {
    const base = {
      client,
      op: parts.op,
      topic: TOPIC,
      partition: parts.partition,
      group: parts.group ?? "g",
    } as const;
    this.history.push({ ...base, t: this.tick(), kind: "invoke", node: 1 });
    this.history.push({ ...base, t: this.tick(5), kind: "ok", node: 1, offset: parts.offset });
    return this;
  }

  trace(
    node: number,
    group: string,
    event: TraceBody,
  ): this {
    this.traces.push({ t: this.tick(1), node, group, ...event });
    return this;
  }

  input(): CheckInput {
    return {
      history: this.history,
      drains: this.drains,
      replicas: this.replicas,
      traces: this.traces,
      faults: this.faults,
      measurements: { ...this.measurements, endT: this.measurements.endT || this.tick(1) },
    };
  }
}

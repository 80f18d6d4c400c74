/**
 * @module The data the checker judges, and its JSON-lines formats: client operations (written by
 * the workloads), node traces (written by the broker under `METAQ_TEST_TRACE`), fault events
 * (written by the nemesis), logs read back at the end (drains and replica dumps) and the
 * harness's own measurements. Pure: no I/O here.
 *
 * Client history, one JSON object per line (`t` is wall-clock ms, as in node traces):
 *
 * ```text
 * {"t":..,"client":"p3","kind":"invoke","op":"produce","topic":"chaos","partition":1,"value":"p3-17","node":2}
 * {"t":..,"client":"p3","kind":"ok","op":"produce",...,"value":"p3-17","offset":4096,"node":2}
 * {"t":..,"client":"p3","kind":"fail","op":"produce",...,"error":"503 ..."}       nothing appended
 * {"t":..,"client":"p3","kind":"info","op":"produce",...,"error":"timeout"}       outcome unknown
 * {"t":..,"client":"c1","kind":"ok","op":"fetch","group":"g","session":"c1/3","offset":0,
 *  "records":[[0,"p1-0"],[120,"p1-1"]],"next":240}                                 (or "moved":N)
 * {"t":..,"client":"c1","kind":"ok","op":"commit","group":"g","partition":0,"offset":240}
 * {"t":..,"client":"probe","kind":"ok","op":"offset-read","group":"g","partition":0,"offset":240}
 * {"t":..,"client":"x1","kind":"invoke","op":"txn","txn":"x1.4","txKind":"xa","topic":"chaos",
 *  "node":3,"writes":[[2,"x1-9"],[5,"x1-10"]]}
 * {"t":..,"client":"x1","kind":"ok","op":"txn","txn":"x1.4",...,"reads":[[4,1200,"p7-33"]]}
 * ```
 *
 * A transaction (`txn`) is one operation: its invoke lists the values it will put, in put order,
 * as `[partition, value]`; its completion says whether it committed (`ok`), certainly did not
 * (`fail`: rolled back, refused, or COMMIT never sent) or may have (`info`), and lists the records
 * it fetched before committing (`reads`, `[partition, offset, value]`). `decided: true` on an
 * `info` completion means the broker answered that the commit is journalled and will be completed.
 *
 * Every client is sequential: a completion (`ok`, `fail`, `info`) belongs to that client's last
 * open `invoke`. An invoke with no completion counts as `info` (indeterminate).
 */

export type OpKind = "invoke" | "ok" | "fail" | "info";
export type OpName = "produce" | "fetch" | "commit" | "offset-read" | "reset" | "txn";

export interface HistoryOp {
  readonly t: number;
  readonly client: string;
  readonly kind: OpKind;
  readonly op: OpName;
  readonly topic?: string;
  readonly partition?: number;
  /** produce: the value sent. */
  readonly value?: string;
  /** produce ok: offset assigned; fetch: offset asked; commit/offset-read: the group offset. */
  readonly offset?: number;
  /** The node the client talked to. */
  readonly node?: number;
  readonly group?: string;
  /** fetch: one consumer assignment period (no seek or rebalance inside it). */
  readonly session?: string;
  /** fetch ok: [offset, value] of each complete record returned. */
  readonly records?: readonly (readonly [number, string])[];
  /** fetch ok: where the next fetch of this session should start. */
  readonly next?: number;
  /** fetch ok: the broker said "below log start, start here" (MetaQ's 301). */
  readonly moved?: number;
  readonly error?: string;
  /** txn: the transaction's id, unique in the run. */
  readonly txn?: string;
  readonly txKind?: "local" | "xa";
  /** txn invoke: the values it puts, `[partition, value]`, in put order (all to `topic`). */
  readonly writes?: readonly (readonly [number, string])[];
  /** txn completion: what it fetched before committing, `[partition, offset, value]`. */
  readonly reads?: readonly (readonly [number, number, string])[];
  /** txn info: the commit is journalled, so the broker will complete it. */
  readonly decided?: boolean;
}

/** What a node trace event says, without when, who and which group. */
export type TraceBody =
  | {
    readonly event: "role";
    readonly role: "leader" | "follower" | "candidate";
    readonly term: number;
  }
  | {
    readonly event: "append";
    readonly term: number;
    readonly from: number;
    readonly to: number;
    readonly crc: number;
  }
  | { readonly event: "truncate"; readonly to: number }
  | { readonly event: "commit"; readonly offset: number }
  | { readonly event: "repair"; readonly enter: boolean };

/**
 * Node trace events, as the broker writes them (see tests/chaos/README.md). An append's `term` is
 * the term of the entry's bytes; a `truncate` also marks each start-up's recovered log end.
 */
export type TraceEvent =
  & { readonly t: number; readonly node: number; readonly group: string }
  & TraceBody;

/** One fault the nemesis injected, with the window it lasted (`until` = healed). */
export interface FaultEvent {
  readonly id: number;
  readonly t: number;
  /** Set when healed; an instant fault (a kill) lasts until its node is back. */
  until?: number;
  /**
   * A fault that stops every node (a power cut of all): until when none ran, the first restart.
   * What a client saw acknowledged by then its node sent before it stopped.
   */
  allDownUntil?: number;
  readonly kind: string;
  readonly nodes?: readonly number[];
  /** Raft groups the fault was aimed at (`<topic>-<partition>` or `meta`), for failover times. */
  readonly groups?: readonly string[];
  readonly detail?: string;
}

/** One record as read back from a broker (drain) or from a stopped replica's files (dump). */
export interface LogRecord {
  readonly offset: number;
  /** Bytes of the whole record, header included. */
  readonly size: number;
  readonly checksum: number;
  /** Message id as a decimal string. */
  readonly id: string;
  /** The workload value the payload carries, or the raw text prefix when it is not one. */
  readonly value: string;
}

/** A partition's log as one observer saw it. */
export interface LogView {
  readonly source: "drain" | "replica";
  readonly node: number;
  readonly topic: string;
  readonly partition: number;
  readonly logStart: number;
  /** Offset just past the last complete record. */
  readonly end: number;
  readonly records: readonly LogRecord[];
  /** Set when reading stopped at bytes that fail their checksum or layout checks. */
  readonly damage?: string;
}

/** What the harness measured around the run (I12, I13). */
export interface Measurements {
  /** Per partition group: ms from the last heal until a produce was acknowledged (null: never). */
  readonly recovery: readonly {
    readonly group: string;
    readonly okAfterMs: number | null;
    readonly boundMs: number;
  }[];
  /** ms from heal until every replica reported the same log (null: never; undefined: not measured). */
  readonly convergenceMs?: number | null;
  readonly convergenceBoundMs?: number;
  readonly exits: readonly {
    readonly node: number;
    readonly t: number;
    readonly code: number | null;
    readonly signal: string | null;
    readonly expected: boolean;
  }[];
  readonly assertionLines: readonly { readonly node: number; readonly line: string }[];
  readonly rss: readonly { readonly node: number; readonly maxBytes: number }[];
  readonly rssCapBytes: number;
  /** Longest a replica may stay in repair mode; also the bound for one still in it at the end. */
  readonly repairBoundMs: number;
  /** Wall-clock ms at the end of the run (open repair periods end here). */
  readonly endT: number;
}

export interface CheckInput {
  readonly history: readonly HistoryOp[];
  /** Final committed logs, read through a node after heal; the first per partition is "final". */
  readonly drains: readonly LogView[];
  /** Every replica's segment files, read after stopping it. */
  readonly replicas: readonly LogView[];
  readonly traces: readonly TraceEvent[];
  readonly faults: readonly FaultEvent[];
  readonly measurements: Measurements;
}

export const partitionKey = (topic: string | undefined, partition: number | undefined): string =>
  `${topic ?? "?"}-${partition ?? "?"}`;

/** The producer part of a workload value `"<producer>-<seq>"`, and its seq. */
export function parseValue(value: string): { producer: string; seq: number } | undefined {
  const match = /^([A-Za-z][\w.]*)-(\d{1,15})$/.exec(value);
  return match ? { producer: match[1], seq: Number(match[2]) } : undefined;
}

/** Parses JSON lines, skipping blank lines and a torn last line (a writer killed mid-line). */
export function parseJsonLines<T>(text: string): T[] {
  const lines = text.split("\n");
  const out: T[] = [];
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index].trim();
    if (line === "") continue;
    try {
      out.push(JSON.parse(line) as T);
    } catch (error) {
      if (index === lines.length - 1) continue;
      throw new Error(`Cannot parse JSON line ${index + 1}: ${(error as Error).message}`);
    }
  }
  return out;
}

const TRACE_EVENTS = new Set(["role", "append", "truncate", "commit", "repair"]);
/**
 * Known events no invariant here needs: `quiet` (a group going to sleep or waking, quiescence),
 * `voteRequest` and `configuration` (what the driver simulator's S11 reads: a vote request with
 * the voters the copy's log named, a configuration that committed).
 */
const IGNORED_TRACE_EVENTS = new Set(["quiet", "voteRequest", "configuration"]);

/** Keeps well-formed trace events; returns the others as problems (a broken trace is a finding). */
export function parseTrace(text: string): { events: TraceEvent[]; problems: string[] } {
  const events: TraceEvent[] = [];
  const problems: string[] = [];
  for (const raw of traceLines(text)) {
    const ok = typeof raw.t === "number" && typeof raw.node === "number" &&
      typeof raw.group === "string" && TRACE_EVENTS.has(raw.event as string);
    if (ok) events.push(raw as unknown as TraceEvent);
    else if (IGNORED_TRACE_EVENTS.has(raw.event as string)) continue;
    else problems.push(`unknown trace line ${JSON.stringify(raw).slice(0, 200)}`);
  }
  return { events, problems };
}

/**
 * Trace lines as objects. A node SIGKILLed while writing one can leave its start without an end,
 * and its next incarnation's first line then follows on the same line: the torn start is dropped
 * and the whole event after it kept (seen in T19: `{"t":1796549961{"t":1796549964301,...}`); a
 * torn line alone is dropped.
 */
function traceLines(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const lines = text.split("\n");
  lines.forEach((line) => {
    if (line.trim() === "") return;
    try {
      out.push(JSON.parse(line));
    } catch {
      // Torn by a kill: what follows its start, if whole, is the next incarnation's first line.
      const restart = line.lastIndexOf('{"t":');
      if (restart <= 0) return;
      try {
        out.push(JSON.parse(line.slice(restart)));
      } catch {
        // torn too (the file's last line, still being written)
      }
    }
  });
  return out;
}

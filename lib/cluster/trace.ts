/**
 * @module Test-build trace of what each replica did, one JSON line per event, switched on by
 * `METAQ_TEST_TRACE=<file>`: role changes (a new leader with the voters its marker names),
 * appended entries (offset range, the entry's term, CRC of its bytes), truncations, commit
 * advances, repair mode, committed configurations, and the vote requests a copy handled with the
 * voters its own log named at that moment (so a checker can tell a removed node's vote). The fault harness's checker reads
 * these to hold the real binary to the simulator's rules (one leader per term, no two entries
 * with different bytes at one position). Without the variable, tracing costs one branch.
 */
import * as fs from "node:fs";

export type TraceEvent =
  | {
    readonly event: "role";
    readonly role: string;
    readonly term: number;
    /** A new leader's configuration: the voters its epoch marker names. */
    readonly voters?: readonly number[];
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
  | { readonly event: "repair"; readonly enter: boolean }
  | { readonly event: "quiet"; readonly quiet: boolean }
  /** The configuration written by the marker of `epoch` is committed. */
  | { readonly event: "configuration"; readonly epoch: number; readonly voters: readonly number[] }
  /**
   * A vote (or pre-vote) request from `from` for `term` reached this copy while its log named
   * `voters`: whatever it answers is decided on that configuration.
   */
  | {
    readonly event: "voteRequest";
    readonly from: number;
    readonly term: number;
    readonly pre: boolean;
    readonly voters: readonly number[];
  };

export interface Tracer {
  readonly enabled: boolean;
  record(group: string, event: TraceEvent): void;
}

export const NO_TRACE: Tracer = { enabled: false, record() {} };

/** A tracer appending to `path` with plain writes (SIGKILL keeps them: they are in the page cache). */
export function fileTracer(path: string, nodeId: number): Tracer {
  const fd = fs.openSync(path, "a");
  return {
    enabled: true,
    record(group, event) {
      fs.writeSync(fd, `${JSON.stringify({ t: Date.now(), node: nodeId, group, ...event })}\n`);
    },
  };
}

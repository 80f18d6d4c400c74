/**
 * @module Test-build trace of what each replica did, one JSON line per event, switched on by
 * `METAQ_TEST_TRACE=<file>`: role changes, appended entries (offset range, the entry's term, CRC
 * of its bytes), truncations, commit advances, repair mode. The fault harness's checker reads
 * these to hold the real binary to the simulator's rules (one leader per term, no two entries
 * with different bytes at one position). Without the variable, tracing costs one branch.
 */
import * as fs from "node:fs";

export type TraceEvent =
  | { readonly event: "role"; readonly role: string; readonly term: number }
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
  | { readonly event: "quiet"; readonly quiet: boolean };

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

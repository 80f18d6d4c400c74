/**
 * @module The loss bound of the relaxed modes (replication.md guarantees 4 and 5): in
 * `fsync=interval` and `ack=leader` runs acknowledged puts may be lost, but only those
 * acknowledged shortly before a fault that can lose them (a power cut of every node; a kill of
 * the leader before its followers copied the tail). Loss outside such a window is a bug.
 */
import type { FinishedRun } from "./scenario.ts";

export interface LostPut {
  readonly value: string;
  readonly partition: number;
  /** From its acknowledgement to the first later fault that can lose it; null: none. */
  readonly msToFault: number | null;
}

/**
 * Every acknowledged put of `topic` missing from the final log, with the time to the first fault
 * of a kind in `kinds` at or after its acknowledgement that concerns its partition (a fault with
 * no groups concerns all). A put whose acknowledgement reached its client while a fault had
 * every node stopped was sent before the stop, so in the instant of the fault (0 ms): the
 * fault's record is taken before its kills, and an acknowledgement still on the wire arrives
 * after it (T05b seed 3366206478: 8 puts acknowledged 1-2 ms after the record of the cut).
 */
export function lostPuts(run: FinishedRun, topic: string, kinds: readonly string[]): LostPut[] {
  const finals = new Map(
    run.input.drains.map((drain) => [drain.partition, new Set(drain.records.map((r) => r.value))]),
  );
  const faults = run.input.faults.filter((fault) => kinds.includes(fault.kind))
    .sort((a, b) => a.t - b.t);
  const out: LostPut[] = [];
  for (const op of run.input.history) {
    if (op.op !== "produce" || op.kind !== "ok" || op.topic !== topic) continue;
    if (op.value === undefined || op.partition === undefined) continue;
    const final = finals.get(op.partition);
    if (!final || final.has(op.value)) continue; // undrained: the checker reports that (I1)
    const group = `${topic}-${op.partition}`;
    const next = faults.find((fault) =>
      (fault.allDownUntil ?? fault.t) >= op.t &&
      (fault.groups === undefined || fault.groups.includes(group))
    );
    out.push({
      value: op.value,
      partition: op.partition,
      msToFault: next ? Math.max(0, next.t - op.t) : null,
    });
  }
  return out;
}

/** Findings for lost puts outside `windowMs` before a fault; figures for the report. */
export function lossBound(
  losses: readonly LostPut[],
  windowMs: number,
  topic: string,
): { findings: string[]; figures: Record<string, unknown> } {
  const outside = losses.filter((loss) => loss.msToFault === null || loss.msToFault > windowMs);
  const windows = losses.map((loss) => loss.msToFault ?? Infinity);
  return {
    findings: outside.slice(0, 10).map((loss) =>
      `${loss.value} (${topic}-${loss.partition}) was lost ${
        loss.msToFault === null ? "with no fault after it" : `${loss.msToFault} ms before a fault`
      }, outside the ${windowMs} ms bound`
    ),
    figures: {
      lostAcked: losses.length,
      maxMsFromAckToFault: windows.length === 0 ? null : Math.max(...windows),
      lossBoundMs: windowMs,
    },
  };
}

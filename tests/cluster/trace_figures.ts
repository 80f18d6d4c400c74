/**
 * @module Scenario figures read from node traces: elections inside a time window, and the
 * stale-leader window after a paused or isolated leader comes back (time from the successor's
 * election to the old leader's step-down). Pure.
 */
import type { FaultEvent, TraceEvent } from "./history.ts";

/** `<group> term <T>` for each leadership first traced in (from, to], optionally for some groups. */
export function electionsBetween(
  traces: readonly TraceEvent[],
  from: number,
  to: number,
  groups?: readonly string[],
): string[] {
  const first = new Map<string, number>();
  for (const event of traces) {
    if (event.event !== "role" || event.role !== "leader") continue;
    if (groups && !groups.includes(event.group)) continue;
    const key = `${event.group} term ${event.term}`;
    first.set(key, Math.min(first.get(key) ?? Infinity, event.t));
  }
  return [...first].filter(([, t]) => t > from && t <= to).map(([key]) => key).sort();
}

/**
 * For a fault that stopped `leader` of `group` during [fault.t, fault.until]: ms from the first
 * election of another node after fault.t to the old leader's first non-leader role event after
 * it. Undefined when no successor was elected; null when the old leader never stepped down.
 */
export function staleLeaderWindowMs(
  traces: readonly TraceEvent[],
  parts: { fault: FaultEvent; leader: number; group: string },
): number | null | undefined {
  const { fault, leader, group } = parts;
  const successor = traces.find((event) =>
    event.event === "role" && event.role === "leader" && event.group === group &&
    event.node !== leader && event.t >= fault.t
  );
  if (!successor) return undefined;
  const stepDown = traces.find((event) =>
    event.event === "role" && event.role !== "leader" && event.group === group &&
    event.node === leader && event.t >= fault.t
  );
  return stepDown ? Math.max(0, stepDown.t - successor.t) : null;
}

/**
 * @module The figures a partition's leader shares with every node (NodeInfo.figures, sent about
 * once a second), so the overview, the dashboard and `/metrics` show the same cluster-wide
 * numbers on any node: a partition's sizes and rates are those on its leader. The figures are
 * cumulative counters and the leader's own monotonic time; every node derives rates from two
 * successive values (rates.ts), so a lost or late message only widens the interval.
 *
 * ```text
 * index  figure        meaning (on the leader)
 * 0      timeMs        monotonic milliseconds when the figures were taken
 * 1      startOffset   first offset still stored
 * 2      endOffset     readable end (committed)
 * 3      messages      records appended (approximate across restarts)
 * 4      bytes         bytes stored
 * 5      segments      segment files
 * 6      servedBytes   message bytes served to consumers by the leader
 * ```
 *
 * A node that gets a shorter array (an older version) ignores it; extra values are for later.
 */
import type { Broker } from "../broker/broker.ts";
import type { Clock } from "../clock.ts";
import { isInternalTopic, type Log } from "../store/log.ts";

export const FIGURES_COUNT = 7;

export interface PartitionFigures {
  readonly timeMs: number;
  readonly startOffset: number;
  readonly endOffset: number;
  readonly messages: number;
  readonly bytes: number;
  readonly segments: number;
  readonly servedBytes: number;
}

/** The figures of a log on this node, now. */
export function figuresOfLog(broker: Broker, clock: Clock, log: Log): PartitionFigures {
  const facts = log.facts();
  return {
    timeMs: clock.monotonicMs(),
    startOffset: log.startOffset,
    endOffset: log.endOffset,
    messages: facts.messages,
    bytes: facts.bytes,
    segments: facts.segments,
    servedBytes: broker.stats.servedBytes.get(log.name) ?? 0,
  };
}

export function encodeFigures(figures: PartitionFigures): number[] {
  return [
    figures.timeMs,
    figures.startOffset,
    figures.endOffset,
    figures.messages,
    figures.bytes,
    figures.segments,
    figures.servedBytes,
  ];
}

/** Figures another node sent, or undefined when they are not figures this version reads. */
export function decodeFigures(
  values: readonly unknown[] | undefined,
): PartitionFigures | undefined {
  if (!values || values.length < FIGURES_COUNT) return undefined;
  for (let index = 0; index < FIGURES_COUNT; index++) {
    const value = values[index];
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0) return undefined;
  }
  const [timeMs, startOffset, endOffset, messages, bytes, segments, servedBytes] =
    values as number[];
  return { timeMs, startOffset, endOffset, messages, bytes, segments, servedBytes };
}

/**
 * For ClusterNode's `figuresOf` callback: the figures of a group (`<topic>-<partition>`) this
 * node leads, or undefined for the broker's own logs and for groups whose log is not open here.
 */
export function groupFigures(broker: Broker, clock: Clock, group: string): number[] | undefined {
  const dash = group.lastIndexOf("-");
  const topic = group.slice(0, dash);
  const partition = Number(group.slice(dash + 1));
  if (dash <= 0 || isInternalTopic(topic) || !Number.isInteger(partition)) return undefined;
  const log = broker.logs.get(topic, partition);
  return log ? encodeFigures(figuresOfLog(broker, clock, log)) : undefined;
}

/**
 * @module Broker statistics as MetaQ's StatsManager keeps them: cumulative counters since start
 * and "realtime" counters (count and value per key1/key2/key3) that reset every 30 minutes or on
 * `stats reset`, collected only for topics with `stat=true`. Formatting follows MetaQ's text.
 */
import type { Clock } from "../clock.ts";

export const REALTIME_RESET_MS = 30 * 60 * 1000;

/** The realtime stat keys, named as MetaQ's StatConstants. */
export type RealtimeKey =
  | "cmd_put"
  | "cmd_get"
  | "cmd_offset"
  | "get_miss"
  | "put_failed"
  | "message_size";

export interface Counters {
  cmdPut: number;
  cmdGet: number;
  cmdOffset: number;
  txBegin: number;
  txXaBegin: number;
  txCommit: number;
  txRollback: number;
  getMiss: number;
  putFailed: number;
  /** metaq: bytes of message data accepted and served. */
  putBytes: number;
  getBytes: number;
  /** metaq: refused `auth` attempts and requests made before authenticating (TCP and HTTP). */
  authFailures: number;
  /** metaq: requests refused because the user lacks the permission (403). */
  authDenied: number;
  /** metaq: connections refused by maxConnections or maxConnectionsPerIp. */
  connectionsRefused: number;
  /** metaq: connections closed by idleTimeoutMs or frameTimeoutMs. */
  connectionsTimedOut: number;
}

interface Cell {
  count: number;
  value: number;
}

export class BrokerStats {
  readonly counters: Counters = {
    cmdPut: 0,
    cmdGet: 0,
    cmdOffset: 0,
    txBegin: 0,
    txXaBegin: 0,
    txCommit: 0,
    txRollback: 0,
    getMiss: 0,
    putFailed: 0,
    putBytes: 0,
    getBytes: 0,
    authFailures: 0,
    authDenied: 0,
    connectionsRefused: 0,
    connectionsTimedOut: 0,
  };
  /** metaq: bytes served per partition (`topic-partition`), for consume rates and metrics. */
  readonly servedBytes = new Map<string, number>();
  readonly startedMs: number;
  readonly #clock: Clock;
  #realtime = new Map<RealtimeKey, Map<string, Map<string, Cell>>>();
  #lastResetMs: number;

  constructor(clock: Clock) {
    this.#clock = clock;
    this.startedMs = clock.wallMs();
    this.#lastResetMs = clock.wallMs();
  }

  /** Adds one realtime observation (count 1, `value`) under key1/key2/key3. */
  record(key: RealtimeKey, topic: string, detail: string, value = 0): void {
    this.#resetIfDue();
    let byTopic = this.#realtime.get(key);
    if (!byTopic) this.#realtime.set(key, byTopic = new Map());
    let byDetail = byTopic.get(topic);
    if (!byDetail) byTopic.set(topic, byDetail = new Map());
    const cell = byDetail.get(detail);
    if (cell) {
      cell.count += 1;
      cell.value += value;
    } else {
      byDetail.set(detail, { count: 1, value });
    }
  }

  /** Counts `bytes` of message data served from one partition (by get, HTTP or a stream). */
  served(topic: string, partition: number, bytes: number): void {
    this.counters.getBytes += bytes;
    const key = `${topic}-${partition}`;
    this.servedBytes.set(key, (this.servedBytes.get(key) ?? 0) + bytes);
  }

  reset(): void {
    this.#realtime.clear();
    this.#lastResetMs = this.#clock.wallMs();
  }

  /** MetaQ's grouped realtime value: `null`, `Invalid keyTwo:<topic>`, or the Count=... text. */
  realtime(key: RealtimeKey, topic?: string): string {
    this.#resetIfDue();
    const byTopic = this.#realtime.get(key);
    if (!byTopic) return "null";
    let count = 0;
    let value = 0;
    const add = (cells: Map<string, Cell>) => {
      for (const cell of cells.values()) {
        count += cell.count;
        value += cell.value;
      }
    };
    if (topic === undefined) {
      for (const cells of byTopic.values()) add(cells);
    } else {
      const cells = byTopic.get(topic);
      if (!cells) return `Invalid keyTwo:${topic}`;
      add(cells);
    }
    const duration = Math.floor((this.#clock.wallMs() - this.#lastResetMs) / 1000);
    const perCount = count === 0 ? "invalid" : formatNumber(value / count);
    const perSecond = duration === 0 ? "invalid" : formatNumber(count / duration);
    return `Count=${formatNumber(count)},Value=${formatNumber(value)},Value/Count=${perCount},` +
      `Count/Duration=${perSecond},Duration=${duration}`;
  }

  uptimeSeconds(): number {
    return Math.floor((this.#clock.wallMs() - this.startedMs) / 1000);
  }

  #resetIfDue(): void {
    if (this.#clock.wallMs() - this.#lastResetMs >= REALTIME_RESET_MS) this.reset();
  }
}

/** Java's DecimalFormat("#.##"): at most two decimals, no trailing zeros, half-even rounding. */
export function formatNumber(value: number): string {
  const scaled = value * 100;
  const floor = Math.floor(scaled);
  const fraction = scaled - floor;
  let rounded = fraction > 0.5
    ? floor + 1
    : fraction < 0.5
    ? floor
    : floor % 2 === 0
    ? floor
    : floor + 1;
  if (Math.abs(fraction - 0.5) < 1e-9) rounded = floor % 2 === 0 ? floor : floor + 1;
  const text = (rounded / 100).toFixed(2).replace(/\.?0+$/, "");
  return text === "-0" ? "0" : text;
}

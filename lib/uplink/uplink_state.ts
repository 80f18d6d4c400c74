/**
 * @module What an edge's uplink must not forget, kept in the broker's own log `__uplink-0`
 * (applied through StateLog, so it survives SIGKILL and power cuts exactly as the data does):
 * this edge's site name, and per forwarded partition the forwarding position (every message
 * below it is at the hub or was dropped by the backlog cap) with the hub offset `since` from
 * which the hub looks for a batch sent again, and the messages dropped so far.
 *
 * Records are JSON, one kind each:
 *
 * ```text
 * {"k":"site","site":"edge-7f3a"}
 * {"k":"pos","p":[{"t":"orders","n":0,"o":1040,"ht":"site-17.orders","hn":0,"s":88211}, ...]}
 * {"k":"drop","t":"orders","n":0,"from":1040,"to":9000,"messages":71,"bytes":7960,"why":"..."}
 * {"k":"snap","site":"...","p":[...],"d":[{"t":"orders","n":0,"messages":71,"bytes":7960}]}
 * ```
 *
 * One writer appends them in order, so the last record of a partition is its position. A
 * position moves back only when the edge's own log lost what the hub has (see uplink_part.ts).
 */
import type { StateMachine } from "../store/state_log.ts";

export interface ForwardPosition {
  readonly topic: string;
  readonly partition: number;
  /** Source offset below which every message is at the hub (or was dropped, and counted). */
  readonly offset: number;
  readonly hubTopic: string;
  readonly hubPartition: number;
  /** Hub offset at or after which a message sent and not yet acknowledged can lie. */
  readonly since: number;
}

export interface DropTotals {
  readonly messages: number;
  readonly bytes: number;
}

export interface DropRecord {
  readonly topic: string;
  readonly partition: number;
  readonly from: number;
  readonly to: number;
  readonly messages: number;
  readonly bytes: number;
  readonly why: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** `topic-partition`, the key of a source partition. */
export function partitionKey(topic: string, partition: number): string {
  return `${topic}-${partition}`;
}

export class UplinkState implements StateMachine {
  #site: string | undefined;
  readonly #positions = new Map<string, ForwardPosition>();
  readonly #drops = new Map<string, DropTotals>();

  get site(): string | undefined {
    return this.#site;
  }

  position(topic: string, partition: number): ForwardPosition | undefined {
    return this.#positions.get(partitionKey(topic, partition));
  }

  /** Every saved position. */
  positions(): ForwardPosition[] {
    return [...this.#positions.values()];
  }

  drops(topic: string, partition: number): DropTotals {
    return this.#drops.get(partitionKey(topic, partition)) ?? { messages: 0, bytes: 0 };
  }

  apply(data: Uint8Array): boolean {
    const record = JSON.parse(decoder.decode(data)) as Record<string, unknown>;
    switch (record.k) {
      case "site":
        this.#site = String(record.site);
        return false;
      case "pos":
        for (const entry of record.p as WirePosition[]) this.#advance(fromWire(entry));
        return false;
      case "drop":
        this.#applyDrop(record as unknown as DropRecord);
        return false;
      case "snap":
        this.#site = record.site === undefined ? undefined : String(record.site);
        this.#positions.clear();
        this.#drops.clear();
        for (const entry of record.p as WirePosition[]) this.#advance(fromWire(entry));
        for (const entry of record.d as WireDrops[]) {
          this.#drops.set(partitionKey(entry.t, entry.n), {
            messages: entry.messages,
            bytes: entry.bytes,
          });
        }
        return true;
      default:
        throw new Error(`Cannot apply uplink state record of kind ${String(record.k)}`);
    }
  }

  snapshot(): Uint8Array {
    const drops: WireDrops[] = [];
    for (const [key, totals] of this.#drops) {
      const position = this.#positions.get(key);
      if (position) drops.push({ t: position.topic, n: position.partition, ...totals });
    }
    return json({
      k: "snap",
      site: this.#site,
      p: [...this.#positions.values()].map(toWire),
      d: drops,
    });
  }

  #advance(position: ForwardPosition): void {
    this.#positions.set(partitionKey(position.topic, position.partition), position);
  }

  /** A drop moves the position past what it gave up (creating it: the hub may never have answered). */
  #applyDrop(drop: DropRecord): void {
    const key = partitionKey(drop.topic, drop.partition);
    const known = this.#positions.get(key);
    this.#positions.set(
      key,
      known ? { ...known, offset: drop.to } : {
        topic: drop.topic,
        partition: drop.partition,
        offset: drop.to,
        hubTopic: "",
        hubPartition: -1,
        since: 0,
      },
    );
    const totals = this.drops(drop.topic, drop.partition);
    this.#drops.set(key, {
      messages: totals.messages + drop.messages,
      bytes: totals.bytes + drop.bytes,
    });
  }
}

export function siteRecord(site: string): Uint8Array {
  return json({ k: "site", site });
}

export function positionsRecord(positions: readonly ForwardPosition[]): Uint8Array {
  return json({ k: "pos", p: positions.map(toWire) });
}

export function dropRecord(drop: DropRecord): Uint8Array {
  return json({ k: "drop", ...drop });
}

interface WirePosition {
  t: string;
  n: number;
  o: number;
  ht: string;
  hn: number;
  s: number;
}

interface WireDrops {
  t: string;
  n: number;
  messages: number;
  bytes: number;
}

function toWire(position: ForwardPosition): WirePosition {
  return {
    t: position.topic,
    n: position.partition,
    o: position.offset,
    ht: position.hubTopic,
    hn: position.hubPartition,
    s: position.since,
  };
}

function fromWire(wire: WirePosition): ForwardPosition {
  return {
    topic: wire.t,
    partition: wire.n,
    offset: wire.o,
    hubTopic: wire.ht,
    hubPartition: wire.hn,
    since: wire.s,
  };
}

function json(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/**
 * @module The driver simulator's network: an in-memory PeerNetwork for each node, in virtual
 * time. Each direction of each pair of nodes is a link, as a TCP connection is in PeerTransport:
 * it comes up some time after both ends listen (the sender then hears `onConnected`), carries
 * frames in order after a delay, and breaks when either end dies or a partition resets it,
 * losing what was in flight; it is dialed again with backoff.
 *
 * Beyond what TCP does, Raft frames may be dropped, duplicated or overtaken (Raft tolerates
 * all three, and a reconnect can cause the same); forwarded requests, replies, questions and
 * self-descriptions are only ever lost with their link. A partition either blackholes links
 * (they stay up and frames vanish, as on a dead route) or resets them (they go down and cannot
 * be dialed until it heals).
 */
import type { NodeId } from "../../lib/cluster/messages.ts";
import type { PeerAddress } from "../../lib/cluster/cluster_config.ts";
import type { PeerHandlers, PeerNetwork } from "../../lib/cluster/peer_network.ts";
import { PEER_FRAME_HEADER_BYTES } from "../../lib/cluster/peer_transport.ts";
import { concatBytes } from "../../lib/bytes.ts";
import type { Prng } from "../../lib/prng.ts";
import type { NodeTime, VirtualTime } from "./virtual_time.ts";

/** Envelope kinds whose loss Raft or the node's timers repair (envelope.ts). */
const KIND_RAFT = 1;
const KIND_INFO = 4;
const RECONNECT_DELAYS_MS = [50, 100, 200, 400, 800, 1000];

export interface NetworkWeather {
  /** Chance that a Raft or info frame is lost. */
  dropRate: number;
  /** Chance that a Raft frame arrives twice. */
  dupRate: number;
  /** Chance that a Raft frame is held back and overtaken by later ones. */
  reorderRate: number;
  /** Chance of a long delay (a retransmission). */
  tailRate: number;
}

export type PartitionMode = "blackhole" | "reset";

/** What the checker sees of every frame a node sends on a live link. */
export type SendObserver = (from: NodeId, to: NodeId, payload: Uint8Array) => void;

interface Link {
  readonly from: NodeId;
  readonly to: NodeId;
  connected: boolean;
  /** Bumped when the link breaks: frames sent on an older connection never arrive. */
  connection: number;
  attempts: number;
  dialing: boolean;
  /** When the last in-order frame on this connection arrives. */
  lastArrival: number;
}

export class SimNetwork {
  readonly #time: VirtualTime;
  readonly #random: Prng;
  readonly #observe: SendObserver;
  readonly weather: NetworkWeather;
  readonly #endpoints = new Map<NodeId, Endpoint>();
  readonly #links = new Map<string, Link>();
  /** Directed links partitions block, per partition id, and how. */
  readonly #partitions = new Map<number, { links: Set<string>; mode: PartitionMode }>();
  #nextPartition = 1;
  frames = 0;
  dropped = 0;

  constructor(
    parts: { time: VirtualTime; random: Prng; nodes: readonly NodeId[]; observe: SendObserver },
  ) {
    this.#time = parts.time;
    this.#random = parts.random;
    this.#observe = parts.observe;
    this.weather = { dropRate: 0, dupRate: 0, reorderRate: 0, tailRate: 0 };
    for (const from of parts.nodes) {
      for (const to of parts.nodes) {
        if (from === to) continue;
        this.#links.set(linkKey(from, to), {
          from,
          to,
          connected: false,
          connection: 0,
          attempts: 0,
          dialing: false,
          lastArrival: 0,
        });
      }
    }
  }

  /** The PeerNetwork for one run of node `id` (its previous one, if any, is dead). */
  endpoint(id: NodeId, process: NodeTime): (handlers: PeerHandlers) => PeerNetwork {
    return (handlers) => {
      const endpoint = new Endpoint(this, id, process, handlers);
      this.#endpoints.set(id, endpoint);
      return endpoint;
    };
  }

  /** Node `id` died (or closed its network): every link to and from it breaks. */
  down(id: NodeId): void {
    const endpoint = this.#endpoints.get(id);
    if (endpoint) endpoint.listening = false;
    for (const link of this.#links.values()) {
      if (link.from === id || link.to === id) this.#break(link);
    }
  }

  /** Blocks the directed links `links` ("a>b") until `heal(id)`. */
  partition(links: Set<string>, mode: PartitionMode): number {
    const id = this.#nextPartition++;
    this.#partitions.set(id, { links, mode });
    if (mode === "reset") {
      for (const key of links) this.#break(this.#links.get(key)!);
    }
    return id;
  }

  heal(id: number): void {
    const partition = this.#partitions.get(id);
    if (!partition) return;
    this.#partitions.delete(id);
    // A connection that lost frames into a blackhole does not come back as if nothing happened.
    for (const key of partition.links) {
      const link = this.#links.get(key)!;
      if (partition.mode === "blackhole") this.#break(link);
      this.#dial(link);
    }
  }

  healAll(): void {
    for (const id of [...this.#partitions.keys()]) this.heal(id);
  }

  isConnected(from: NodeId, to: NodeId): boolean {
    return this.#links.get(linkKey(from, to))?.connected ?? false;
  }

  // Endpoint calls.

  listening(id: NodeId): void {
    for (const link of this.#links.values()) {
      if (link.from === id || link.to === id) {
        link.attempts = 0;
        this.#dial(link);
      }
    }
  }

  send(from: NodeId, to: NodeId, payload: Uint8Array): boolean {
    const link = this.#links.get(linkKey(from, to));
    if (!link?.connected) return false;
    this.frames++;
    this.#observe(from, to, payload);
    const blocked = this.#blocked(link);
    if (blocked) return true; // a blackhole: the sender cannot tell
    const kind = payload[0];
    const weather = this.weather;
    const repairable = kind === KIND_RAFT || kind === KIND_INFO;
    if (repairable && this.#random.chance(weather.dropRate)) {
      this.dropped++;
      return true;
    }
    const copies = kind === KIND_RAFT && this.#random.chance(weather.dupRate) ? 2 : 1;
    for (let copy = 0; copy < copies; copy++) {
      const tail = this.#random.chance(weather.tailRate);
      let at = this.#time.now + this.#random.int(1, 6) + (tail ? this.#random.int(50, 400) : 0);
      const overtaken = kind === KIND_RAFT && this.#random.chance(weather.reorderRate);
      if (overtaken) at += this.#random.int(0, 30);
      else at = link.lastArrival = Math.max(link.lastArrival, at);
      this.#deliver(link, link.connection, payload, at);
    }
    return true;
  }

  // Internals.

  #deliver(link: Link, connection: number, payload: Uint8Array, at: number): void {
    this.#time.at(at, () => {
      if (link.connection !== connection || !link.connected) return;
      const target = this.#endpoints.get(link.to);
      if (!target?.listening) return;
      target.process.run(() => target.handlers.onFrame(link.from, payload));
    });
  }

  #blocked(link: Link): PartitionMode | undefined {
    const key = linkKey(link.from, link.to);
    let mode: PartitionMode | undefined;
    for (const partition of this.#partitions.values()) {
      if (!partition.links.has(key)) continue;
      if (partition.mode === "reset") return "reset";
      mode = "blackhole";
    }
    return mode;
  }

  #break(link: Link): void {
    if (link.connected) {
      link.connected = false;
      link.connection++;
      link.lastArrival = 0;
    }
    this.#dial(link);
  }

  /** Dials `link` after a backoff, as PeerTransport does, until it is up or an end is gone. */
  #dial(link: Link): void {
    if (link.dialing || link.connected) return;
    link.dialing = true;
    const delay = RECONNECT_DELAYS_MS[Math.min(link.attempts, RECONNECT_DELAYS_MS.length - 1)];
    link.attempts++;
    this.#time.after(delay * (0.5 + this.#random.float()), () => {
      link.dialing = false;
      const from = this.#endpoints.get(link.from);
      const to = this.#endpoints.get(link.to);
      if (!from?.listening || !to?.listening || link.connected) return;
      if (this.#blocked(link) === "reset") return this.#dial(link);
      link.connected = true;
      link.connection++;
      link.attempts = 0;
      from.process.run(() => from.handlers.onConnected?.(link.to));
    });
  }
}

class Endpoint implements PeerNetwork {
  readonly #network: SimNetwork;
  readonly id: NodeId;
  readonly process: NodeTime;
  readonly handlers: PeerHandlers;
  listening = false;

  constructor(network: SimNetwork, id: NodeId, process: NodeTime, handlers: PeerHandlers) {
    this.#network = network;
    this.id = id;
    this.process = process;
    this.handlers = handlers;
  }

  listen(): Promise<number> {
    if (this.process.alive) {
      this.listening = true;
      this.#network.listening(this.id);
    }
    return Promise.resolve(this.id);
  }

  isConnected(peer: NodeId): boolean {
    return this.listening && this.#network.isConnected(this.id, peer);
  }

  canSend(peer: NodeId): boolean {
    return this.isConnected(peer);
  }

  sendFramed(peer: NodeId, framed: Uint8Array | readonly Uint8Array[]): boolean {
    if (!this.listening || !this.process.alive) return false;
    // A copy: the wire does not share the sender's buffer.
    const whole = framed instanceof Uint8Array ? framed : concatBytes(framed);
    return this.#network.send(this.id, peer, whole.slice(PEER_FRAME_HEADER_BYTES));
  }

  /**
   * Every node of the simulated world is linked to every other from the start, and membership
   * changes are not simulated yet, so a new peer list changes nothing here.
   */
  setPeers(_peers: readonly PeerAddress[]): void {}

  close(): Promise<void> {
    if (this.listening) this.#network.down(this.id);
    return Promise.resolve();
  }
}

export function linkKey(from: NodeId, to: NodeId): string {
  return `${from}>${to}`;
}

/**
 * @module Network: the link proxies of one cluster seen as directed links between nodes. Node i
 * reaches node j through the proxy (i→j), so the bytes "from i to j" are the forward direction of
 * proxy (i→j) plus the backward direction of proxy (j→i) (replies on connections j opened).
 * `setLink(i, j, mode)` sets both, which makes one-way and non-transitive partitions possible.
 * Client-side proxies (one per node) carry all client traffic to that node.
 */
import { describeMode, type LinkMode, type LinkProxy, pass } from "./link_proxy.ts";

export class Network {
  readonly #links: ReadonlyMap<string, LinkProxy>;
  readonly #clientProxies: ReadonlyMap<number, LinkProxy>;
  readonly #nodes: readonly number[];
  readonly #modes = new Map<string, LinkMode>();
  readonly #clientModes = new Map<number, LinkMode>();

  constructor(
    parts: {
      nodes: readonly number[];
      links: ReadonlyMap<string, LinkProxy>;
      clientProxies: ReadonlyMap<number, LinkProxy>;
    },
  ) {
    this.#nodes = parts.nodes;
    this.#links = parts.links;
    this.#clientProxies = parts.clientProxies;
  }

  static key(from: number, to: number): string {
    return `${from}->${to}`;
  }

  get nodes(): readonly number[] {
    return this.#nodes;
  }

  /** What happens to bytes sent from node `from` to node `to`. */
  setLink(from: number, to: number, mode: LinkMode): void {
    this.#proxy(from, to).setMode("forward", mode);
    this.#proxy(to, from).setMode("backward", mode);
    this.#modes.set(Network.key(from, to), mode);
  }

  /** Sets both directions between `a` and `b`. */
  setBoth(a: number, b: number, mode: LinkMode): void {
    this.setLink(a, b, mode);
    this.setLink(b, a, mode);
  }

  link(from: number, to: number): LinkMode {
    return this.#modes.get(Network.key(from, to)) ?? pass();
  }

  /** Cuts `node` off from every other node (both directions). */
  isolate(node: number, mode: LinkMode): void {
    for (const other of this.#nodes) if (other !== node) this.setBoth(node, other, mode);
  }

  /** Every link between nodes on different sides gets `mode`; links within a side pass. */
  partition(sides: readonly (readonly number[])[], mode: LinkMode): void {
    const sideOf = new Map<number, number>();
    sides.forEach((side, index) => side.forEach((node) => sideOf.set(node, index)));
    for (const from of this.#nodes) {
      for (const to of this.#nodes) {
        if (from === to) continue;
        const apart = sideOf.get(from) !== sideOf.get(to);
        this.setLink(from, to, apart ? mode : pass());
      }
    }
  }

  /** Client traffic to `node` (both directions of its client-side proxy). */
  setClient(node: number, mode: LinkMode): void {
    const proxy = this.#clientProxies.get(node);
    if (!proxy) throw new RangeError(`Cannot find the client proxy of node ${node}`);
    proxy.setMode("both", mode);
    this.#clientModes.set(node, mode);
  }

  /** Every link and client proxy back to `pass`. */
  healAll(): void {
    for (const from of this.#nodes) {
      for (const to of this.#nodes) if (from !== to) this.setLink(from, to, pass());
      if (this.#clientProxies.has(from)) this.setClient(from, pass());
    }
  }

  /** The links that are not `pass`, for logs: `1->2 blackhole, client 3 cut`. */
  describe(): string {
    const parts: string[] = [];
    for (const [key, mode] of this.#modes) {
      if (mode.kind !== "pass") parts.push(`${key} ${describeMode(mode)}`);
    }
    for (const [node, mode] of this.#clientModes) {
      if (mode.kind !== "pass") parts.push(`client ${node} ${describeMode(mode)}`);
    }
    return parts.length === 0 ? "all links pass" : parts.join(", ");
  }

  #proxy(from: number, to: number): LinkProxy {
    const proxy = this.#links.get(Network.key(from, to));
    if (!proxy) throw new RangeError(`Cannot find the link proxy ${Network.key(from, to)}`);
    return proxy;
  }
}

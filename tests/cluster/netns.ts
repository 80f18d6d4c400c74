/**
 * @module Network faults at the packet level (CHAOS_NET=netns), beside the link proxies: a
 * scenario runs, with its broker nodes, inside a network namespace of its own
 * (`metaq-chaos-<pid>`, made and deleted by the harness), and partitions become iptables rules
 * on that namespace's loopback, so the kernel drops the packets (TCP retransmits, no reset, no
 * byte held by a proxy) and nothing outside the namespace is touched.
 *
 * What a rule drops: for a link "from i to j", every packet i sends towards j: i's packets to
 * the link proxy (i→j) (`--dport`), and the proxy (j→i)'s packets to j (`--sport`), which carry
 * i's bytes on connections j opened. TCP acknowledgements travel in those packets too, so unlike
 * a proxy's one-way blackhole a one-way drop also stalls the reverse bytes of i's own
 * connections, as a real asymmetric link loss does. `blackhole` is DROP, `cut` is REJECT with a
 * TCP reset; delay and throttle stay with the proxies (the kernel this was built on has no
 * netem).
 *
 * Needs root, `ip` (iproute2) and `iptables` (installed with apt-get when missing); otherwise
 * every scenario asked to run this way is skipped with the reason.
 */
import { spawnSync } from "node:child_process";
import process from "node:process";
import type { Cluster } from "./launcher.ts";
import { describeMode, type LinkMode, pass } from "./link_proxy.ts";
import { Network } from "./network.ts";

/** Set (to the namespace's name) in a process the harness started inside a run namespace. */
export const NETNS_ENV = "CHAOS_NETNS";

function run(args: readonly string[]): { ok: boolean; text: string } {
  const out = spawnSync(args[0], args.slice(1), { encoding: "utf8", timeout: 60_000 });
  return { ok: out.status === 0, text: `${out.stdout ?? ""}${out.stderr ?? ""}`.trim() };
}

function have(tool: string): boolean {
  return run(["sh", "-c", `command -v ${tool}`]).ok;
}

let cachedReason: string | undefined | null = null;

/** Why packet-level faults cannot run here (printed as the skip reason), or undefined. */
export function netnsSkipReason(): string | undefined {
  if (cachedReason !== null) return cachedReason;
  cachedReason = findReason();
  return cachedReason;
}

function findReason(): string | undefined {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "network namespaces and iptables need root";
  if (!have("ip") || !have("iptables")) {
    const install = run(["apt-get", "install", "-y", "iproute2", "iptables"]);
    if (!install.ok) return `cannot install iproute2 and iptables: ${install.text.slice(-200)}`;
  }
  const probe = `metaq-probe-${process.pid}`;
  const made = run(["ip", "netns", "add", probe]);
  if (!made.ok) return `cannot create a network namespace: ${made.text}`;
  try {
    const rule = run([
      "ip",
      "netns",
      "exec",
      probe,
      "iptables",
      "-A",
      "OUTPUT",
      "-p",
      "tcp",
      "-j",
      "ACCEPT",
    ]);
    if (!rule.ok) return `cannot add an iptables rule in a namespace: ${rule.text}`;
  } finally {
    run(["ip", "netns", "del", probe]);
  }
  return undefined;
}

/** Creates a namespace with its loopback up; `deleteNamespace` removes it. */
export function createNamespace(name: string): void {
  const made = run(["ip", "netns", "add", name]);
  if (!made.ok) throw new Error(`Cannot create network namespace ${name}: ${made.text}`);
  const up = run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"]);
  if (!up.ok) {
    deleteNamespace(name);
    throw new Error(`Cannot bring up lo in ${name}: ${up.text}`);
  }
}

export function deleteNamespace(name: string): void {
  run(["ip", "netns", "del", name]);
}

const CHAIN = "METAQ_CHAOS";

/**
 * The cluster's links as iptables rules in the current namespace (the process must run inside
 * the run's namespace); modes iptables cannot make go to the proxies (`inner`).
 */
export class NetfilterNetwork extends Network {
  readonly #inner: Network;
  readonly #cluster: Cluster;
  readonly #rules = new Map<string, string[][]>();
  readonly #modes = new Map<string, LinkMode>();

  constructor(cluster: Cluster) {
    super({ nodes: cluster.network.nodes, links: new Map(), clientProxies: new Map() });
    this.#inner = cluster.network;
    this.#cluster = cluster;
    ensure(["iptables", "-N", CHAIN], /already exists/);
    ensure(["iptables", "-C", "OUTPUT", "-j", CHAIN], undefined, [
      "iptables",
      "-I",
      "OUTPUT",
      "-j",
      CHAIN,
    ]);
    ensure(["iptables", "-F", CHAIN]);
  }

  override get nodes(): readonly number[] {
    return this.#inner.nodes;
  }

  override setLink(from: number, to: number, mode: LinkMode): void {
    const key = Network.key(from, to);
    for (const rule of this.#rules.get(key) ?? []) run(["iptables", "-D", CHAIN, ...rule]);
    this.#rules.delete(key);
    this.#modes.set(key, mode);
    if (mode.kind !== "blackhole" && mode.kind !== "cut") {
      this.#inner.setLink(from, to, mode); // pass, delay, throttle: the proxies
      return;
    }
    this.#inner.setLink(from, to, pass());
    const plan = this.#cluster.plan;
    const target = mode.kind === "cut"
      ? ["-j", "REJECT", "--reject-with", "tcp-reset"]
      : ["-j", "DROP"];
    const rules = [
      ["-p", "tcp", "--dport", String(plan.linkPort(from, to)), ...target],
      ["-p", "tcp", "--sport", String(plan.linkPort(to, from)), ...target],
    ];
    for (const rule of rules) {
      const added = run(["iptables", "-A", CHAIN, ...rule]);
      if (!added.ok) throw new Error(`Cannot add iptables rule ${rule.join(" ")}: ${added.text}`);
    }
    this.#rules.set(key, rules);
    this.#cluster.options.log(`iptables: ${key} ${describeMode(mode)}`);
  }

  override setBoth(a: number, b: number, mode: LinkMode): void {
    this.setLink(a, b, mode);
    this.setLink(b, a, mode);
  }

  override link(from: number, to: number): LinkMode {
    return this.#modes.get(Network.key(from, to)) ?? pass();
  }

  override isolate(node: number, mode: LinkMode): void {
    for (const other of this.nodes) if (other !== node) this.setBoth(node, other, mode);
  }

  override partition(sides: readonly (readonly number[])[], mode: LinkMode): void {
    const sideOf = new Map<number, number>();
    sides.forEach((side, index) => side.forEach((node) => sideOf.set(node, index)));
    for (const from of this.nodes) {
      for (const to of this.nodes) {
        if (from === to) continue;
        this.setLink(from, to, sideOf.get(from) !== sideOf.get(to) ? mode : pass());
      }
    }
  }

  override setClient(node: number, mode: LinkMode): void {
    this.#inner.setClient(node, mode);
  }

  override healAll(): void {
    run(["iptables", "-F", CHAIN]);
    this.#rules.clear();
    this.#modes.clear();
    this.#inner.healAll();
  }

  override describe(): string {
    const parts: string[] = [];
    for (const [key, mode] of this.#modes) {
      if (mode.kind !== "pass") parts.push(`${key} ${describeMode(mode)} (iptables)`);
    }
    const proxies = this.#inner.describe();
    return parts.length === 0 ? proxies : `${parts.join(", ")}; proxies: ${proxies}`;
  }
}

/** Runs `args`; tolerates a failure whose text matches `tolerated`; else runs `otherwise`. */
function ensure(args: string[], tolerated?: RegExp, otherwise?: string[]): void {
  const out = run(args);
  if (out.ok) return;
  if (tolerated?.test(out.text)) return;
  if (otherwise) {
    const second = run(otherwise);
    if (second.ok) return;
    throw new Error(`Cannot run ${otherwise.join(" ")}: ${second.text}`);
  }
  throw new Error(`Cannot run ${args.join(" ")}: ${out.text}`);
}

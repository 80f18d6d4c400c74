/**
 * @module Fault recipes shared by the scenarios, built on NemesisContext: each opens a fault
 * window, injects, waits, heals, and closes the window, so failover times and fault-window
 * latencies line up with what was done. Every wait is bounded.
 */
import { blackhole, type LinkMode } from "./link_proxy.ts";
import type { NemesisContext } from "./scenario.ts";

/** SIGKILL (or another signal) `node`, keep it down `downMs`, start it again. */
export async function killAndRestart(
  ctx: NemesisContext,
  node: number,
  parts: { downMs: number; groups?: string[]; signal?: "SIGKILL" | "SIGTERM" },
): Promise<void> {
  const signal = parts.signal ?? "SIGKILL";
  const fault = ctx.begin(signal === "SIGKILL" ? "kill" : "stop", {
    nodes: [node],
    groups: parts.groups,
  });
  if (signal === "SIGKILL") await ctx.cluster.kill(node);
  else await ctx.cluster.stop(node);
  await ctx.sleep(parts.downMs);
  await ctx.cluster.start(node);
  ctx.end(fault);
}

/** SIGSTOP `nodes` for `ms`, then SIGCONT. */
export async function pauseFor(
  ctx: NemesisContext,
  nodes: readonly number[],
  ms: number,
  groups?: string[],
): Promise<void> {
  const fault = ctx.begin("pause", { nodes: [...nodes], groups, detail: `${ms} ms` });
  for (const node of nodes) ctx.cluster.pause(node);
  await ctx.sleep(ms);
  for (const node of nodes) ctx.cluster.resume(node);
  ctx.end(fault);
}

/** Splits the nodes into `sides` (links between sides get `mode`) for `ms`, then heals. */
export async function partitionFor(
  ctx: NemesisContext,
  sides: readonly (readonly number[])[],
  ms: number,
  parts: { mode?: LinkMode; groups?: string[]; kind?: string } = {},
): Promise<void> {
  const fault = ctx.begin(parts.kind ?? "partition", {
    nodes: sides.flat(),
    groups: parts.groups,
    detail: sides.map((side) => `{${side.join(",")}}`).join(" | "),
  });
  ctx.network.partition(sides, parts.mode ?? blackhole());
  await ctx.sleep(ms);
  ctx.network.healAll();
  ctx.end(fault);
}

/**
 * Whole-cluster crash: every node killed at once (`power`: power-cut, plan 1.3), down `downMs`,
 * then started in random order with 0..`spacingMs` between starts.
 */
export async function crashAll(
  ctx: NemesisContext,
  parts: { power: boolean; downMs: number; spacingMs: number },
): Promise<void> {
  const ids = ctx.cluster.nodes.map((node) => node.id);
  const fault = ctx.begin(parts.power ? "power-cut-all" : "kill-all", {
    nodes: ids,
    groups: [...ctx.partitionGroups],
  });
  if (parts.power) {
    await Promise.all(ids.map((id) => ctx.cluster.kill(id)));
    for (const id of ids) {
      await ctx.cluster.powerCut(id, ctx.random.fork(`power ${fault.id} ${id}`));
    }
  } else {
    await Promise.all(ids.map((id) => ctx.cluster.kill(id)));
  }
  await ctx.sleep(parts.downMs);
  for (const id of ctx.random.shuffle(ids)) {
    await ctx.cluster.start(id);
    await ctx.sleep(ctx.random.int(0, parts.spacingMs));
  }
  ctx.end(fault);
}

/** The current leader of `group`, polling up to `waitMs` (undefined if none shows up). */
export async function findLeader(
  ctx: NemesisContext,
  group: string,
  waitMs = 5000,
): Promise<number | undefined> {
  const deadline = Date.now() + waitMs;
  do {
    const leader = await ctx.leaders.leaderOf(group);
    if (leader !== undefined) return leader;
    await ctx.sleep(200);
  } while (Date.now() < deadline);
  return undefined;
}

/** Partition groups led by `node` now (from `meta`). */
export async function groupsLedBy(ctx: NemesisContext, node: number): Promise<string[]> {
  const leaders = await ctx.leaders.partitionLeaders();
  return [...leaders].filter(([, leader]) => leader === node).map(([p]) => `${ctx.topic}-${p}`);
}

/**
 * T10 slow links (nightly; rotating in the plan's CI): 100 ± 50 ms on every link, then 300 ± 200 ms
 * on one node's links, then one follower throttled to 256 KiB/s. Must hold: I1-I13, and at most
 * one election per minute per group under the 100 ms jitter phase.
 */
import { chaosTest } from "../cluster/chaos_test.ts";
import { delay, throttle } from "../cluster/link_proxy.ts";
import { findLeader, othersThan } from "../cluster/nemesis.ts";
import type { FinishedRun, NemesisContext } from "../cluster/scenario.ts";
import { electionsBetween } from "../cluster/trace_figures.ts";

async function slowLinks(ctx: NemesisContext): Promise<void> {
  const phaseMs = Math.min(60_000, 20_000 * ctx.scale);
  const ids = ctx.cluster.nodes.map((node) => node.id);
  let fault = ctx.begin("delay-all", { nodes: ids, detail: "100±50 ms" });
  for (const from of ids) {
    for (const to of othersThan(ctx, from)) ctx.network.setLink(from, to, delay(100, 50));
  }
  await ctx.sleep(phaseMs);
  ctx.network.healAll();
  ctx.end(fault);
  const slow = ctx.random.pick(ids);
  fault = ctx.begin("delay-node", { nodes: [slow], detail: "300±200 ms" });
  for (const other of othersThan(ctx, slow)) ctx.network.setBoth(slow, other, delay(300, 200));
  await ctx.sleep(phaseMs / 2);
  ctx.network.healAll();
  ctx.end(fault);
  const leader = await findLeader(ctx, ctx.random.pick(ctx.partitionGroups));
  const follower = ctx.random.pick(othersThan(ctx, leader ?? slow));
  fault = ctx.begin("throttle-follower", { nodes: [follower], detail: "256 KiB/s" });
  for (const other of othersThan(ctx, follower)) {
    ctx.network.setLink(other, follower, throttle(256 * 1024));
  }
  await ctx.sleep(phaseMs / 2);
  ctx.network.healAll();
  ctx.end(fault);
}

/**
 * Groups with more than one election per started minute of the 100 ms jitter phase. A group's
 * first election is not counted: it replaces no leader (a group created or woken late in the
 * cluster's start elects its first leader inside the phase; seed 4003214319's `__meta-0`).
 */
function jitterElections(run: FinishedRun): string[] {
  const phase = run.input.faults.find((fault) => fault.kind === "delay-all");
  if (!phase?.until) return [];
  const allowed = Math.ceil((phase.until - phase.t) / 60_000);
  const firstTerm = new Map<string, number>();
  for (const event of run.input.traces) {
    if (event.event !== "role" || event.role !== "leader") continue;
    firstTerm.set(event.group, Math.min(firstTerm.get(event.group) ?? Infinity, event.term));
  }
  const perGroup = new Map<string, number>();
  for (const key of electionsBetween(run.input.traces, phase.t, phase.until)) {
    const [group, term] = key.split(" term ");
    if (Number(term) === firstTerm.get(group)) continue;
    perGroup.set(group, (perGroup.get(group) ?? 0) + 1);
  }
  return [...perGroup].filter(([, count]) => count > allowed)
    .map(([group, count]) =>
      `${group}: ${count} elections under 100 ms jitter (allowed ${allowed})`
    );
}

chaosTest({
  id: "T10",
  title: "slow and throttled links",
  tier: "nightly",
  runMs: 45_000,
  mixed: true,
  nemesis: slowLinks,
  extraChecks: jitterElections,
});

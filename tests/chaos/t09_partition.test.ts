/**
 * T09 network partitions through the link proxies (clients keep reaching every node):
 * 1. isolate a partition's leader (blackhole both ways); 2. minority/majority split;
 * 3. bridge: A-B and B-C up, A-C down (nightly); 4. one-way: leader → followers dropped;
 * 5. isolate a follower, then heal: rejoining must not cause an election (pre-vote);
 * 6. swizzle-clog: links cut one at a time, restored one at a time in random order (nightly).
 * CI runs 1, 2, 4 and 5 with 8 s faults; nightly all six with 10-20 s (30 s for 5).
 * Must hold: I1-I13; zero elections when the isolated follower rejoins.
 */
import { chaosTest } from "../cluster/chaos_test.ts";
import { blackhole, pass } from "../cluster/link_proxy.ts";
import {
  findLeader,
  groupsLedBy,
  leastLeadingNode,
  othersThan,
  partitionFor,
} from "../cluster/nemesis.ts";
import type { FinishedRun, NemesisContext } from "../cluster/scenario.ts";
import { electionsBetween } from "../cluster/trace_figures.ts";

/** After the isolated follower rejoins, elections are not allowed for this long. */
const REJOIN_QUIET_MS = 3_000;

async function subcases(ctx: NemesisContext): Promise<void> {
  const nightly = ctx.scale > 1;
  const faultMs = Math.min(20_000, Math.round(8_000 * ctx.scale));
  const list = nightly ? [1, 2, 3, 4, 5, 6] : [1, 2, 4, 5];
  for (const subcase of list) {
    if (ctx.remainingMs() < 5_000) break;
    const group = ctx.random.pick(ctx.partitionGroups);
    const leader = await findLeader(ctx, group);
    if (leader === undefined) {
      ctx.log(`subcase ${subcase}: no leader for ${group}; skipped`);
      continue;
    }
    const groups = [...new Set([group, ...(await groupsLedBy(ctx, leader))])];
    await runSubcase(ctx, { subcase, leader, groups, faultMs, nightly });
    await ctx.sleep(3_000);
  }
}

async function runSubcase(
  ctx: NemesisContext,
  parts: { subcase: number; leader: number; groups: string[]; faultMs: number; nightly: boolean },
): Promise<void> {
  const { subcase, leader, groups, faultMs } = parts;
  const others = othersThan(ctx, leader);
  if (subcase === 1) {
    await partitionFor(ctx, [[leader], others], faultMs, { groups, kind: "isolate-leader" });
  } else if (subcase === 2) {
    const alone = ctx.random.pick(others);
    await partitionFor(ctx, [[alone], othersThan(ctx, alone)], faultMs, { kind: "split-minority" });
  } else if (subcase === 3) {
    const [a, c] = ctx.random.shuffle(ctx.cluster.nodes.map((node) => node.id));
    const fault = ctx.begin("bridge", { nodes: [a, c], detail: `${a} x ${c}`, groups });
    ctx.network.setBoth(a, c, blackhole());
    await ctx.sleep(faultMs);
    ctx.network.healAll();
    ctx.end(fault);
  } else if (subcase === 4) {
    const fault = ctx.begin("one-way-from-leader", { nodes: [leader], groups });
    for (const other of others) ctx.network.setLink(leader, other, blackhole());
    await ctx.sleep(faultMs);
    ctx.network.healAll();
    ctx.end(fault);
  } else if (subcase === 5) {
    const follower = await leastLeadingNode(ctx);
    const isolateMs = parts.nightly ? 30_000 : faultMs;
    await partitionFor(ctx, [[follower], othersThan(ctx, follower)], isolateMs, {
      kind: "isolate-follower",
    });
  } else {
    await swizzleClog(ctx);
  }
}

/** Blackholes every directed link one at a time, then restores them one at a time, shuffled. */
async function swizzleClog(ctx: NemesisContext): Promise<void> {
  const ids = ctx.cluster.nodes.map((node) => node.id);
  const links = ids.flatMap((from) =>
    ids.filter((to) => to !== from).map((to) => [from, to] as const)
  );
  const fault = ctx.begin("swizzle-clog", { nodes: ids, groups: [...ctx.partitionGroups] });
  for (const [from, to] of ctx.random.shuffle(links)) {
    ctx.network.setLink(from, to, blackhole());
    await ctx.sleep(ctx.random.int(300, 1_000));
  }
  for (const [from, to] of ctx.random.shuffle(links)) {
    ctx.network.setLink(from, to, pass());
    await ctx.sleep(ctx.random.int(300, 1_000));
  }
  ctx.end(fault);
}

/** Elections right after an isolated follower rejoined (pre-vote must prevent them). */
function rejoinElections(run: FinishedRun): string[] {
  return run.input.faults
    .filter((fault) => fault.kind === "isolate-follower" && fault.until !== undefined)
    .flatMap((fault) =>
      electionsBetween(run.input.traces, fault.until!, fault.until! + REJOIN_QUIET_MS)
    );
}

chaosTest({
  id: "T09",
  title: "network partitions via the link proxies",
  runMs: 44_000,
  mixed: true,
  nemesis: subcases,
  extraChecks: (run) => {
    const elections = rejoinElections(run);
    return elections.length === 0
      ? []
      : [`elections after the isolated follower rejoined: ${elections.join(", ")}`];
  },
  extraFigures: (run) => ({
    rejoinElections: rejoinElections(run),
    termIncrements: run.result.figures.termIncrements,
  }),
});

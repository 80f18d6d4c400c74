/**
 * T02 leader kill churn: every 8-15 s, SIGKILL the leader of a random partition (or of the
 * metadata group, one time in four) and restart it 3-5 s later. The nightly tier adds the
 * "double failover" (KIP-279): the successor is killed as soon as it is elected.
 * Must hold: I1-I13. Reports failover p50/p99/max per kill.
 */
import { chaosTest } from "../cluster/chaos_test.ts";
import { findLeader, groupsLedBy, killAndRestart } from "../cluster/nemesis.ts";
import type { NemesisContext } from "../cluster/scenario.ts";

async function churn(ctx: NemesisContext): Promise<void> {
  const kills: string[] = [];
  while (ctx.remainingMs() > 20_000) {
    await ctx.sleep(ctx.random.int(8_000, 15_000));
    const group = ctx.random.chance(0.25) ? "meta" : ctx.random.pick(ctx.partitionGroups);
    const leader = await findLeader(ctx, group);
    if (leader === undefined) {
      ctx.log(`no leader found for ${group}; skipping this kill`);
      continue;
    }
    const led = await groupsLedBy(ctx, leader);
    const groups = [...new Set([...(group === "meta" ? [] : [group]), ...led])];
    const downMs = ctx.random.int(3_000, 5_000);
    kills.push(`${group}@n${leader}`);
    if (ctx.scale > 1 && ctx.random.chance(0.5)) {
      await doubleFailover(ctx, { group, leader, groups, downMs });
    } else {
      await killAndRestart(ctx, leader, { downMs, groups });
    }
  }
  ctx.figures.kills = kills;
}

/** Kills the leader, waits for a successor, kills it too, then restarts both. */
async function doubleFailover(
  ctx: NemesisContext,
  parts: { group: string; leader: number; groups: string[]; downMs: number },
): Promise<void> {
  const fault = ctx.begin("double-failover", { nodes: [parts.leader], groups: parts.groups });
  await ctx.cluster.kill(parts.leader);
  let successor: number | undefined;
  for (let tries = 0; tries < 40 && successor === undefined; tries++) {
    const found = await ctx.leaders.leaderOf(parts.group);
    if (found !== undefined && found !== parts.leader) successor = found;
    else await ctx.sleep(100);
  }
  if (successor !== undefined) await ctx.cluster.kill(successor);
  await ctx.sleep(parts.downMs);
  await ctx.cluster.start(parts.leader);
  if (successor !== undefined) await ctx.cluster.start(successor);
  ctx.end(fault);
}

chaosTest({
  id: "T02",
  title: "leader kill churn",
  runMs: 40_000,
  mixed: true,
  nemesis: churn,
  extraFigures: ({ result }) => ({
    failoverMs: result.figures.failoverMs,
    termIncrements: result.figures.termIncrements,
  }),
});

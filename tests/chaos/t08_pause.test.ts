/**
 * T08 process pauses: SIGSTOP the leader of a partition for 0.5x, 1.5x and 5x the longest
 * election timeout (clients stay connected to it and keep sending); then a follower for 10 s
 * (5 s in CI) and a majority for 5 s (3 s in CI).
 * Must hold: I1-I13 (nothing the paused leader received is acknowledged unless it survives:
 * I1, I4, I7); an old leader that was replaced steps down once resumed.
 * Reports the stale-leader window (successor elected → old leader steps down; target <= 1 s).
 */
import { chaosTest } from "../cluster/chaos_test.ts";
import { ELECTION_TIMEOUT_MAX_MS } from "../cluster/launcher.ts";
import { findLeader, groupsLedBy, othersThan, pauseFor } from "../cluster/nemesis.ts";
import type { FinishedRun, NemesisContext } from "../cluster/scenario.ts";
import { staleLeaderWindowMs } from "../cluster/trace_figures.ts";

async function pauses(ctx: NemesisContext): Promise<void> {
  for (const factor of [0.5, 1.5, 5]) {
    if (ctx.remainingMs() < 12_000) break;
    const group = ctx.random.pick(ctx.partitionGroups);
    const leader = await findLeader(ctx, group);
    if (leader === undefined) {
      ctx.log(`no leader for ${group}; skipping the ${factor}x pause`);
      continue;
    }
    const groups = [...new Set([group, ...(await groupsLedBy(ctx, leader))])];
    await pauseFor(ctx, [leader], Math.round(factor * ELECTION_TIMEOUT_MAX_MS), {
      groups,
      kind: "pause-leader",
    });
    await ctx.sleep(3_000);
  }
  const scale = Math.min(2, ctx.scale);
  const group = ctx.random.pick(ctx.partitionGroups);
  const leader = await findLeader(ctx, group);
  if (leader !== undefined && ctx.remainingMs() > 8_000) {
    const follower = ctx.random.pick(othersThan(ctx, leader));
    await pauseFor(ctx, [follower], 5_000 * scale, { kind: "pause-follower" });
    await ctx.sleep(3_000);
  }
  if (ctx.remainingMs() > 5_000) {
    const majority = ctx.random.shuffle(ctx.cluster.nodes.map((node) => node.id)).slice(0, 2);
    await pauseFor(ctx, majority, 3_000 * scale, {
      groups: [...ctx.partitionGroups],
      kind: "pause-majority",
    });
  }
}

/** Per leader pause and group it led: successor election → old leader's step-down, in ms. */
function staleWindows(
  run: FinishedRun,
): { group: string; leader: number; ms: number | null | undefined }[] {
  const out = [];
  for (const fault of run.input.faults) {
    if (fault.kind !== "pause-leader") continue;
    const leader = fault.nodes![0];
    for (const group of fault.groups ?? []) {
      out.push({
        group,
        leader,
        ms: staleLeaderWindowMs(run.input.traces, { fault, leader, group }),
      });
    }
  }
  return out;
}

chaosTest({
  id: "T08",
  title: "process pauses",
  runMs: 35_000,
  mixed: true,
  nemesis: pauses,
  extraChecks: (run) =>
    staleWindows(run)
      .filter((window) => window.ms === null)
      .map((window) =>
        `node ${window.leader} never stepped down as leader of ${window.group} after its successor was elected`
      ),
  extraFigures: (run) => ({ staleLeaderWindowsMs: staleWindows(run) }),
});

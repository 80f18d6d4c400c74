/**
 * T03 random kills including a majority (nightly; rotating in the plan's CI): every 5-10 s kill one
 * random node (70%), two (25%) or all (5%), restart them 1-6 s later; 20 s of quiet before the
 * drain. Must hold: I1-I13, and no produce is acknowledged while a majority is down.
 */
import { chaosTest } from "../cluster/chaos_test.ts";
import type { FinishedRun, NemesisContext } from "../cluster/scenario.ts";

async function kills(ctx: NemesisContext): Promise<void> {
  const ids = ctx.cluster.nodes.map((node) => node.id);
  const majority = Math.floor(ids.length / 2) + 1;
  while (ctx.remainingMs() > 25_000) {
    await ctx.sleep(ctx.random.int(5_000, 10_000));
    const roll = ctx.random.float();
    const count = roll < 0.7 ? 1 : roll < 0.95 ? 2 : ids.length;
    const victims = ctx.random.shuffle(ids).slice(0, count);
    await Promise.all(victims.map((id) => ctx.cluster.kill(id)));
    // The window starts once every victim is dead and ends before any restart begins.
    const kind = count >= majority ? "kill-majority" : "kill";
    const fault = ctx.begin(kind, { nodes: victims, groups: [...ctx.partitionGroups] });
    await ctx.sleep(ctx.random.int(1_000, 6_000));
    ctx.end(fault);
    for (const id of victims) await ctx.cluster.start(id);
  }
}

/** Produces acknowledged entirely inside a window where a majority was down. */
function acksWithoutQuorum(run: FinishedRun): string[] {
  const windows = run.input.faults.filter((fault) => fault.kind === "kill-majority" && fault.until);
  const out: string[] = [];
  const open = new Map<string, number>();
  for (const op of run.input.history) {
    if (op.op !== "produce") continue;
    if (op.kind === "invoke") open.set(op.client, op.t);
    if (op.kind !== "ok") continue;
    const start = open.get(op.client) ?? op.t;
    const inside = windows.find((fault) => start >= fault.t && op.t <= fault.until!);
    if (inside) {
      out.push(
        `${op.value} acknowledged by node ${op.node} while nodes ${
          inside.nodes!.join(",")
        } were down`,
      );
    }
  }
  return out;
}

chaosTest({
  id: "T03",
  title: "random kills including a majority",
  tier: "nightly",
  runMs: 80_000,
  mixed: true,
  nemesis: kills,
  extraChecks: (run) => acksWithoutQuorum(run).slice(0, 20),
});

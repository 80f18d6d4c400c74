/**
 * T07 part-kill recipe: T06 with proxy partitions instead of pauses, 5 nodes, R=5:
 * cut {n1,n2} from the rest → power-cut n3 → heal → cut {n4,n5} from the rest → restart n3 →
 * wait → heal all. Variants a (fsync=always) and b (fsync=interval:200); both must hold I1-I13.
 */
import { chaosTest } from "../cluster/chaos_test.ts";
import { blackhole } from "../cluster/link_proxy.ts";
import { chaosEnv, type NemesisContext, REPAIR_BOUND_MS } from "../cluster/scenario.ts";

/** How long each step holds its fault: n3 is in repair for about one step, by design. */
const stepMsAt = (scale: number) => scale > 1 ? 30_000 : 10_000;

async function partKill(ctx: NemesisContext): Promise<void> {
  const stepMs = stepMsAt(ctx.scale);
  for (let round = 0; round < 2 && ctx.remainingMs() > 2 * stepMs; round++) {
    const fault = ctx.begin("part-kill", {
      nodes: [1, 2, 3, 4, 5],
      groups: [...ctx.partitionGroups],
    });
    ctx.network.partition([[1, 2], [3, 4, 5]], blackhole());
    await ctx.sleep(stepMs);
    await ctx.cluster.powerCut(3, ctx.random.fork(`part-kill ${round}`));
    ctx.network.healAll();
    ctx.network.partition([[4, 5], [1, 2, 3]], blackhole());
    await ctx.cluster.start(3);
    await ctx.sleep(stepMs);
    ctx.network.healAll();
    ctx.end(fault);
    await ctx.sleep(stepMs / 2);
  }
}

for (const [variant, fsync] of [["a", "always"], ["b", "interval:200"]] as const) {
  chaosTest({
    id: `T07${variant}`,
    title: `part-kill recipe, 5 nodes, fsync=${fsync}`,
    tier: "nightly",
    runMs: 60_000,
    mixed: true,
    cluster: { nodeCount: 5, replicas: 5, fsync },
    nemesis: partKill,
    repairBoundMs: stepMsAt(chaosEnv().scale) + REPAIR_BOUND_MS,
  });
}

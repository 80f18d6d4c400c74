/**
 * T06 pause-kill recipe (the NATS #7567 split-brain reproduction), 5 nodes, R=5, W1:
 * pause n1 n2 → power-cut n3 → pause n4 n5 → resume n1 n2 → restart n3 → wait → resume n4 n5
 * → wait; twice. Variant a: fsync=always; variant b: fsync=interval:200 (guarantee 4 says a single
 * machine crash is survivable: n3 comes back in repair mode). Both must hold I1-I13.
 */
import { chaosTest } from "../cluster/chaos_test.ts";
import { chaosEnv, type NemesisContext, REPAIR_BOUND_MS } from "../cluster/scenario.ts";

/** How long each step holds its fault: n3 is in repair for about one step, by design. */
const stepMsAt = (scale: number) => scale > 1 ? 30_000 : 10_000;

async function pauseKill(ctx: NemesisContext): Promise<void> {
  const stepMs = stepMsAt(ctx.scale);
  for (let round = 0; round < 2 && ctx.remainingMs() > 2 * stepMs; round++) {
    const fault = ctx.begin("pause-kill", {
      nodes: [1, 2, 3, 4, 5],
      groups: [...ctx.partitionGroups],
    });
    for (const id of [1, 2]) ctx.cluster.pause(id);
    await ctx.sleep(stepMs);
    await ctx.cluster.powerCut(3, ctx.random.fork(`pause-kill ${round}`));
    for (const id of [4, 5]) ctx.cluster.pause(id);
    for (const id of [1, 2]) ctx.cluster.resume(id);
    await ctx.cluster.start(3);
    await ctx.sleep(stepMs);
    for (const id of [4, 5]) ctx.cluster.resume(id);
    ctx.end(fault);
    await ctx.sleep(stepMs / 2);
  }
}

for (const [variant, fsync] of [["a", "always"], ["b", "interval:200"]] as const) {
  chaosTest({
    id: `T06${variant}`,
    title: `pause-kill recipe, 5 nodes, fsync=${fsync}`,
    tier: "nightly",
    runMs: 60_000,
    mixed: true,
    cluster: { nodeCount: 5, replicas: 5, fsync },
    nemesis: pauseKill,
    repairBoundMs: stepMsAt(chaosEnv().scale) + REPAIR_BOUND_MS,
  });
}

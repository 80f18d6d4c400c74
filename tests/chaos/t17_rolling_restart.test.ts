/**
 * T17 rolling graceful restart (nightly; rotating in the plan's CI): SIGTERM each node in turn,
 * start it again, wait until every partition serves, next. Must hold: I1-I13 and no indeterminate
 * produce (leadership is handed over before a node stops). Reports the longest unavailability.
 */
import { chaosTest } from "../cluster/chaos_test.ts";
import type { NemesisContext } from "../cluster/scenario.ts";

async function rolling(ctx: NemesisContext): Promise<void> {
  const serviceMs: (number | null)[] = [];
  for (const node of ctx.cluster.nodes.map((entry) => entry.id)) {
    await ctx.sleep(3_000);
    const fault = ctx.begin("graceful-restart", {
      nodes: [node],
      groups: [...ctx.partitionGroups],
    });
    await ctx.cluster.stop(node);
    await ctx.cluster.start(node);
    ctx.end(fault);
    serviceMs.push(await ctx.waitForService(30_000));
  }
  ctx.figures.timeToServiceMs = serviceMs;
}

chaosTest({
  id: "T17",
  title: "rolling graceful restart",
  tier: "nightly",
  runMs: 30_000,
  mixed: true,
  nemesis: rolling,
  extraChecks: ({ result }) =>
    result.figures.indeterminate === 0
      ? []
      : [`${result.figures.indeterminate} indeterminate produce(s) during graceful restarts`],
  extraFigures: ({ result }) => ({ unavailabilityMs: result.figures.unavailabilityMs }),
});

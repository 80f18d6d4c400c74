/**
 * T15 consumer groups under faults: W1 + W2 (3 consumers, commits every 100 ms) + W3 on 6
 * partitions. Faults: a consumer killed every 10 s (restarted 2 s later); the leader of the
 * group's offsets partition (`__offsets-*`, else the metadata group) killed twice; one partition
 * isolating that coordinator (8 s in CI, 15 s nightly).
 * Must hold: I1 as at-least-once (every acknowledged value fetched by the group by the end), I7,
 * I8, I9, and the rest of I1-I13. Reports the redelivery ratio.
 * Needs tests/cluster/group_ops.ts GROUP_OPS (consumer groups are being built in lib/groups).
 */
import { chaosTest } from "../cluster/chaos_test.ts";
import { findLeader, killAndRestart, othersThan, partitionFor } from "../cluster/nemesis.ts";
import { GROUP, type NemesisContext } from "../cluster/scenario.ts";

/** The group holding committed offsets: an `__offsets` partition seen in traces, else `meta`. */
function offsetsGroup(ctx: NemesisContext): string {
  ctx.traces.poll();
  const groups = new Set(ctx.traces.events.map((event) => event.group));
  return [...groups].find((group) => group.startsWith("__offsets")) ?? "meta";
}

async function faults(ctx: NemesisContext): Promise<void> {
  const plan = ctx.random.shuffle([
    "consumer",
    "consumer",
    "consumer",
    "offsets",
    "offsets",
    "isolate",
  ]);
  for (const step of plan) {
    if (ctx.remainingMs() < 6_000) break;
    await ctx.sleep(ctx.random.int(3_000, 6_000));
    if (step === "consumer") {
      const k = ctx.random.int(0, 2);
      const fault = ctx.begin("kill-consumer", { detail: `consumer ${k}` });
      await ctx.consumers!.restart(k, 2_000);
      ctx.end(fault);
      continue;
    }
    const group = offsetsGroup(ctx);
    const coordinator = await findLeader(ctx, group);
    if (coordinator === undefined) {
      ctx.log(`no leader for ${group}; skipping ${step}`);
      continue;
    }
    if (step === "offsets") {
      await killAndRestart(ctx, coordinator, { downMs: ctx.random.int(3_000, 5_000) });
    } else {
      const ms = ctx.scale > 1 ? 15_000 : 8_000;
      await partitionFor(ctx, [[coordinator], othersThan(ctx, coordinator)], ms, {
        kind: "isolate-coordinator",
      });
    }
  }
}

chaosTest({
  id: "T15",
  title: "consumer groups under faults",
  runMs: 35_000,
  mixed: true,
  groups: true,
  check: { deliveryGroups: [GROUP] },
  nemesis: faults,
  extraFigures: ({ result }) => ({
    redeliveryRatio: result.figures.redeliveryRatio,
    deliveries: result.figures.deliveries,
    offsetRegressions: result.figures.offsetRegressions,
  }),
});

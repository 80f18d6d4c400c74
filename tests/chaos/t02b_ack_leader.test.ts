/**
 * T02b leader kill churn with `ack=leader` (MetaQ's async mode, replication.md guarantee 5): as
 * T02, every 5-10 s the leader of a random partition is SIGKILLed and restarted 3-5 s later. A put
 * is acknowledged once the leader alone wrote it, so a kill may lose the puts its followers had
 * not copied yet: loss is reported, not failed (I1 report-only), and must stay within its bound:
 * every acknowledged put missing from the final log was acknowledged at most LOSS_WINDOW_MS before
 * a kill of a node that led its partition (the tail the followers had not copied), never outside
 * such a window. Everything else must hold: no value nobody sent, one value per offset, no
 * duplicate, no reordering, nothing read that is later lost, no split brain, convergence.
 * Reports: lost puts, and the longest time from a lost put's acknowledgement to its leader's kill.
 */
import { chaosTest } from "../cluster/chaos_test.ts";
import { findLeader, groupsLedBy, killAndRestart } from "../cluster/nemesis.ts";
import { lossBound, lostPuts } from "../cluster/loss_bounds.ts";
import { type NemesisContext, TOPIC } from "../cluster/scenario.ts";

/** The bound: a lost put was acknowledged at most this long before its leader was killed. */
const LOSS_WINDOW_MS = 1_000;

async function churn(ctx: NemesisContext): Promise<void> {
  while (ctx.remainingMs() > 15_000) {
    await ctx.sleep(ctx.random.int(5_000, 10_000));
    const group = ctx.random.pick(ctx.partitionGroups);
    const leader = await findLeader(ctx, group);
    if (leader === undefined) continue;
    const groups = [...new Set([group, ...(await groupsLedBy(ctx, leader))])];
    await killAndRestart(ctx, leader, { downMs: ctx.random.int(3_000, 5_000), groups });
  }
}

chaosTest({
  id: "T02b",
  title: "leader kill churn, ack=leader (loss reported, bounded)",
  tier: "nightly",
  runMs: 45_000,
  cluster: { ack: "leader" },
  check: { enforce: ["I2", "I3", "I5", "I6", "I7", "I10", "I11", "I12", "I13"] },
  nemesis: churn,
  extraChecks: (run) => lossBound(lostPuts(run, TOPIC, ["kill"]), LOSS_WINDOW_MS, TOPIC).findings,
  extraFigures: (run) => lossBound(lostPuts(run, TOPIC, ["kill"]), LOSS_WINDOW_MS, TOPIC).figures,
});

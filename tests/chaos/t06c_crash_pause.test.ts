/**
 * T06c crash-plus-pause, 3 nodes: the sequence that split NATS 2.12.1 (nats-server #7567) in its
 * smallest form. One node (the leader of the most partitions) loses power, dropping its unsynced
 * tail (power_loss.ts: truncation to the synced length, torn tails, unsynced directory operations
 * undone, new boot id), while the other two are paused (SIGSTOP), so no node is running at the
 * instant of the crash. The crashed node restarts alone and runs for a while with both peers still
 * paused; then the two resume. Three rounds in CI (the order of crash and pause alternates: pause
 * first, or crash first and pause within 50 ms), with W1 and W5 running throughout.
 * CI: fsync=always. Nightly adds fsync=interval:200, where guarantee 4 says a single machine
 * crash is survivable: the crashed node comes back in repair mode and must not vote or lead until
 * it is caught up.
 * Must hold: I1-I13 (no lost acknowledged write, no two leaders in one term, replicas identical
 * after heal).
 */
import { chaosTest } from "../cluster/chaos_test.ts";
import { othersThan } from "../cluster/nemesis.ts";
import { chaosEnv, type NemesisContext, REPAIR_BOUND_MS } from "../cluster/scenario.ts";

const stepMsAt = (scale: number) => scale > 1 ? 15_000 : 5_000;

/** The node leading the most partition groups now (ties: random). */
async function busiestLeader(ctx: NemesisContext): Promise<number> {
  const leaders = await ctx.leaders.partitionLeaders();
  const counts = ctx.random.shuffle(ctx.cluster.nodes.map((node) => node.id))
    .map((id) => ({ id, led: [...leaders.values()].filter((leader) => leader === id).length }));
  counts.sort((a, b) => b.led - a.led);
  return counts[0].id;
}

async function crashPause(ctx: NemesisContext): Promise<void> {
  const stepMs = stepMsAt(ctx.scale);
  const rounds = ctx.scale > 1 ? 5 : 3;
  await ctx.sleep(2_000);
  for (let round = 0; round < rounds && ctx.remainingMs() > 2 * stepMs + 2_000; round++) {
    const crasher = await busiestLeader(ctx);
    const paused = othersThan(ctx, crasher);
    const pauseFirst = round % 2 === 0;
    const fault = ctx.begin("crash-pause", {
      nodes: [crasher, ...paused],
      groups: [...ctx.partitionGroups],
      detail: `power-cut ${crasher}, pause ${paused.join(",")} (${
        pauseFirst ? "pause first" : "crash first"
      })`,
    });
    const random = ctx.random.fork(`crash-pause ${round}`);
    if (pauseFirst) {
      for (const id of paused) ctx.cluster.pause(id);
      await ctx.cluster.powerCut(crasher, random);
    } else {
      const cut = ctx.cluster.powerCut(crasher, random);
      await ctx.sleep(random.int(0, 50));
      for (const id of paused) ctx.cluster.pause(id);
      await cut;
    }
    await ctx.cluster.start(crasher);
    await ctx.sleep(stepMs);
    for (const id of ctx.random.shuffle(paused)) ctx.cluster.resume(id);
    ctx.end(fault);
    const ms = await ctx.waitForService(30_000);
    ctx.log(`round ${round + 1}: service ${ms ?? "never (30 s)"} ms after the resume`);
    if (ms === null) ctx.finding(`round ${round + 1}: no service within 30 s of the resume`);
    await ctx.sleep(stepMs / 2);
  }
}

for (
  const [variant, fsync, tier] of [["", "always", "ci"], ["b", "interval:200", "nightly"]] as const
) {
  chaosTest({
    id: `T06c${variant}`,
    title: `crash-plus-pause, 3 nodes, fsync=${fsync}`,
    tier,
    runMs: 40_000,
    mixed: true,
    cluster: { fsync },
    nemesis: crashPause,
    repairBoundMs: stepMsAt(chaosEnv().scale) + REPAIR_BOUND_MS,
  });
}

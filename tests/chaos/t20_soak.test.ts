/**
 * T20 mixed chaos soak, as the Jepsen NATS harness runs it: every period a random non-empty set
 * of faults, or nothing (one time in four), held for 60% of the period and then healed, while W1,
 * W5 (keyed, local and XA transactional producers, broadcast and plain readers), the consumer group
 * and the offset probe run, and a new topic is created every few seconds (W4). The faults:
 * - kill: SIGKILL a node, start it again at the end of the window;
 * - pause: SIGSTOP a node for the window;
 * - partition: cut one node off (both directions), or one direction of one link;
 * - delay: 50-200 ms (+-50%) on every link of one node;
 * - clock: one node's wall clock +/- 1 min .. 7 days;
 * - power: a power cut of one node (unsynced writes lost, plan 1.3), restarted at the end;
 * - slow-fsync: 50-400 ms added to every fsync of one node;
 * - tail-cut: a node killed, 1-4096 bytes cut off the active segment of one of its partitions
 *   (an interrupted append), restarted at the end.
 * Node faults of one period fall on one node, link faults on any. The period is 12 s at
 * CHAOS_SCALE=1 (the CI tier's short variant: 60 s of chaos) and 60 s from CHAOS_SCALE=5 on; the
 * nightly soak is `CHAOS_TIER=nightly CHAOS_SCALE=18` (18 minutes, one seed a night).
 * Must hold: I1-I15 (every anomaly name: 0). Reports: the faults chosen per period.
 */
import { chaosTest } from "../cluster/chaos_test.ts";
import { cutTail, segmentFiles } from "../cluster/corruption.ts";
import { blackhole, delay } from "../cluster/link_proxy.ts";
import { setClockOffset, setFsyncDelay } from "../cluster/node_faults.ts";
import { othersThan } from "../cluster/nemesis.ts";
import { type NemesisContext, TOPIC } from "../cluster/scenario.ts";
import { ClientPool, produceOnce } from "../cluster/workloads.ts";

const FAULTS = [
  "kill",
  "pause",
  "partition",
  "delay",
  "clock",
  "power",
  "slow-fsync",
  "tail-cut",
] as const;
type Fault = (typeof FAULTS)[number];
/** Faults that stop or restart the period's node: at most one of them per period. */
const STOPPING = new Set<Fault>(["kill", "pause", "power", "tail-cut"]);

/** A random non-empty set of faults, at most one of them stopping the node. */
function pickFaults(ctx: NemesisContext): Fault[] {
  for (let tries = 0; tries < 20; tries++) {
    const chosen = FAULTS.filter(() => ctx.random.chance(0.3));
    const stopping = chosen.filter((fault) => STOPPING.has(fault));
    if (chosen.length === 0) continue;
    if (stopping.length <= 1) return chosen;
    const keep = ctx.random.pick(stopping);
    return chosen.filter((fault) => !STOPPING.has(fault) || fault === keep);
  }
  return [ctx.random.pick(FAULTS)];
}

/** Applies `faults` to `node` (and links) for `holdMs`, then heals all of them. */
async function applyFor(
  ctx: NemesisContext,
  faults: readonly Fault[],
  node: number,
  holdMs: number,
): Promise<void> {
  const window = ctx.begin(`soak:${faults.join("+")}`, {
    nodes: [node],
    groups: [...ctx.partitionGroups],
    detail: `node ${node} for ${holdMs} ms`,
  });
  let restart = false;
  for (const fault of faults) {
    switch (fault) {
      case "kill":
        await ctx.cluster.kill(node);
        restart = true;
        break;
      case "pause":
        ctx.cluster.pause(node);
        break;
      case "partition": {
        const [a, b] = ctx.random.shuffle(ctx.cluster.nodes.map((entry) => entry.id));
        if (ctx.random.chance(0.5)) ctx.network.partition([[a], othersThan(ctx, a)], blackhole());
        else ctx.network.setLink(a, b, blackhole());
        break;
      }
      case "delay": {
        const ms = ctx.random.int(50, 200);
        for (const other of othersThan(ctx, node)) {
          ctx.network.setBoth(node, other, delay(ms, ms / 2));
        }
        break;
      }
      case "clock": {
        const sign = ctx.random.chance(0.5) ? 1 : -1;
        const span = ctx.random.pick([60_000, 3_600_000, 7 * 86_400_000]);
        setClockOffset(ctx.cluster, node, sign * span);
        break;
      }
      case "power":
        await ctx.cluster.powerCut(node, ctx.random.fork(`power ${window.id}`));
        restart = true;
        break;
      case "slow-fsync":
        setFsyncDelay(ctx.cluster, node, ctx.random.int(50, 400));
        break;
      case "tail-cut": {
        await ctx.cluster.kill(node);
        restart = true;
        const partition = ctx.random.int(0, ctx.partitions - 1);
        const active = segmentFiles(ctx.cluster.node(node).dataDir, TOPIC, partition).at(-1);
        if (active && active.size > 0) {
          const bytes = ctx.random.int(1, Math.min(4096, active.size));
          ctx.log(cutTail(active.path, bytes));
          ctx.cluster.resetDurability(node);
        }
        break;
      }
    }
  }
  await ctx.sleep(holdMs);
  ctx.network.healAll();
  if (ctx.cluster.node(node).state === "paused") ctx.cluster.resume(node);
  setClockOffset(ctx.cluster, node, 0);
  setFsyncDelay(ctx.cluster, node, 0);
  if (restart && ctx.cluster.node(node).state === "stopped") await ctx.cluster.start(node);
  ctx.end(window);
}

/** W4 in the soak: a topic created (by its first put) every 4 s until `stop`. */
async function createTopics(ctx: NemesisContext, stop: { done: boolean }): Promise<number> {
  const pool = new ClientPool(ctx.cluster);
  let created = 0;
  for (let round = 0; round < 1_000 && !stop.done; round++) {
    const running = ctx.cluster.running();
    if (running.length > 0) {
      const outcome = await produceOnce(pool, {
        node: ctx.random.pick(running),
        topic: `soak${round}`,
        partition: ctx.random.int(0, ctx.partitions - 1),
        value: `w4-${round}`,
      });
      if (outcome.kind === "ok") created++;
    }
    await ctx.sleep(4_000);
  }
  pool.close();
  return created;
}

async function soak(ctx: NemesisContext): Promise<void> {
  const periodMs = ctx.scale >= 5 ? 60_000 : 12_000;
  const stop = { done: false };
  const topics = createTopics(ctx, stop);
  const periods: string[] = [];
  for (let period = 0; period < 1_000 && ctx.remainingMs() > periodMs; period++) {
    const started = Date.now();
    if (ctx.random.chance(0.25)) {
      periods.push("nothing");
    } else {
      const faults = pickFaults(ctx);
      const node = ctx.random.pick(ctx.cluster.nodes.map((entry) => entry.id));
      periods.push(`${faults.join("+")}@n${node}`);
      await applyFor(ctx, faults, node, Math.round(periodMs * 0.6));
    }
    await ctx.sleep(Math.max(0, periodMs - (Date.now() - started)));
  }
  stop.done = true;
  ctx.figures.topicsCreated = await topics;
  ctx.figures.periods = periods;
}

chaosTest({
  id: "T20",
  title: "mixed chaos soak",
  tier: "nightly",
  runMs: 60_000,
  mixed: true,
  groups: "optional",
  nemesis: soak,
});

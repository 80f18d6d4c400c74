/**
 * T13 disk full and fsync errors on cluster members (NATS #5382: a stream wiped after a full
 * disk). Every node's data directory is moved onto its own 64 MiB tmpfs (a rolling restart at
 * the start; needs root, skipped with the reason otherwise), then a filler file leaves 256 KiB:
 * 1. fill the node leading the fewest partitions (a follower) for 8 s, free it;
 * 2. fill the node leading the most partitions (a leader) for 8 s, free it;
 * 3. fill two of the three nodes for 6 s, free them;
 * 4. make the next fsync of the busiest leader fail with EIO (METAQ_TEST_FSYNC_CONTROL).
 * Nightly (CHAOS_SCALE >= 3): 30, 30 and 20 s per fill. The data moves back off the tmpfs before
 * the heal, so the final drain and dumps read the same files.
 * Must hold: I1-I13 (nothing acknowledged is lost, nothing deleted, no crash loop: an exit is
 * unexpected unless the harness caused it); after space returns every node catches up (I11
 * after heal). Reports failed and indeterminate produces per phase and the time from space
 * freed to caught up.
 */
import { test } from "bun:test";
import { chaosTest } from "../cluster/chaos_test.ts";
import type { TraceEvent } from "../cluster/history.ts";
import { leastLeadingNode } from "../cluster/nemesis.ts";
import {
  failNextFsync,
  fsyncFailurePending,
  SmallDisk,
  smallDiskSkipReason,
} from "../cluster/node_faults.ts";
import type { FinishedRun, NemesisContext } from "../cluster/scenario.ts";

const DISK_BYTES = 64 * 1024 * 1024;
const LEAVE_BYTES = 256 * 1024;
const CATCH_UP_BOUND_MS = 30_000;

/** The node leading the most partition groups now (ties: random). */
async function busiestLeader(ctx: NemesisContext): Promise<number> {
  const leaders = await ctx.leaders.partitionLeaders();
  const counts = ctx.random.shuffle(ctx.cluster.nodes.map((node) => node.id))
    .map((id) => ({ id, led: [...leaders.values()].filter((leader) => leader === id).length }));
  counts.sort((a, b) => b.led - a.led);
  return counts[0].id;
}

/** Per group, where `node`'s log ends by its trace (last append or truncation). */
function logEnds(events: readonly TraceEvent[], node: number): Map<string, number> {
  const ends = new Map<string, number>();
  for (const event of events) {
    if (event.node !== node) continue;
    if (event.event === "append" || event.event === "truncate") ends.set(event.group, event.to);
  }
  return ends;
}

/** Ms until each of `nodes` holds every partition group up to the others' commit, or null. */
async function catchUp(ctx: NemesisContext, nodes: readonly number[]): Promise<number | null> {
  const from = Date.now();
  ctx.traces.poll();
  const targets = new Map<string, number>();
  for (const event of ctx.traces.events) {
    if (event.event !== "commit" || !ctx.partitionGroups.includes(event.group)) continue;
    if (nodes.includes(event.node)) continue;
    targets.set(event.group, Math.max(targets.get(event.group) ?? 0, event.offset));
  }
  for (let poll = 0; poll < CATCH_UP_BOUND_MS / 250; poll++) {
    ctx.traces.poll();
    const behind = nodes.some((node) => {
      const ends = logEnds(ctx.traces.events, node);
      return [...targets].some(([group, commit]) => (ends.get(group) ?? 0) < commit);
    });
    if (!behind) return Date.now() - from;
    await ctx.sleep(250);
  }
  return null;
}

async function fillFor(
  ctx: NemesisContext,
  disks: Map<number, SmallDisk>,
  nodes: number[],
  ms: number,
  kind: string,
): Promise<void> {
  const fault = ctx.begin(kind, { nodes, detail: `${LEAVE_BYTES} bytes left for ${ms} ms` });
  for (const node of nodes) disks.get(node)!.fill(LEAVE_BYTES);
  await ctx.sleep(ms);
  for (const node of nodes) disks.get(node)!.free();
  ctx.end(fault);
  const ms2 = await catchUp(ctx, nodes);
  ctx.log(`${kind} on ${nodes.join(",")}: caught up ${ms2 ?? "never"} ms after space returned`);
  (ctx.figures.catchUpMs as Record<string, number | null>)[`${kind} ${nodes.join(",")}`] = ms2;
  if (ms2 === null) {
    ctx.finding(
      `${kind}: node(s) ${
        nodes.join(",")
      } not caught up ${CATCH_UP_BOUND_MS} ms after space returned`,
    );
  }
}

async function diskFaults(ctx: NemesisContext): Promise<void> {
  const long = ctx.scale >= 3;
  const disks = new Map<number, SmallDisk>();
  ctx.figures.catchUpMs = {};
  try {
    const setup = ctx.begin("move-to-small-disks", {
      nodes: ctx.cluster.nodes.map((node) => node.id),
    });
    for (const node of ctx.cluster.nodes) {
      const disk = new SmallDisk(ctx.cluster, node.id, DISK_BYTES);
      disks.set(node.id, disk);
      await ctx.cluster.stop(node.id);
      disk.attach();
      await ctx.cluster.start(node.id);
      if (await ctx.waitForService(20_000) === null) {
        ctx.finding(`no service after moving node ${node.id}`);
      }
      await ctx.sleep(2_000);
    }
    ctx.end(setup);
    const follower = await leastLeadingNode(ctx);
    await fillFor(ctx, disks, [follower], long ? 30_000 : 8_000, "disk-full-follower");
    await ctx.sleep(2_000);
    const leader = await busiestLeader(ctx);
    await fillFor(ctx, disks, [leader], long ? 30_000 : 8_000, "disk-full-leader");
    await ctx.sleep(2_000);
    const two = ctx.random.shuffle(ctx.cluster.nodes.map((node) => node.id)).slice(0, 2);
    await fillFor(ctx, disks, two, long ? 20_000 : 6_000, "disk-full-two");
    await ctx.sleep(2_000);
    const victim = await busiestLeader(ctx);
    const fault = ctx.begin("fsync-eio", { nodes: [victim], detail: "next fsync fails with EIO" });
    failNextFsync(ctx.cluster, victim);
    for (let poll = 0; poll < 40 && fsyncFailurePending(ctx.cluster, victim); poll++) {
      await ctx.sleep(100);
    }
    ctx.end(fault);
    const ms = await catchUp(ctx, [victim]);
    ctx.log(`after the EIO on node ${victim}: caught up ${ms ?? "never"} ms`);
    await ctx.sleep(3_000);
  } finally {
    // Back to the run directory, so the heal, drain and dumps read ordinary files.
    for (const [id, disk] of disks) {
      try {
        if (ctx.cluster.node(id).state !== "stopped") await ctx.cluster.stop(id);
        disk.detach();
        await ctx.cluster.start(id);
      } catch (error) {
        ctx.log(`moving node ${id} back failed: ${(error as Error).message}`);
        disk.abandon();
      }
    }
  }
}

function perPhase(run: FinishedRun): Record<string, { failed: number; indeterminate: number }> {
  const out: Record<string, { failed: number; indeterminate: number }> = {};
  for (const fault of run.input.faults) {
    const until = fault.until ?? Infinity;
    const ops = run.input.history.filter((op) =>
      op.op === "produce" && op.t >= fault.t && op.t <= until
    );
    out[`${fault.id} ${fault.kind}`] = {
      failed: ops.filter((op) => op.kind === "fail").length,
      indeterminate: ops.filter((op) => op.kind === "info").length,
    };
  }
  return out;
}

const skip = smallDiskSkipReason();
if (skip !== undefined) {
  console.log(`[chaos] T13 disk full and fsync errors: skipped: ${skip}`);
  test.skip(`T13 disk full and fsync errors (skipped: ${skip})`, () => {});
} else {
  chaosTest({
    id: "T13",
    title: "disk full and fsync errors",
    runMs: 70_000,
    mixed: true,
    nemesis: diskFaults,
    extraFigures: (run) => ({ producesPerPhase: perPhase(run) }),
  });
}

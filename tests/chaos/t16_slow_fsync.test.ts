/**
 * T16 slow fsync and CPU stalls (leader flapping, etcd #7617/#7970, hashicorp/raft #494): through
 * the broker's test-build fsync hook (`METAQ_TEST_FSYNC_CONTROL`), add 50, 200 and 600 ms to every
 * fsync of one follower (the node leading the fewest partitions), then of the node leading the
 * most; then SIGSTOP a follower for 300 ms every 2 s (GC-like stalls). Each step lasts 5 s in CI,
 * 5 s x CHAOS_SCALE otherwise (CHAOS_SCALE=4: the plan's 20 s per delay).
 * Must hold: I1-I13; no election in a group the slow or stalled node follows during its fault
 * (it is behind, not gone); at most one election per minute per group it leads while its fsyncs
 * are slow. Reports elections per phase and produce p99 per phase.
 */
import { chaosTest } from "../cluster/chaos_test.ts";
import type { FaultEvent } from "../cluster/history.ts";
import { groupsLedBy, leastLeadingNode } from "../cluster/nemesis.ts";
import { setFsyncDelay } from "../cluster/node_faults.ts";
import type { FinishedRun, NemesisContext } from "../cluster/scenario.ts";
import { electionsBetween } from "../cluster/trace_figures.ts";

const DELAYS_MS = [50, 200, 600] as const;
const STALL_MS = 300;
const STALL_EVERY_MS = 2_000;

/** The node leading the most partition groups now (ties: random). */
async function mostLeadingNode(ctx: NemesisContext): Promise<number> {
  const leaders = await ctx.leaders.partitionLeaders();
  const counts = ctx.random.shuffle(ctx.cluster.nodes.map((node) => node.id))
    .map((id) => ({ id, led: [...leaders.values()].filter((leader) => leader === id).length }));
  counts.sort((a, b) => b.led - a.led);
  return counts[0].id;
}

/** The groups `node` leads and the ones it follows, in the fault's detail, for the checks. */
async function roles(ctx: NemesisContext, node: number): Promise<string> {
  const led = await groupsLedBy(ctx, node);
  const followed = ctx.partitionGroups.filter((group) => !led.includes(group));
  return `leads ${led.join(",") || "-"}; follows ${followed.join(",") || "-"}`;
}

async function slowDisks(ctx: NemesisContext): Promise<void> {
  // 5 s per step in CI; CHAOS_SCALE stretches every step (4: the plan's 20 s per delay).
  const stepMs = 5_000 * ctx.scale;
  const stallPhaseMs = 5_000 * ctx.scale;
  await ctx.sleep(2_000);
  for (const who of ["follower", "leader"] as const) {
    const node = who === "follower" ? await leastLeadingNode(ctx) : await mostLeadingNode(ctx);
    for (const delay of DELAYS_MS) {
      if (ctx.remainingMs() < stepMs + 2_000) break;
      const fault = ctx.begin(`slow-fsync-${who}`, {
        nodes: [node],
        detail: `${delay} ms; ${await roles(ctx, node)}`,
      });
      setFsyncDelay(ctx.cluster, node, delay);
      await ctx.sleep(stepMs);
      setFsyncDelay(ctx.cluster, node, 0);
      ctx.end(fault);
    }
    await ctx.sleep(1_500);
  }
  if (ctx.remainingMs() < stallPhaseMs) return;
  const node = await leastLeadingNode(ctx);
  const fault = ctx.begin("cpu-stalls", {
    nodes: [node],
    detail: `${STALL_MS} ms every ${STALL_EVERY_MS} ms; ${await roles(ctx, node)}`,
  });
  const end = Date.now() + stallPhaseMs;
  for (let stall = 0; stall < 100 && Date.now() < end; stall++) {
    ctx.cluster.pause(node);
    await ctx.sleep(STALL_MS);
    ctx.cluster.resume(node);
    await ctx.sleep(STALL_EVERY_MS - STALL_MS);
  }
  ctx.end(fault);
}

function groupsFrom(fault: FaultEvent, role: "leads" | "follows"): string[] {
  const match = new RegExp(`${role} ([^;]*)`).exec(fault.detail ?? "");
  return !match || match[1] === "-" ? [] : match[1].split(",");
}

interface Phase {
  readonly fault: string;
  readonly node: number;
  readonly ms: number;
  /** Elections in groups the node followed: must be none. */
  readonly followedElections: string[];
  /** Elections in groups it led. */
  readonly ledElections: string[];
  readonly produceP99Ms: number | null;
}

function phases(run: FinishedRun): Phase[] {
  return run.input.faults.filter((fault) => fault.until !== undefined).map((fault) => {
    const until = fault.until!;
    const latencies = produceLatencies(run, fault.t, until);
    return {
      fault: `${fault.kind} ${fault.detail?.split(";")[0]}`,
      node: fault.nodes![0],
      ms: until - fault.t,
      // One heartbeat round after the fault ends still counts: an election it caused shows late.
      followedElections: electionsBetween(
        run.input.traces,
        fault.t,
        until + 1_600,
        groupsFrom(fault, "follows"),
      ),
      ledElections: electionsBetween(run.input.traces, fault.t, until, groupsFrom(fault, "leads")),
      produceP99Ms: latencies.length === 0
        ? null
        : latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))],
    };
  });
}

/** Latencies (ms) of produces acknowledged that were invoked in [from, to], sorted. */
function produceLatencies(run: FinishedRun, from: number, to: number): number[] {
  const invoked = new Map<string, number>();
  const out: number[] = [];
  for (const op of run.input.history) {
    if (op.op !== "produce") continue;
    const key = `${op.client}/${op.value}`;
    if (op.kind === "invoke") invoked.set(key, op.t);
    else if (op.kind === "ok") {
      const start = invoked.get(key);
      if (start !== undefined && start >= from && start <= to) out.push(op.t - start);
    }
  }
  return out.sort((a, b) => a - b);
}

chaosTest({
  id: "T16",
  title: "slow fsync and CPU stalls",
  runMs: 45_000,
  mixed: true,
  nemesis: slowDisks,
  extraChecks: (run) => {
    const out: string[] = [];
    for (const phase of phases(run)) {
      if (phase.followedElections.length > 0) {
        out.push(
          `${phase.fault} on node ${phase.node}: elections in groups it followed: ${
            phase.followedElections.join(", ")
          }`,
        );
      }
      const perGroup = new Map<string, number>();
      for (const key of phase.ledElections) {
        const group = key.split(" ")[0];
        perGroup.set(group, (perGroup.get(group) ?? 0) + 1);
      }
      const allowed = Math.max(1, Math.ceil(phase.ms / 60_000));
      for (const [group, count] of perGroup) {
        if (count > allowed) {
          out.push(`${phase.fault} on node ${phase.node}: ${count} elections of ${group}`);
        }
      }
    }
    return out;
  },
  extraFigures: (run) => ({ phases: phases(run) }),
});

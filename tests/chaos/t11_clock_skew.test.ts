/**
 * T11 clock skew and jumps, through the broker's test-build wall clock (`METAQ_TEST_CLOCK_FILE`,
 * lib/clock_offset.ts; the monotonic clock that drives Raft timers is untouched, by design). 64 KiB
 * segments; a topic `retained` with time retention of 1 h checked every 2 s (`deleteWhen`), fed
 * by its own producer so sealed segments keep appearing (written into every node's server.ini by
 * a rolling restart at the start, which then also sets the skews):
 * 1. node offsets -5 min, 0, +5 min for the rest of the run;
 * 2. the node leading the fewest partitions jumps +7 days for 8 s (20 s nightly), and back;
 * 3. the node leading the most partitions jumps +7 days for 8 s (20 s nightly), and back.
 * Must hold: I1-I13 on the chaos topic (whose default retention is 168 h: a leader that trusted
 * a clock 7 days ahead would delete every sealed segment); no election inside a jump window; no
 * segment of `retained` deleted on any node (nothing there is an hour old). Reports elections
 * during the skew windows and bytes of `retained` deleted early (target 0 for both).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { chaosTest } from "../cluster/chaos_test.ts";
import { segmentFiles } from "../cluster/corruption.ts";
import { leastLeadingNode } from "../cluster/nemesis.ts";
import { setClockOffset } from "../cluster/node_faults.ts";
import { type FinishedRun, type NemesisContext, TOPIC } from "../cluster/scenario.ts";
import { electionsBetween } from "../cluster/trace_figures.ts";
import { ClientPool, produceOnce } from "../cluster/workloads.ts";

const RETAINED = "retained";
const MINUTE_MS = 60_000;
const WEEK_MS = 7 * 24 * 60 * MINUTE_MS;
// Once any [topic=...] section exists only named topics are accepted: the chaos topic gets one.
const RETAINED_INI =
  `\n[topic=${TOPIC}]\n\n[topic=${RETAINED}]\nnumPartitions=1\ndeletePolicy=delete,1h\n` +
  `deleteWhen=*/2 * * * * ?\n`;

/** The node leading the most partition groups now (ties: random). */
async function busiestLeader(ctx: NemesisContext): Promise<number> {
  const leaders = await ctx.leaders.partitionLeaders();
  const counts = ctx.random.shuffle(ctx.cluster.nodes.map((node) => node.id))
    .map((id) => ({ id, led: [...leaders.values()].filter((leader) => leader === id).length }));
  counts.sort((a, b) => b.led - a.led);
  return counts[0].id;
}

/** Puts to `retained` from two sequential loops until `stop` is set; returns the acked count. */
function feedRetained(ctx: NemesisContext, stop: { done: boolean }): Promise<number> {
  const pool = new ClientPool(ctx.cluster);
  let acked = 0;
  const loop = async (producer: number) => {
    for (let seq = 0; seq < 1_000_000 && !stop.done; seq++) {
      const running = ctx.cluster.running();
      if (running.length === 0) {
        await ctx.sleep(200);
        continue;
      }
      const node = running[seq % running.length];
      const outcome = await produceOnce(pool, {
        node,
        topic: RETAINED,
        partition: 0,
        value: `r${producer}-${seq}`,
      });
      if (outcome.kind === "ok") acked++;
      else await ctx.sleep(100);
    }
  };
  return Promise.all([loop(0), loop(1)]).then(() => {
    pool.close();
    return acked;
  });
}

async function skew(ctx: NemesisContext): Promise<void> {
  const jumpMs = ctx.scale >= 3 ? 20_000 : 8_000;
  const ids = ctx.cluster.nodes.map((node) => node.id);
  const base = new Map(ids.map((id, index) => [id, [-5 * MINUTE_MS, 0, 5 * MINUTE_MS][index % 3]]));
  // The retained topic's section, and the start-up skews, by a rolling restart.
  const setup = ctx.begin("configure-restart", { nodes: ids, detail: "retained topic, skews" });
  for (const id of ids) {
    await ctx.cluster.stop(id);
    fs.appendFileSync(path.join(ctx.cluster.node(id).dir, "server.ini"), RETAINED_INI);
    setClockOffset(ctx.cluster, id, base.get(id)!);
    await ctx.cluster.start(id);
    if (await ctx.waitForService(20_000) === null) ctx.finding(`no service after restarting ${id}`);
    await ctx.sleep(2_000); // as T17: let it catch up before the next one stops
  }
  ctx.end(setup);
  const stop = { done: false };
  const feeding = feedRetained(ctx, stop);
  ctx.figures.offsetsMs = Object.fromEntries(base);
  await ctx.sleep(6_000);
  for (const who of ["follower", "leader"] as const) {
    if (ctx.remainingMs() < jumpMs + 3_000) break;
    const node = who === "follower" ? await leastLeadingNode(ctx) : await busiestLeader(ctx);
    const fault = ctx.begin(`clock-jump-${who}`, {
      nodes: [node],
      detail: `+7 days on node ${node} (base ${base.get(node)} ms) for ${jumpMs} ms`,
    });
    setClockOffset(ctx.cluster, node, base.get(node)! + WEEK_MS);
    await ctx.sleep(jumpMs);
    setClockOffset(ctx.cluster, node, base.get(node)!);
    ctx.end(fault);
    await ctx.sleep(3_000);
  }
  stop.done = true;
  ctx.figures.retainedAcked = await feeding;
}

/** Per node: the first offset of `retained`-0 still on disk (0 unless retention deleted). */
function retainedStarts(run: FinishedRun, dirs: Map<number, string>): Record<number, number> {
  const out: Record<number, number> = {};
  for (const [node, dataDir] of dirs) {
    const segments = segmentFiles(dataDir, RETAINED, 0);
    out[node] = segments[0]?.start ?? 0;
  }
  void run;
  return out;
}

function jumpElections(run: FinishedRun): string[] {
  return run.input.faults
    .filter((fault) => fault.kind.startsWith("clock-jump") && fault.until !== undefined)
    .flatMap((fault) =>
      electionsBetween(run.input.traces, fault.t, fault.until! + 1_600).map((election) =>
        `${fault.kind} node ${fault.nodes![0]}: ${election}`
      )
    );
}

const dataDirs = new Map<number, string>();

chaosTest({
  id: "T11",
  title: "clock skew and jumps",
  runMs: 50_000,
  mixed: true,
  cluster: { segmentBytes: 64 * 1024 },
  nemesis: async (ctx) => {
    for (const node of ctx.cluster.nodes) dataDirs.set(node.id, node.dataDir);
    await skew(ctx);
  },
  extraChecks: (run) => {
    const out = jumpElections(run).map((line) => `election during a clock jump: ${line}`);
    for (const [node, start] of Object.entries(retainedStarts(run, dataDirs))) {
      if (start > 0) out.push(`node ${node} deleted ${start} bytes of ${RETAINED}-0 early`);
    }
    return out;
  },
  extraFigures: (run) => ({
    electionsDuringJumps: jumpElections(run),
    retainedLogStart: retainedStarts(run, dataDirs),
  }),
});

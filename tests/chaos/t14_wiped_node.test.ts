/**
 * T14 a wiped node and its replacement (braft #292, nats-server #2792: a node back on an empty
 * disk must not vote or count as the member it was). The node leading the fewest partitions is
 * SIGKILLed, its data directory deleted, and started again with the same command line; for 5 s
 * it must stay a stranger (no role or append in its trace: its peers ignore it) while the other
 * two keep serving. Then the operator runs `metaq cluster replace --node-id N` against another
 * node; the new member catches up (each of its copies in repair mode until caught up) and votes.
 * Nightly does it twice, to two different nodes.
 * Must hold: I1-I13; the replace command succeeds; the wiped node never becomes candidate or
 * leader of a group before its copy of that group left repair mode; it catches up within 60 s.
 * Reports catch-up time per replacement and the longest unavailability.
 */
import * as fs from "node:fs";
import { chaosTest } from "../cluster/chaos_test.ts";
import type { TraceEvent } from "../cluster/history.ts";
import { leastLeadingNode, othersThan } from "../cluster/nemesis.ts";
import { metaqCli } from "../cluster/node_faults.ts";
import type { FinishedRun, NemesisContext } from "../cluster/scenario.ts";

const STRANGER_MS = 5_000;
const CATCH_UP_BOUND_MS = 60_000;

/** Per group, the end of the last append `node` traced (from `since`). */
function appendEnds(
  events: readonly TraceEvent[],
  node: number,
  since: number,
): Map<string, number> {
  const ends = new Map<string, number>();
  for (const event of events) {
    if (event.node !== node || event.t < since) continue;
    if (event.event === "append") ends.set(event.group, event.to);
    else if (event.event === "truncate") ends.set(event.group, event.to);
  }
  return ends;
}

/** Per partition group, the highest commit any node other than `node` traced. */
function commits(events: readonly TraceEvent[], node: number, groups: readonly string[]) {
  const out = new Map<string, number>();
  for (const event of events) {
    if (event.node === node || event.event !== "commit" || !groups.includes(event.group)) continue;
    out.set(event.group, Math.max(out.get(event.group) ?? 0, event.offset));
  }
  return out;
}

async function replaceOne(
  ctx: NemesisContext,
  node: number,
  round: number,
): Promise<number | null> {
  const fault = ctx.begin("wipe-replace", {
    nodes: [node],
    groups: [...ctx.partitionGroups],
    detail: `round ${round + 1}: node ${node} wiped, restarted empty, replaced`,
  });
  await ctx.cluster.kill(node);
  const dataDir = ctx.cluster.node(node).dataDir;
  fs.rmSync(dataDir, { recursive: true, force: true });
  fs.mkdirSync(dataDir, { recursive: true });
  ctx.cluster.resetDurability(node);
  const wipedAt = Date.now();
  await ctx.cluster.start(node);
  await ctx.sleep(STRANGER_MS);
  ctx.traces.poll();
  const early = ctx.traces.events.filter((event) =>
    event.node === node && event.t >= wipedAt &&
    (event.event === "role" || event.event === "append")
  );
  if (early.length > 0) {
    ctx.finding(
      `wiped node ${node} took part before it was replaced: ${JSON.stringify(early.slice(0, 3))}`,
    );
  }
  const other = ctx.random.pick(othersThan(ctx, node));
  const replacedAt = Date.now();
  const outcome = await metaqCli(
    ctx.cluster,
    ["cluster", "replace", "--node-id", String(node), "--broker", ctx.cluster.address(other)],
    30_000,
  );
  ctx.log(
    `cluster replace --node-id ${node} via node ${other}: exit ${outcome.code}: ${
      `${outcome.stdout}${outcome.stderr}`.trim().slice(0, 1000)
    }`,
  );
  if (outcome.code !== 0) ctx.finding(`cluster replace --node-id ${node} exited ${outcome.code}`);
  ctx.traces.poll();
  const targets = commits(ctx.traces.events, node, ctx.partitionGroups);
  let caughtUpMs: number | null = null;
  for (let poll = 0; poll < CATCH_UP_BOUND_MS / 250; poll++) {
    ctx.traces.poll();
    const ends = appendEnds(ctx.traces.events, node, wipedAt);
    if ([...targets].every(([group, commit]) => (ends.get(group) ?? 0) >= commit)) {
      caughtUpMs = Date.now() - replacedAt;
      break;
    }
    await ctx.sleep(250);
  }
  ctx.end(fault);
  ctx.log(`node ${node} caught up ${caughtUpMs ?? "never"} ms after the replace`);
  if (caughtUpMs === null) {
    ctx.finding(`replaced node ${node} did not catch up within ${CATCH_UP_BOUND_MS} ms`);
  }
  return caughtUpMs;
}

async function wipeAndReplace(ctx: NemesisContext): Promise<void> {
  const rounds = ctx.scale > 1 ? 2 : 1;
  const done: number[] = [];
  const caughtUp: (number | null)[] = [];
  await ctx.sleep(4_000);
  for (let round = 0; round < rounds && ctx.remainingMs() > 20_000; round++) {
    let node = await leastLeadingNode(ctx);
    if (done.includes(node)) node = ctx.random.pick(othersThan(ctx, node));
    done.push(node);
    caughtUp.push(await replaceOne(ctx, node, round));
    await ctx.sleep(3_000);
  }
  ctx.figures.catchUpMs = caughtUp;
}

/**
 * Votes too early: a wiped node's candidate or leader role in a group before its copy of that
 * group traced leaving repair mode (when it traced entering it).
 */
function earlyVotes(run: FinishedRun): string[] {
  const out: string[] = [];
  for (const fault of run.input.faults.filter((entry) => entry.kind === "wipe-replace")) {
    const node = fault.nodes![0];
    const entered = new Set<string>();
    for (const event of run.input.traces) {
      if (event.node !== node || event.t < fault.t) continue;
      if (event.event === "repair") {
        if (event.enter) entered.add(event.group);
        else entered.delete(event.group);
      } else if (
        event.event === "role" && event.role !== "follower" && entered.has(event.group)
      ) {
        out.push(
          `node ${node} became ${event.role} of ${event.group} (term ${event.term}) in repair`,
        );
      }
    }
  }
  return out;
}

chaosTest({
  id: "T14",
  title: "wiped node and its replacement",
  runMs: 45_000,
  mixed: true,
  nemesis: wipeAndReplace,
  extraChecks: earlyVotes,
  extraFigures: (run) => ({ unavailabilityMs: run.result.figures.unavailabilityMs }),
});

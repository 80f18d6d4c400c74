/**
 * T12 disk corruption on a stopped minority node, with W1 running on the rest (64 KiB segments so
 * sealed segments exist early). CI subcases, in random order:
 * a. after SIGKILL, cut 1-4096 bytes off the end of an active segment (interrupted append);
 * b. flip 1-8 bits inside a sealed segment of a follower, then ask for a scrub;
 * e. truncate or bit-flip a hard-state file (term/vote);
 * i. after a clean SIGTERM stop, cut the tail of an active segment (corruption, not a torn write);
 * j. truncate or bit-flip a group's leader-epochs file (its terms and voters);
 * k. cut 1-4096 bytes off the end of a sealed segment (a gap inside the log);
 * l. delete a sealed segment (a gap, or the log's first segment gone).
 * Nightly adds g (zero-fill the last 64 KiB of an active segment), and T12d: 5 nodes, R=5, two
 * nodes stopped at once with bits flipped in different sealed segments of one group (plan d).
 * Must hold: I1-I13, zero acknowledged loss. Reports injected vs detected (a repair or
 * truncate traced by the damaged node for the damaged group after the mutation).
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { chaosTest } from "../cluster/chaos_test.ts";
import {
  cutTail,
  deleteFile,
  flipBits,
  hardStateFiles,
  segmentFiles,
  zeroFill,
} from "../cluster/corruption.ts";
import { METAQ_BINARY } from "../cluster/launcher.ts";
import { findLeader, othersThan } from "../cluster/nemesis.ts";
import type { FinishedRun, NemesisContext } from "../cluster/scenario.ts";

async function corrupt(ctx: NemesisContext): Promise<void> {
  const subcases = ctx.random.shuffle(
    ctx.scale > 1 ? ["a", "b", "e", "i", "j", "k", "l", "g"] : ["a", "b", "e", "i", "j", "k", "l"],
  );
  const skipped: string[] = [];
  await ctx.sleep(6_000); // let segments seal
  for (const subcase of subcases) {
    if (ctx.remainingMs() < 4_000) {
      skipped.push(`${subcase}: out of time`);
      continue;
    }
    const done = await mutate(ctx, subcase);
    if (done !== undefined) skipped.push(`${subcase}: ${done}`);
    await ctx.sleep(4_000);
  }
  ctx.figures.skippedSubcases = skipped;
}

/** Stops a node, damages one file as `subcase` says, restarts it. Returns why it was skipped. */
async function mutate(ctx: NemesisContext, subcase: string): Promise<string | undefined> {
  const group = ctx.random.pick(ctx.partitionGroups);
  const partition = Number(group.slice(group.lastIndexOf("-") + 1));
  const leader = await findLeader(ctx, group);
  const node = subcase === "b" && leader !== undefined
    ? ctx.random.pick(othersThan(ctx, leader))
    : ctx.random.pick(ctx.cluster.nodes).id;
  if (subcase === "i") await ctx.cluster.stop(node);
  else await ctx.cluster.kill(node);
  const dataDir = ctx.cluster.node(node).dataDir;
  const segments = segmentFiles(dataDir, ctx.topic, partition);
  const active = segments[segments.length - 1];
  let what: string | undefined;
  let target = group;
  if ((subcase === "a" || subcase === "i") && active && active.size > 0) {
    what = cutTail(active.path, ctx.random.int(1, 4096));
  } else if (subcase === "g" && active && active.size > 0) {
    what = zeroFill(active.path, Math.max(0, active.size - 65_536), 65_536);
  } else if (subcase === "b" && segments.length >= 2) {
    const sealed = ctx.random.pick(segments.slice(0, -1));
    what = flipBits(sealed.path, {
      from: 0,
      to: sealed.size,
      count: ctx.random.int(1, 8),
      random: ctx.random,
    });
  } else if ((subcase === "k" || subcase === "l") && segments.length >= 2) {
    const sealed = ctx.random.pick(segments.slice(0, -1));
    what = subcase === "k"
      ? cutTail(sealed.path, ctx.random.int(1, Math.min(4096, sealed.size)))
      : deleteFile(sealed.path);
  } else if (subcase === "j") {
    const epochs = path.join(dataDir, group, "leader-epochs");
    if (fs.existsSync(epochs) && fs.statSync(epochs).size > 0) {
      what = ctx.random.chance(0.5)
        ? cutTail(epochs, ctx.random.int(1, fs.statSync(epochs).size))
        : flipBits(epochs, {
          from: 0,
          to: fs.statSync(epochs).size,
          count: ctx.random.int(1, 8),
          random: ctx.random,
        });
    }
  } else if (subcase === "e") {
    const files = hardStateFiles(dataDir);
    if (files.length > 0) {
      const file = ctx.random.pick(files);
      target = path.basename(path.dirname(file)) === "data"
        ? "meta"
        : path.basename(path.dirname(file));
      what = ctx.random.chance(0.5) ? cutTail(file, ctx.random.int(1, 64)) : flipBits(file, {
        from: 0,
        to: 1 << 20,
        count: ctx.random.int(1, 8),
        random: ctx.random,
      });
    }
  }
  if (what !== undefined) {
    const fault = ctx.begin(`corrupt-${subcase}`, {
      nodes: [node],
      groups: [target],
      detail: what,
    });
    ctx.cluster.resetDurability(node);
    await ctx.cluster.start(node);
    if (subcase === "b" || subcase === "k") await scrub(ctx, node);
    ctx.end(fault);
    return undefined;
  }
  await ctx.cluster.start(node);
  if (subcase === "e") {
    return `no file under node ${node}'s data dir matches the hard-state name pattern`;
  }
  return subcase === "j"
    ? `no leader-epochs file of ${group} on node ${node}`
    : `no suitable segment of ${group} on node ${node}`;
}

/**
 * Asks the node to scrub (`metaq cluster scrub`): checksums, then its bytes against its peers'
 * copies (a flipped id or flag bit passes checksums). Best effort; run without blocking this
 * process, whose proxies carry the nodes' peer links.
 */
async function scrub(ctx: NemesisContext, node: number): Promise<void> {
  const binary = ctx.cluster.options.binary ?? METAQ_BINARY;
  const outcome = await new Promise<string>((resolve) => {
    execFile(
      binary,
      ["cluster", "scrub", "--broker", ctx.cluster.address(node), "--format", "json"],
      { encoding: "utf8", timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = error ? (error as { code?: number | string }).code ?? "killed" : 0;
        resolve(`exit ${code}: ${`${stdout}${stderr}`.trim().slice(0, 2000)}`);
      },
    );
  });
  ctx.log(`scrub on node ${node}: ${outcome}`);
}

/** Corruptions injected and whether the damaged node traced a repair or truncation after them. */
function detection(run: FinishedRun): { fault: string; detected: boolean }[] {
  return run.input.faults
    .filter((fault) => fault.kind.startsWith("corrupt-"))
    .map((fault) => ({
      fault: `${fault.kind} node ${fault.nodes![0]} ${fault.groups![0]}`,
      detected: run.input.traces.some((event) =>
        event.node === fault.nodes![0] && event.group === fault.groups![0] && event.t >= fault.t &&
        ((event.event === "repair" && event.enter) || event.event === "truncate")
      ),
    }));
}

chaosTest({
  id: "T12",
  title: "disk corruption on a stopped minority",
  runMs: 70_000,
  mixed: true,
  cluster: { segmentBytes: 64 * 1024 },
  nemesis: corrupt,
  extraFigures: (run) => {
    const found = detection(run);
    return {
      injected: found.length,
      detected: found.filter((entry) => entry.detected).length,
      corruptions: found,
    };
  },
});

/**
 * Plan d: two of five nodes stopped at once, each with 1-8 bits flipped in a different sealed
 * segment of one group, restarted and scrubbed; twice. A majority of intact copies remains, so
 * nothing acknowledged may be lost and both damaged copies must be refilled (I11 after heal).
 */
async function corruptMinority(ctx: NemesisContext): Promise<void> {
  await ctx.sleep(8_000); // let segments seal
  for (let round = 0; round < 2 && ctx.remainingMs() > 15_000; round++) {
    const group = ctx.random.pick(ctx.partitionGroups);
    const partition = Number(group.slice(group.lastIndexOf("-") + 1));
    const nodes = ctx.random.shuffle(ctx.cluster.nodes.map((node) => node.id)).slice(0, 2);
    for (const node of nodes) await ctx.cluster.kill(node);
    const done: string[] = [];
    const used = new Set<number>();
    for (const node of nodes) {
      const sealed = segmentFiles(ctx.cluster.node(node).dataDir, ctx.topic, partition)
        .slice(0, -1).filter((segment) => !used.has(segment.start));
      if (sealed.length === 0) continue;
      const target = ctx.random.pick(sealed);
      used.add(target.start);
      done.push(flipBits(target.path, {
        from: 0,
        to: target.size,
        count: ctx.random.int(1, 8),
        random: ctx.random,
      }));
    }
    const fault = ctx.begin("corrupt-d", { nodes, groups: [group], detail: done.join("; ") });
    for (const node of nodes) {
      ctx.cluster.resetDurability(node);
      await ctx.cluster.start(node);
    }
    for (const node of nodes) await scrub(ctx, node);
    ctx.end(fault);
    if (done.length < 2) ctx.log(`round ${round + 1}: only ${done.length} segment(s) to damage`);
    await ctx.sleep(6_000);
  }
}

chaosTest({
  id: "T12d",
  title: "different segments corrupted on 2 of 5 nodes",
  tier: "nightly",
  runMs: 45_000,
  mixed: true,
  cluster: { nodeCount: 5, replicas: 5, segmentBytes: 64 * 1024 },
  nemesis: corruptMinority,
});

/**
 * The fault harness against the real `dist/metaq`, as plain single-node brokers (the cluster has
 * not landed): the launcher's process control, and whole scenario runs (workloads, faults,
 * drains, replica dumps, checker) that must pass on a healthy broker and must fail when the
 * harness itself destroys acknowledged data.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { MetaqClient } from "../../lib/client/client.ts";
import { cutTail, segmentFiles } from "../cluster/corruption.ts";
import { memoryGroupOps } from "../cluster/group_ops.ts";
import { Cluster } from "../cluster/launcher.ts";
import { killAndRestart, pauseFor } from "../cluster/nemesis.ts";
import { Random } from "../cluster/random.ts";
import { type ChaosEnv, chaosEnv, runScenario, TOPIC } from "../cluster/scenario.ts";
import { tempDir } from "../support/temp_dir.ts";

const env = (): ChaosEnv => ({ ...chaosEnv(), scale: 1, keepFailedRuns: true });

test(
  "the launcher starts, kills, pauses, restarts and stops a plain node, signalling only its own child",
  async () => {
    await using temp = tempDir("metaq-launcher-");
    const lines: string[] = [];
    await using cluster = await Cluster.start({
      dir: temp.path,
      nodeCount: 1,
      replicated: false,
      partitions: 2,
      random: new Random(11),
      log: (line) => lines.push(line),
    });
    const node = cluster.node(1);
    expect(node.state).toBe("running");
    expect(cluster.args(1, "F")).toEqual([
      "serve",
      "--port",
      String(node.clientPort),
      "--data",
      node.dataDir,
      "--partitions",
      "2",
      "--no-http",
      "--ports-file",
      "F",
    ]);
    const client = new MetaqClient({ brokers: [cluster.address(1)], reconnectAttemptsMax: 3 });
    const first = await client.put(TOPIC, 1, { payload: new TextEncoder().encode("a-0 x") });
    cluster.pause(1);
    expect(node.state).toBe("paused");
    cluster.resume(1);
    await cluster.kill(1);
    expect(node.state).toBe("stopped");
    await cluster.start(1);
    const second = await client.put(TOPIC, 1, { payload: new TextEncoder().encode("a-1 x") });
    expect(second.offset).toBeGreaterThan(first.offset);
    await cluster.stop(1);
    expect(cluster.exits.map((exit) => [exit.signal ?? exit.code, exit.expected])).toEqual([
      ["SIGKILL", true],
      [0, true],
    ]);
    expect(fs.readFileSync(node.bootIdPath, "utf8")).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-/);
    expect(lines.some((line) => line.includes("SIGKILL"))).toBe(true);
    await cluster.start(1);
    const acked = await client.put(TOPIC, 0, { payload: new TextEncoder().encode("a-2 x") });
    client.close();
    // Every broker writes the sync journal when asked: a power cut keeps what was acknowledged.
    await cluster.powerCut(1, new Random(3));
    await cluster.start(1);
    const after = new MetaqClient({
      brokers: [`127.0.0.1:${node.clientPort}`],
      reconnectAttemptsMax: 3,
    });
    const reply = await after.get({
      topic: TOPIC,
      group: "g",
      partition: 0,
      offset: acked.offset,
      maxSize: 4096,
    });
    after.close();
    expect(reply.kind).toBe("records");
    await cluster.stop(1);
  },
  60_000,
);

test("a healthy plain broker under kills and pauses passes every invariant (W1r)", async () => {
  const outcome = await runScenario({
    id: "H01",
    title: "harness pipeline on a plain broker",
    runMs: 5000,
    replicated: false,
    cluster: { partitions: 3, segmentBytes: 16 * 1024 },
    workload: { producers: 6, ratePerSecond: 150, resend: true },
    check: { resend: true },
    nemesis: async (ctx) => {
      await ctx.sleep(1000);
      await killAndRestart(ctx, 1, { downMs: 400, groups: [...ctx.partitionGroups] });
      await ctx.sleep(500);
      await pauseFor(ctx, [1], 300);
    },
  }, env());
  console.log(outcome.summary);
  expect(outcome.result.violations).toEqual([]);
  expect(outcome.findings).toEqual([]);
  expect(outcome.valid).toBe(true);
  const f = outcome.result.figures;
  expect(f.acked).toBeGreaterThan(100);
  expect(f.lost.total).toBe(0);
  expect(f.failoverMs.count).toBe(3);
  const result = JSON.parse(fs.readFileSync(outcome.resultFile, "utf8"));
  expect(result).toMatchObject({ test: "H01", valid: true });
}, 120_000);

test(
  "consumer-group and offset-probe workloads run and are checked (stand-in group ops)",
  async () => {
    const outcome = await runScenario({
      id: "H02",
      title: "consumer groups on a plain broker",
      runMs: 4000,
      replicated: false,
      cluster: { partitions: 2 },
      workload: { producers: 4, ratePerSecond: 100 },
      groups: true,
      groupOps: memoryGroupOps(2),
      check: { deliveryGroups: ["chaos-group"] },
      nemesis: async (ctx) => {
        await ctx.sleep(1500);
        await ctx.consumers!.restart(0, 200);
      },
    }, env());
    console.log(outcome.summary);
    expect(outcome.result.violations).toEqual([]);
    expect(outcome.valid).toBe(true);
    expect(outcome.result.figures.deliveries).toBeGreaterThan(50);
  },
  120_000,
);

test("the harness catches acknowledged data destroyed on disk", async () => {
  const outcome = await runScenario({
    id: "H03",
    title: "planted loss on a plain broker",
    runMs: 3000,
    replicated: false,
    cluster: { partitions: 1 },
    workload: { producers: 2, ratePerSecond: 100 },
    nemesis: async (ctx) => {
      await ctx.sleep(1500);
      const fault = ctx.begin("cut-tail", { nodes: [1] });
      await ctx.cluster.kill(1);
      const [active] = segmentFiles(ctx.cluster.node(1).dataDir, ctx.topic, 0).slice(-1);
      ctx.log(cutTail(active.path, 2000));
      ctx.cluster.resetDurability(1);
      await ctx.cluster.start(1);
      ctx.end(fault);
    },
  }, { ...env(), keepFailedRuns: false });
  console.log(outcome.summary);
  expect(outcome.valid).toBe(false);
  expect(outcome.result.failed).toContain("I1");
  expect(outcome.result.figures.lost.total).toBeGreaterThan(0);
  expect(path.basename(outcome.resultFile)).toBe(`H03-${outcome.seed}.json`);
}, 120_000);

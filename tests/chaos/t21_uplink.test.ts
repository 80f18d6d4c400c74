/**
 * T21 the edge uplink under link flaps, inside the campaign: the chaos cluster is the hub (W1 and
 * W5 keep running on it) and an edge broker (`metaq serve --uplink`, 2 partitions of `readings`,
 * 16 KiB segments deleted once a second when forwarded) reaches it through proxies of its own,
 * one per hub node. A producer writes steadily to the edge while the nemesis, until the end:
 * cuts, blackholes (longer than the uplink's request timeout: the batch in flight is in doubt) or
 * slows the uplink; SIGKILLs or power-cuts the edge (unsynced writes lost, plan 1.3); kills the
 * hub leader of a `readings` partition; or cuts a hub node off from the other hub nodes.
 * After the faults and the drain of the edge's backlog (bounded 90 s), per partition at the hub:
 * every put the edge acknowledged is there exactly once; the origins (`metaq-origin`) chain the
 * edge's log record after record from offset 0 to its end (nothing skipped, repeated or
 * reordered, although the edge deleted forwarded segments); no edge process died on its own.
 * Must also hold: I1-I13 on the chaos topic. Reports: acknowledged at the edge, edge restarts,
 * drain time.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { MetaqClient } from "../../lib/client/client.ts";
import { decodeRecords, splitAttribute } from "../../lib/protocol/record.ts";
import { parseOriginAttribute } from "../../lib/protocol/uplink_origin.ts";
import { chaosTest } from "../cluster/chaos_test.ts";
import { Cluster } from "../cluster/launcher.ts";
import { blackhole, cut, delay, LinkProxy, pass, throttle } from "../cluster/link_proxy.ts";
import { findLeader, othersThan, partitionFor } from "../cluster/nemesis.ts";
import type { NemesisContext } from "../cluster/scenario.ts";

const EDGE_TOPIC = "readings";
const EDGE_PARTITIONS = 2;
const SITE = "edge-chaos";
const DRAIN_MS = 90_000;
const RECORD_HEADER_BYTES = 20;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

const EDGE_INI = `[system]
maxSegmentSize=16384
deletePolicy=delete,1s
deleteWhen=* * * * * ?
[uplink]
site=${SITE}
batchBytes=8192
retryMinMs=50
retryMaxMs=500
requestTimeoutMs=2000
`;

/** Sequential puts `e<partition>-<n>` to the edge, alternating partitions, until `stop`. */
async function produceToEdge(
  edge: Cluster,
  stop: { done: boolean },
  acked: string[][],
): Promise<void> {
  const client = new MetaqClient({
    brokers: [edge.address(1)],
    routeToLeaders: false,
    requestTimeoutMs: 3_000,
    reconnectDelaysMs: [50, 100, 200],
    reconnectAttemptsMax: 3,
  });
  for (let n = 0; n < 1_000_000 && !stop.done; n++) {
    const partition = n % EDGE_PARTITIONS;
    const payload = `e${partition}-${n}`;
    try {
      await client.put(EDGE_TOPIC, partition, { payload: encoder.encode(payload) });
      acked[partition].push(payload);
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  client.close();
}

/** Whether the edge says every partition is at the hub (`stats uplink`), polled up to `ms`. */
async function drained(edge: Cluster, ms: number): Promise<boolean> {
  const client = new MetaqClient({ brokers: [edge.address(1)], routeToLeaders: false });
  try {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const lines = (await client.stats("uplink").catch(() => "")).split("\r\n");
      const partitions = lines.filter((line) => line.startsWith(`${EDGE_TOPIC}-`));
      if (
        partitions.length === EDGE_PARTITIONS &&
        partitions.every((line) => / state caught-up .* lag_bytes 0 /.test(line))
      ) return true;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    return false;
  } finally {
    client.close();
  }
}

/** Each partition's end at the edge (`stats offsets`: max_offset). */
async function edgeEnds(edge: Cluster): Promise<number[]> {
  const client = new MetaqClient({ brokers: [edge.address(1)], routeToLeaders: false });
  try {
    const lines = (await client.stats("offsets")).split("\r\n");
    return Array.from({ length: EDGE_PARTITIONS }, (_, partition) => {
      const line = lines.find((text) => text.startsWith(`${EDGE_TOPIC} part ${partition} `)) ?? "";
      return Number(/max_offset (\d+)/.exec(line)?.[1] ?? -1);
    });
  } finally {
    client.close();
  }
}

/** Every record of `readings`-`partition` at the hub: payload and origin offset. */
async function hubRecords(
  ctx: NemesisContext,
  partition: number,
): Promise<{ payload: string; origin?: { site: string; partition: number; offset: number } }[]> {
  const client = new MetaqClient({
    brokers: ctx.cluster.running().map((id) => ctx.cluster.address(id)),
    requestTimeoutMs: 5_000,
  });
  const out: { payload: string; origin?: { site: string; partition: number; offset: number } }[] =
    [];
  try {
    let offset = 0;
    for (let round = 0; round < 100_000; round++) {
      const reply = await client.get({
        topic: EDGE_TOPIC,
        group: "t21",
        partition,
        offset,
        maxSize: 1 << 20,
      });
      if (reply.kind === "moved") {
        if (reply.offset <= offset) break;
        offset = reply.offset;
        continue;
      }
      if (reply.kind !== "records") break;
      const records = decodeRecords(reply.bytes, offset);
      if (records.length === 0) break;
      for (const record of records) {
        const { attribute, payload } = splitAttribute(record.flag, record.data);
        const parsed = attribute === undefined ? undefined : parseOriginAttribute(attribute);
        out.push({ payload: decoder.decode(payload), origin: parsed?.origin });
      }
      const last = records[records.length - 1];
      offset = last.offset + RECORD_HEADER_BYTES + last.length;
    }
  } finally {
    client.close();
  }
  return out;
}

/** The hub holds each edge partition's log whole, once, in order, with every acknowledged put. */
function checkHub(
  partition: number,
  records: { payload: string; origin?: { site: string; partition: number; offset: number } }[],
  acked: readonly string[],
  end: number,
): string[] {
  const problems: string[] = [];
  let expected = 0;
  for (const record of records) {
    const origin = record.origin;
    if (!origin || origin.site !== SITE || origin.partition !== partition) {
      problems.push(`${record.payload} at the hub has origin ${JSON.stringify(origin)}`);
      break;
    }
    if (origin.offset !== expected) {
      problems.push(
        `${EDGE_TOPIC}-${partition}: origin offset ${origin.offset} where ${expected} was next ` +
          `(${
            origin.offset < expected ? "repeated or reordered" : "skipped"
          }) at ${record.payload}`,
      );
      break;
    }
    expected += RECORD_HEADER_BYTES + encoder.encode(record.payload).length;
  }
  if (problems.length === 0 && expected !== end) {
    problems.push(
      `${EDGE_TOPIC}-${partition}: the hub has the edge's log up to ${expected}, not ${end}`,
    );
  }
  const present = new Set(records.map((record) => record.payload));
  if (present.size !== records.length) {
    problems.push(`${EDGE_TOPIC}-${partition}: ${records.length - present.size} payloads twice`);
  }
  const missing = acked.filter((payload) => !present.has(payload));
  if (missing.length > 0) {
    problems.push(
      `${EDGE_TOPIC}-${partition}: ${missing.length} puts acknowledged at the edge missing at ` +
        `the hub (first ${missing.slice(0, 3).join(", ")})`,
    );
  }
  return problems;
}

async function uplinkFlaps(ctx: NemesisContext): Promise<void> {
  const proxies: LinkProxy[] = [];
  for (const node of ctx.cluster.nodes) {
    proxies.push(
      await LinkProxy.listen({
        name: `uplink to ${node.id}`,
        port: 0,
        targetPort: node.clientPort,
        random: ctx.random.fork(`uplink proxy ${node.id}`),
      }),
    );
  }
  const link = (mode: Parameters<LinkProxy["setMode"]>[1]) => {
    for (const proxy of proxies) proxy.setMode("both", mode);
  };
  const dir = path.join(ctx.cluster.options.dir, "edge");
  fs.mkdirSync(dir, { recursive: true });
  const iniPath = path.join(dir, "edge.ini");
  fs.writeFileSync(iniPath, EDGE_INI);
  const edge = await Cluster.start({
    dir,
    nodeCount: 1,
    replicated: false,
    partitions: EDGE_PARTITIONS,
    extraArgs: [
      "--config",
      iniPath,
      "--uplink",
      proxies.map((p) => `127.0.0.1:${p.port}`).join(","),
    ],
    binary: ctx.cluster.options.binary,
    random: ctx.random.fork("edge"),
    log: (line) => ctx.log(`edge: ${line}`),
  });
  const acked: string[][] = Array.from({ length: EDGE_PARTITIONS }, () => []);
  const stop = { done: false };
  const kinds: string[] = [];
  try {
    const producing = produceToEdge(edge, stop, acked);
    for (let round = 0; round < 200 && ctx.remainingMs() > 12_000; round++) {
      const kind = ctx.random.pick([
        "cut",
        "blackhole",
        "slow",
        "edge-kill",
        "edge-power",
        "hub-leader-kill",
        "hub-isolate",
      ]);
      kinds.push(kind);
      const fault = ctx.begin(`uplink:${kind}`, { nodes: kind.startsWith("hub") ? [] : [0] });
      switch (kind) {
        case "cut":
          link(cut());
          await ctx.sleep(ctx.random.int(500, 2_000));
          break;
        case "blackhole":
          link(blackhole());
          await ctx.sleep(ctx.random.int(2_500, 4_000));
          break;
        case "slow":
          link(ctx.random.chance(0.5) ? delay(80, 40) : throttle(64 * 1024));
          await ctx.sleep(ctx.random.int(1_500, 3_000));
          break;
        case "edge-kill":
          await edge.kill(1, "SIGKILL");
          await ctx.sleep(ctx.random.int(100, 500));
          await edge.start(1);
          break;
        case "edge-power":
          await edge.powerCut(1, ctx.random.fork(`edge power ${round}`));
          await edge.start(1);
          break;
        case "hub-leader-kill": {
          const group = `${EDGE_TOPIC}-${ctx.random.int(0, EDGE_PARTITIONS - 1)}`;
          const leader = await findLeader(ctx, group, 2_000);
          if (leader !== undefined) {
            await ctx.cluster.kill(leader);
            await ctx.sleep(ctx.random.int(1_000, 3_000));
            await ctx.cluster.start(leader);
          }
          break;
        }
        case "hub-isolate": {
          const node = ctx.random.pick(ctx.cluster.nodes.map((entry) => entry.id));
          await partitionFor(ctx, [[node], othersThan(ctx, node)], 6_000, { kind: "hub-isolate" });
          break;
        }
      }
      link(pass());
      ctx.end(fault);
      await ctx.sleep(ctx.random.int(300, 1_000));
    }
    stop.done = true;
    await producing;
    link(pass());
    const drainStarted = Date.now();
    const done = await drained(edge, DRAIN_MS);
    ctx.figures.edgeAcked = acked.map((list) => list.length);
    ctx.figures.edgeRestarts = edge.node(1).incarnation - 1;
    ctx.figures.uplinkFaults = kinds;
    ctx.figures.drainMs = done ? Date.now() - drainStarted : null;
    if (!done) ctx.finding(`the edge's backlog did not reach the hub within ${DRAIN_MS} ms`);
    const ends = await edgeEnds(edge);
    for (let partition = 0; partition < EDGE_PARTITIONS; partition++) {
      const records = await hubRecords(ctx, partition);
      for (const problem of checkHub(partition, records, acked[partition], ends[partition])) {
        ctx.finding(`uplink: ${problem}`);
      }
    }
    for (const exit of edge.exits.filter((entry) => !entry.expected)) {
      ctx.finding(`the edge exited on its own: code ${exit.code} signal ${exit.signal}`);
    }
    for (const entry of edge.assertionLines().slice(0, 5)) ctx.finding(`edge: ${entry.line}`);
  } finally {
    stop.done = true;
    await edge.teardown();
    for (const proxy of proxies) await proxy.close();
  }
}

chaosTest({
  id: "T21",
  title: "edge uplink under link flaps",
  tier: "nightly",
  runMs: 60_000,
  mixed: true,
  nemesis: uplinkFlaps,
});

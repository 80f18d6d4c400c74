/**
 * Edge uplink through the compiled binary: an edge broker (`metaq serve --uplink`) and a hub
 * (one broker, or a 3-node cluster), the link between them crossing the launcher's client
 * proxies. A producer writes steadily to the edge while the test flaps the link (cut,
 * blackhole, slow), SIGKILLs the edge, cuts its power (unsynced writes lost, plan 1.3), and
 * kills hub nodes. Then everything heals and the test checks, per partition:
 *
 * - every message acknowledged at the edge is at the hub exactly once;
 * - the hub holds the edge's log exactly: origins (in the attribute) start at offset 0 and each
 *   follows the previous record, so nothing was skipped, duplicated or reordered;
 * - the edge deleted (by retention, every second) nothing the hub had not acknowledged: every
 *   offset it deleted is at the hub.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { MetaqClient } from "../../lib/client/client.ts";
import { decodeRecords, splitAttribute } from "../../lib/protocol/record.ts";
import { parseOriginAttribute } from "../../lib/protocol/uplink_origin.ts";
import { Cluster } from "../cluster/launcher.ts";
import { blackhole, cut, delay, type LinkMode, pass, throttle } from "../cluster/link_proxy.ts";
import { Random } from "../cluster/random.ts";
import { tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const TOPIC = "readings";
const PARTITIONS = 2;
const SITE = "edge-e2e";
const decoder = new TextDecoder();

interface Scenario {
  readonly hubNodes: 1 | 3;
  readonly seed: number;
}

/** What the producer saw acknowledged, per partition, in the order it sent them. */
type Acked = string[][];

async function runScenario(scenario: Scenario): Promise<void> {
  const random = new Random(scenario.seed);
  const lines: string[] = [];
  const log = (line: string) => lines.push(`${new Date().toISOString()} ${line}`);
  await using temp = tempDir("metaq-uplink-e2e-");
  await using hub = await Cluster.start({
    dir: path.join(temp.path, "hub"),
    nodeCount: scenario.hubNodes,
    replicated: scenario.hubNodes > 1,
    partitions: PARTITIONS,
    random: random.fork("hub"),
    log: (line) => log(`hub: ${line}`),
  });
  const hubAddresses = hub.nodes.map((node) => hub.address(node.id));
  const edgeIni = path.join(temp.path, "edge.ini");
  fs.writeFileSync(
    edgeIni,
    `[system]
maxSegmentSize=16384
deletePolicy=delete,1s
deleteWhen=* * * * * ?
[uplink]
site=${SITE}
batchBytes=8192
retryMinMs=50
retryMaxMs=500
requestTimeoutMs=2000
`,
  );
  await using edge = await Cluster.start({
    dir: path.join(temp.path, "edge"),
    nodeCount: 1,
    replicated: false,
    partitions: PARTITIONS,
    extraArgs: ["--config", edgeIni, "--uplink", hubAddresses.join(",")],
    random: random.fork("edge"),
    log: (line) => log(`edge: ${line}`),
  });
  try {
    const producer = startProducer(edge.address(1));
    await faults({ hub, edge, random: random.fork("faults"), log });
    const acked = await producer.stop();
    for (const node of hub.nodes) hub.network.setClient(node.id, pass());
    log(`acknowledged ${acked.map((list) => list.length).join("+")} messages`);
    const drainStarted = performance.now();
    await waitForDrain(edge.address(1), 90_000);
    console.log(
      `uplink e2e (${scenario.hubNodes} hub node(s)): ${
        acked.map((list) => list.length).join("+")
      } messages acknowledged at the edge, ${edge.node(1).incarnation - 1} edge restarts, ` +
        `drained ${(performance.now() - drainStarted).toFixed(0)} ms after the faults`,
    );
    await checkHub(hub, edge.address(1), acked);
    expect(hub.assertionLines()).toEqual([]);
    expect(edge.assertionLines()).toEqual([]);
    expect([...hub.exits, ...edge.exits].filter((exit) => !exit.expected)).toEqual([]);
  } catch (error) {
    console.log(lines.slice(-80).join("\n"));
    for (const file of [edge.node(1).logPath, ...hub.nodes.map((node) => node.logPath)]) {
      const text = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
      console.log(`--- ${file}\n${text.slice(-3000)}`);
    }
    throw error;
  }
}

/** The faults of the run: link flaps, edge kills and power cuts, hub node kills. */
async function faults(
  parts: { hub: Cluster; edge: Cluster; random: Random; log: (line: string) => void },
): Promise<void> {
  const { hub, edge, random, log } = parts;
  const link = (mode: LinkMode) => {
    for (const node of hub.nodes) hub.network.setClient(node.id, mode);
  };
  // Every kind several times (the link flaps most), in an order the seed shuffles.
  const schedule = random.shuffle([
    ...Array(3).fill("cut"),
    ...Array(3).fill("blackhole"),
    ...Array(2).fill("slow"),
    ...Array(3).fill("edge-power"),
    "edge-kill",
    ...Array(2).fill("hub-kill"),
  ] as FaultKind[]);
  for (let round = 0; round < schedule.length; round++) {
    const kind = schedule[round];
    log(`round ${round}: ${kind}`);
    switch (kind) {
      case "cut":
        link(cut());
        await pause(random.int(500, 2000));
        break;
      case "blackhole":
        // Longer than the uplink's request timeout: the batch in flight is in doubt.
        link(blackhole());
        await pause(random.int(2500, 4000));
        break;
      case "slow":
        link(random.chance(0.5) ? delay(80, 40) : throttle(64 * 1024));
        await pause(random.int(1500, 3000));
        break;
      case "edge-kill":
        await edge.kill(1, "SIGKILL");
        await pause(random.int(100, 500));
        await edge.start(1);
        break;
      case "edge-power":
        await edge.powerCut(1, random);
        await edge.start(1);
        break;
      case "hub-kill": {
        const node = random.pick(hub.nodes).id;
        await hub.kill(node, "SIGKILL");
        await pause(random.int(500, 1500));
        await hub.start(node);
        break;
      }
    }
    link(pass());
    await pause(random.int(300, 1000));
  }
}

type FaultKind = "cut" | "blackhole" | "slow" | "edge-kill" | "edge-power" | "hub-kill";

/** Puts `p<partition>-<n>` to the edge, one partition after the other, until stopped. */
function startProducer(address: string) {
  const acked: Acked = Array.from({ length: PARTITIONS }, () => []);
  let stopping = false;
  const client = new MetaqClient({
    brokers: [address],
    requestTimeoutMs: 3000,
    reconnectDelaysMs: [50, 100, 200],
    reconnectAttemptsMax: 3,
  });
  const run = async () => {
    let sent = 0;
    // Bounded: it ends when stopped, and a run is bounded by the faults' rounds.
    while (!stopping && sent < 1_000_000) {
      const batch = Array.from({ length: 8 }, (_, index) => {
        const partition = (sent + index) % PARTITIONS;
        return { partition, payload: `p${partition}-${sent + index}` };
      });
      sent += batch.length;
      const results = await Promise.allSettled(
        batch.map(({ partition, payload }) =>
          client.put(TOPIC, partition, { payload: new TextEncoder().encode(payload) })
        ),
      );
      results.forEach((result, index) => {
        if (result.status === "fulfilled") acked[batch[index].partition].push(batch[index].payload);
      });
      if (results.some((result) => result.status === "rejected")) await pause(50);
    }
  };
  const running = run();
  return {
    async stop(): Promise<Acked> {
      stopping = true;
      await running;
      client.close();
      return acked;
    },
  };
}

/** Waits until the edge says every partition is at the hub (`stats uplink`). */
async function waitForDrain(edgeAddress: string, timeoutMs: number): Promise<void> {
  const client = new MetaqClient({ brokers: [edgeAddress] });
  try {
    await waitFor("the edge's backlog at the hub", async () => {
      const lines = (await client.stats("uplink").catch(() => "")).split("\r\n");
      const partitions = lines.filter((line) => line.startsWith(`${TOPIC}-`));
      return partitions.length === PARTITIONS &&
        partitions.every((line) => / state caught-up .* lag_bytes 0 /.test(line));
    }, { timeoutMs, everyMs: 250 });
  } finally {
    client.close();
  }
}

/** Every message of `topic`-`partition` at a hub node: origin and payload. */
async function hubMessages(address: string, partition: number) {
  const client = new MetaqClient({ brokers: [address] });
  const found: {
    offset: number;
    payload: string;
    origin: ReturnType<typeof parseOriginAttribute>;
  }[] = [];
  try {
    let offset = 0;
    // Each round reads at least one record or stops; bounded besides.
    for (let round = 0; round < 100_000; round++) {
      const reply = await client.get({
        topic: TOPIC,
        group: "check",
        partition,
        offset,
        maxSize: 1 << 20,
      });
      if (reply.kind === "moved") {
        offset = reply.offset;
        continue;
      }
      if (reply.kind !== "records") break;
      const records = decodeRecords(reply.bytes, offset);
      if (records.length === 0) break;
      for (const record of records) {
        const { attribute, payload } = splitAttribute(record.flag, record.data);
        found.push({
          offset: record.offset,
          payload: decoder.decode(payload),
          origin: attribute === undefined ? undefined : parseOriginAttribute(attribute),
        });
      }
      const last = records[records.length - 1];
      offset = last.offset + 20 + last.length;
    }
  } finally {
    client.close();
  }
  return found;
}

async function checkHub(hub: Cluster, edgeAddress: string, acked: Acked): Promise<void> {
  const address = `127.0.0.1:${hub.node(1).clientPort}`;
  const ends = await edgeEnds(edgeAddress);
  for (let partition = 0; partition < PARTITIONS; partition++) {
    const messages = await hubMessages(address, partition);
    // The hub holds the edge's log whole: origins chain from offset 0, record after record.
    let expectedOffset = 0;
    for (const message of messages) {
      expect(message.origin?.origin).toMatchObject({
        site: SITE,
        topic: TOPIC,
        partition,
        offset: expectedOffset,
      });
      expectedOffset += 20 + new TextEncoder().encode(message.payload).length;
    }
    const payloads = messages.map((message) => message.payload);
    expect(new Set(payloads).size).toBe(payloads.length);
    // Source order: the producer's numbers only grow within a partition.
    const numbers = payloads.map((payload) => Number(payload.split("-")[1]));
    expect(numbers.every((n, index) => index === 0 || n > numbers[index - 1])).toBe(true);
    const present = new Set(payloads);
    const missing = acked[partition].filter((payload) => !present.has(payload));
    expect(missing).toEqual([]);
    // ...up to the end of the edge's log.
    expect(expectedOffset).toBe(ends[partition]);
  }
}

/** Each partition's end at the edge (`stats offsets`: max_offset). */
async function edgeEnds(edgeAddress: string): Promise<number[]> {
  const client = new MetaqClient({ brokers: [edgeAddress] });
  try {
    const lines = (await client.stats("offsets")).split("\r\n");
    return Array.from({ length: PARTITIONS }, (_, partition) => {
      const line = lines.find((text) => text.startsWith(`${TOPIC} part ${partition} `)) ?? "";
      return Number(/max_offset (\d+)/.exec(line)?.[1] ?? -1);
    });
  } finally {
    client.close();
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

test(
  "an edge forwards to one hub exactly once across link flaps, SIGKILL and power cuts",
  async () => {
    await runScenario({ hubNodes: 1, seed: 1601 });
  },
  240_000,
);

test("an edge forwards to a 3-node hub cluster exactly once across faults", async () => {
  await runScenario({ hubNodes: 3, seed: 1602 });
}, 300_000);

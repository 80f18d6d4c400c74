/**
 * Delayed messages through the compiled binary, killed in the middle of delivering them: the
 * broker SIGKILLs itself right after a batch is appended to its partition and before that is
 * recorded in `__delay-0` (METAQ_TEST_DELAY_CRASH_AFTER_FIRINGS, a test-only hook), alone, then
 * with a power cut on top (tests/cluster/power_loss.ts), and as the leader of `__delay-0` on a
 * 3-node cluster. Every acknowledged message must reach its partition exactly once, with its
 * id, never before its time, in delivery-time order; on the cluster a cron schedule publishing
 * every second must publish each second once through the failovers.
 */
import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import process from "node:process";
import { parseScheduledAttribute } from "../../lib/protocol/delayed.ts";
import { decodeRecords, splitAttribute } from "../../lib/protocol/record.ts";
import { Cluster } from "../cluster/launcher.ts";
import { Random } from "../cluster/random.ts";
import { delayLine } from "../support/delayed.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const CRASH_ENV = "METAQ_TEST_DELAY_CRASH_AFTER_FIRINGS";
const TOPIC = "delayed";
const PARTITIONS = 2;
const MESSAGES = 120;

afterEach(() => {
  delete process.env[CRASH_ENV];
});

interface Sent {
  readonly id: bigint;
  readonly partition: number;
  readonly deliverAtMs: number;
}

interface Delivered {
  readonly id: bigint;
  readonly scheduledAtMs: number;
  /** When this test first read it (so it was readable then). */
  readonly seenAtMs: number;
}

async function connect(cluster: Cluster, id: number): Promise<RawSocket> {
  const [host, port] = cluster.address(id).split(":");
  return await RawSocket.connect(Number(port), host);
}

/** Sends MESSAGES delayed messages due from `startMs` on, spread over `spanMs`. */
async function sendAll(socket: RawSocket, startMs: number, spanMs: number): Promise<Sent[]> {
  const sent: Sent[] = [];
  // Pipelined, in a shuffled order of delivery times.
  for (let i = 0; i < MESSAGES; i++) {
    const partition = i % PARTITIONS;
    const at = startMs + Math.floor((((i * 37) % MESSAGES) / MESSAGES) * spanMs);
    socket.write(
      delayLine({ topic: TOPIC, partition, body: `m${i}`, when: String(at), opaque: i }),
    );
  }
  for (let i = 0; i < MESSAGES; i++) {
    const partition = i % PARTITIONS;
    const reply = await socket.readFrame(15_000);
    expect(`${reply.header} ${reply.body.toString()}`).toStartWith("result 200 ");
    const [id, replyPartition, , deliverAtMs] = reply.body.toString().split(" ");
    expect(Number(replyPartition)).toBe(partition);
    sent.push({ id: BigInt(id), partition, deliverAtMs: Number(deliverAtMs) });
  }
  return sent;
}

/** Every delivered message of a partition, read with `get` from its start. */
function deliveredIn(socket: RawSocket, partition: number): Promise<Delivered[]> {
  return scheduledIn(socket, TOPIC, partition);
}

/** Every message of `topic`-`partition` with its scheduled time, read with `get`. */
async function scheduledIn(
  socket: RawSocket,
  topic: string,
  partition: number,
): Promise<Delivered[]> {
  const found: Delivered[] = [];
  let offset = 0;
  for (let round = 0; round < 100; round++) {
    socket.write(`get ${topic} g ${partition} ${offset} 1048576 7\r\n`);
    const reply = await socket.readFrame(10_000);
    const seenAtMs = Date.now();
    if (!reply.header.startsWith("value")) break;
    const records = decodeRecords(new Uint8Array(reply.body), offset);
    if (records.length === 0) break;
    for (const record of records) {
      const { attribute } = splitAttribute(record.flag, record.data);
      const scheduled = attribute === undefined ? undefined : parseScheduledAttribute(attribute);
      expect(scheduled?.scheduled.id).toBe(record.id);
      found.push({ id: record.id, scheduledAtMs: scheduled!.scheduled.scheduledAtMs, seenAtMs });
    }
    const last = records[records.length - 1];
    offset = last.offset + 20 + last.length;
  }
  return found;
}

/** Polls node `id` until every sent message is delivered; checks once, in order, not early. */
async function expectAllDeliveredOnce(
  cluster: Cluster,
  id: number | (() => Promise<number>),
  sent: readonly Sent[],
) {
  let delivered: Delivered[][] = [];
  await waitFor("every acknowledged delayed message", async () => {
    try {
      using socket = await connect(cluster, typeof id === "number" ? id : await id());
      delivered = [];
      for (let partition = 0; partition < PARTITIONS; partition++) {
        const found = await deliveredIn(socket, partition);
        // Never readable before its time (the broker and this test share the clock).
        for (const message of found) {
          expect(message.seenAtMs).toBeGreaterThanOrEqual(message.scheduledAtMs);
        }
        delivered.push(found);
      }
      return delivered.flat().length >= sent.length;
    } catch (error) {
      if (String(error).includes("expect(")) throw error;
      return false; // a node still starting or electing
    }
  }, { timeoutMs: 30_000, everyMs: 100 });
  for (let partition = 0; partition < PARTITIONS; partition++) {
    const ids = delivered[partition].map((message) => message.id);
    const expected = sent.filter((message) => message.partition === partition);
    expect(new Set(ids).size).toBe(ids.length); // exactly once
    expect([...ids].sort()).toEqual(expected.map((message) => message.id).sort());
    const times = delivered[partition].map((message) => message.scheduledAtMs);
    expect(times).toEqual([...times].sort((a, b) => a - b));
  }
}

/** Runs `body`; when it fails, prints the end of every node's log first (for diagnosis). */
async function withNodeLogs(cluster: Cluster, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    for (const node of cluster.nodes) {
      const lines = fs.readFileSync(node.logPath, "utf8").split("\n").slice(-30);
      console.log(`---- node ${node.id} (${node.state})\n${lines.join("\n")}`);
    }
    throw error;
  }
}

async function startSingle(dir: string, seed: number): Promise<Cluster> {
  return await Cluster.start({
    dir,
    nodeCount: 1,
    replicated: false,
    partitions: PARTITIONS,
    random: new Random(seed),
    log: () => {},
  });
}

test(
  "a broker SIGKILLed between a delivery's append and its record delivers every message once after restart",
  async () => {
    await using temp = tempDir("metaq-delayed-kill-");
    process.env[CRASH_ENV] = "3";
    await using cluster = await startSingle(temp.path, 17);
    delete process.env[CRASH_ENV];
    const sent = await sendAll(await connect(cluster, 1), Date.now() + 1000, 3000);
    const exit = await cluster.node(1).exited;
    expect(exit?.signal).toBe("SIGKILL");
    await cluster.start(1);
    await expectAllDeliveredOnce(cluster, 1, sent);
  },
  60_000,
);

test(
  "a power cut in the middle of deliveries loses no acknowledged delayed message and doubles none",
  async () => {
    await using temp = tempDir("metaq-delayed-power-");
    await using cluster = await startSingle(temp.path, 18);
    const sent = await sendAll(await connect(cluster, 1), Date.now() + 1000, 3000);
    // Cut while deliveries are under way: a third of the messages are in their partitions.
    await waitFor("a third delivered", async () => {
      using socket = await connect(cluster, 1);
      const first = await deliveredIn(socket, 0);
      const second = await deliveredIn(socket, 1);
      return first.length + second.length >= MESSAGES / 3;
    }, { timeoutMs: 15_000, everyMs: 10 });
    const changes = await cluster.powerCut(1, new Random(19));
    console.log(`power cut: ${changes.length} change(s) to unsynced data`);
    await cluster.start(1);
    await expectAllDeliveredOnce(cluster, 1, sent);
  },
  60_000,
);

test(
  "on a 3-node cluster the delivering leader's SIGKILL leaves every message delivered once, and a cron schedule's every second once",
  async () => {
    await using temp = tempDir("metaq-delayed-cluster-");
    process.env[CRASH_ENV] = "3";
    await using cluster = await Cluster.start({
      dir: temp.path,
      nodeCount: 3,
      replicated: true,
      partitions: PARTITIONS,
      random: new Random(20),
      log: () => {},
    });
    await withNodeLogs(cluster, async () => {
      delete process.env[CRASH_ENV];
      await waitFor("a writer of __delay-0", async () => {
        try {
          using socket = await connect(cluster, 1);
          socket.write("delayed status - 1\r\n");
          return (await socket.readFrame(5000)).header.startsWith("result 200 ");
        } catch {
          return false;
        }
      }, { timeoutMs: 20_000, everyMs: 200 });
      // A cron schedule publishing every second runs through the same failovers.
      const spec = JSON.stringify({
        cron: "* * * * * ?",
        topic: "ticks",
        partition: 0,
        payload: "",
      });
      {
        using socket = await connect(cluster, 1);
        socket.write(`cron add tick ${spec.length} 1\r\n${spec}`);
        expect((await socket.readFrame(10_000)).header).toStartWith("result 200 ");
      }
      const sent = await sendAll(await connect(cluster, 1), Date.now() + 2500, 3000);
      // Whichever node writes __delay-0 delivers, and kills itself after its third batch; so does
      // the next writer while it has the hook. A node that died is started again without it, only
      // when the others cannot make a quorum without it: the survivors take over the deliveries.
      const first = await Promise.race(cluster.nodes.map((node) => node.exited!));
      expect(first.signal).toBe("SIGKILL");
      const restarted: number[] = [];
      const restartCrashed = async () => {
        const stopped = cluster.nodes.find((node) => node.state === "stopped");
        if (stopped && cluster.running().length < 2 && restarted.length < 3) {
          restarted.push(stopped.id);
          await cluster.start(stopped.id);
        }
        return cluster.running()[0];
      };
      await expectAllDeliveredOnce(cluster, restartCrashed, sent);
      // The survivors took over: the first node came back only after a second writer died.
      expect(!restarted.includes(first.node) || cluster.exits.length >= 2).toBe(true);
      for (const node of cluster.nodes) {
        if (node.state === "stopped") await cluster.start(node.id);
      }
      expect(cluster.exits.every((exit) => exit.signal === "SIGKILL")).toBe(true);
      // Every node serves the same partitions once it has caught up.
      for (const node of cluster.nodes) await expectAllDeliveredOnce(cluster, node.id, sent);
      // Every second once, none skipped: what the failovers delayed was published late, once.
      using socket = await connect(cluster, 1);
      const ticks = (await scheduledIn(socket, "ticks", 0)).map((m) => m.scheduledAtMs);
      expect(ticks.length).toBeGreaterThanOrEqual(3);
      console.log(`ticks: ${ticks.length}, writers that died: ${cluster.exits.length}`);
      const gaps = ticks.slice(1).map((at, i) => at - ticks[i]);
      expect(gaps.every((gap) => gap === 1000), JSON.stringify(ticks)).toBe(true);
    });
  },
  90_000,
);

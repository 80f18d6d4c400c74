/**
 * A ZooKeeper-balanced consumer group of two `metaq zk consume` processes reading a topic sharded
 * over two metaq brokers (ids 1 and 2), with messages sent by `metaq zk produce` round-robin over
 * every partition of both: the group splits the partitions as MetaQ's DEFAULT strategy does, the
 * remaining member takes everything over when the other stops, nothing is read twice or lost, and
 * the offsets are in ZooKeeper in MetaQ's `<msgId>-<offset>` format. Real ZooKeeper, real brokers.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type ChildProcess, spawn } from "node:child_process";
import * as path from "node:path";
import { ZkClient } from "../../lib/zk/client.ts";
import { parseZkOffset } from "../../lib/zk/meta_layout.ts";
import { readText } from "../../lib/zk/nodes.ts";
import { BrokerProcess, METAQ_BINARY, runMetaq } from "../support/harness.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";
import { startZooKeeper, type ZooKeeperServer } from "../support/zookeeper.ts";

let zk: ZooKeeperServer;
let temp: TempDir;
let reader: ZkClient;
beforeAll(async () => {
  zk = await startZooKeeper();
  temp = tempDir();
  reader = await ZkClient.open({
    connect: zk.connect,
    sessionTimeoutMs: 10_000,
    connectionTimeoutMs: 10_000,
  });
}, 600_000); // the first run on a fresh machine installs ZooKeeper (apt-get)
afterAll(async () => {
  await reader?.close();
  await zk?.[Symbol.asyncDispose]();
  temp?.[Symbol.dispose]();
});

interface Line {
  readonly partition: number;
  readonly offset: number;
  readonly id: string;
  readonly payload: string;
}

/** A `metaq zk consume` child process; its stdout parsed as JSON lines. */
class ConsumerProcess {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  readonly exit: Promise<number | null>;

  constructor(consumerId: string) {
    this.child = spawn(METAQ_BINARY, [
      "zk",
      "consume",
      "orders",
      "--group",
      "g",
      "--consumer-id",
      consumerId,
      "--zk-connect",
      zk.connect,
      "--format",
      "json",
      "--commit-period",
      "100",
      "--zk-sync-time-ms",
      "300",
    ], { stdio: ["ignore", "pipe", "pipe"] });
    this.child.stdout!.on("data", (chunk) => (this.stdout += chunk));
    this.child.stderr!.on("data", (chunk) => (this.stderr += chunk));
    this.exit = new Promise((resolve) => this.child.on("exit", (code) => resolve(code)));
  }

  get lines(): Line[] {
    return this.stdout.split("\n").filter(Boolean).map((line) => JSON.parse(line));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await this.exit;
  }
}

const owners = async () => {
  const owned: Record<string, string | undefined> = {};
  for (const name of ["1-0", "1-1", "2-0", "2-1"]) {
    owned[name] = await readText(reader, `/meta/consumers/g/owners/orders/${name}`);
  }
  return owned;
};

async function produce(from: number, count: number): Promise<void> {
  const input = Array.from({ length: count }, (_, index) => `m${from + index}`).join("\n") + "\n";
  const result = await runMetaq(["zk", "produce", "orders", "--zk-connect", zk.connect], { input });
  expect(result.stderr).toContain(`Produced ${count} messages to orders`);
  expect(result.code).toBe(0);
}

test(
  "two ZooKeeper consumers split partitions as DEFAULT does and one takes over from the other",
  async () => {
    const zkArgs = ["--zk-connect", zk.connect, "--partitions", "2"];
    await using one = await BrokerProcess.start({
      dataDir: path.join(temp.path, "b1"),
      args: ["--broker-id", "1", ...zkArgs],
    });
    await using two = await BrokerProcess.start({
      dataDir: path.join(temp.path, "b2"),
      args: ["--broker-id", "2", ...zkArgs],
    });
    // The topic exists on both brokers before anyone consumes (MetaQ registers configured topics).
    for (const broker of [one, two]) {
      expect(
        (await runMetaq(["produce", "orders", "--broker", broker.address, "--message", "seed"]))
          .code,
      ).toBe(0);
    }
    await using a = new ConsumerProcess("a");
    await using b = new ConsumerProcess("b");
    // DEFAULT over the sorted ids g_a, g_b and names 1-0, 1-1, 2-0, 2-1: contiguous halves.
    await waitFor("the split", async () =>
      JSON.stringify(await owners()) ===
        JSON.stringify({ "1-0": "g_a", "1-1": "g_a", "2-0": "g_b", "2-1": "g_b" }), {
      timeoutMs: 30_000,
    });
    await waitFor("the seeds", () => a.lines.length + b.lines.length === 2);
    // `metaq zk status` shows the fleet as ZooKeeper holds it.
    const status = await runMetaq(["zk", "status", "--zk-connect", zk.connect, "--format", "json"]);
    expect(status.code).toBe(0);
    const fleet = JSON.parse(status.stdout);
    expect(fleet.brokers).toEqual([
      { id: 1, master: one.address, slaves: {} },
      { id: 2, master: two.address, slaves: {} },
    ]);
    expect(fleet.topics).toEqual([
      { topic: "orders", publish: { "1-m": 2, "2-m": 2 }, subscribe: { "1-m": 2, "2-m": 2 } },
    ]);
    expect(fleet.groups[0].group).toBe("g");
    expect(fleet.groups[0].consumers).toEqual({ g_a: ["orders"], g_b: ["orders"] });
    expect(fleet.groups[0].topics[0].partitions.map((p: { owner: string }) => p.owner))
      .toEqual(["g_a", "g_a", "g_b", "g_b"]);

    // Round-robin over 1-0, 1-1, 2-0, 2-1: message i lands on the (i % 4)th partition.
    await produce(0, 40);
    const payloads = (lines: Line[]) =>
      lines.map((line) => line.payload).filter((p) => p !== "seed");
    await waitFor("40 messages", () => payloads(a.lines).length + payloads(b.lines).length === 40);
    const expectedFor = (indexes: number[]) =>
      Array.from({ length: 40 }, (_, i) => i).filter((i) => indexes.includes(i % 4)).map((i) =>
        `m${i}`
      )
        .sort();
    expect(payloads(a.lines).sort()).toEqual(expectedFor([0, 1]));
    expect(payloads(b.lines).sort()).toEqual(expectedFor([2, 3]));

    // b stops cleanly: it commits, gives up its partitions and leaves; a takes everything.
    b.child.kill("SIGTERM");
    expect(await b.exit).toBe(0);
    await waitFor(
      "a to own every partition",
      async () => Object.values(await owners()).every((owner) => owner === "g_a"),
      { timeoutMs: 30_000 },
    );
    await produce(40, 20);
    await waitFor("the next 20 at a", () => payloads(a.lines).length === 20 + 20);
    const all = [...payloads(a.lines), ...payloads(b.lines)];
    expect(new Set(all).size).toBe(all.length); // nothing read twice
    expect(all.length).toBe(60);

    // Offsets: `<msgId>-<offset>`, the id and end of the last message read from each partition.
    a.child.kill("SIGTERM");
    expect(await a.exit).toBe(0);
    // Message mN went to the (N % 4)th partition; the seeds, first in theirs, are never last.
    const names = ["1-0", "1-1", "2-0", "2-1"];
    const last = new Map<string, Line>();
    for (const line of [...a.lines, ...b.lines]) {
      if (line.payload === "seed") {
        continue;
      }
      const name = names[Number(line.payload.slice(1)) % 4];
      if (!last.has(name) || last.get(name)!.offset < line.offset) last.set(name, line);
    }
    for (const name of ["1-0", "1-1", "2-0", "2-1"]) {
      const text = await readText(reader, `/meta/consumers/g/offsets/orders/${name}`);
      expect(text, name).toMatch(/^\d+-\d+$/);
      const stored = parseZkOffset(text!)!;
      const lastLine = last.get(name)!;
      expect(stored.messageId.toString(), name).toBe(lastLine.id);
      expect(stored.offset, name).toBe(
        lastLine.offset + 20 + new TextEncoder().encode(lastLine.payload).length,
      );
    }
    // Both left: no ids, no owners.
    expect(await readText(reader, "/meta/consumers/g/ids/g_a")).toBeUndefined();
    expect(Object.values(await owners()).every((owner) => owner === undefined)).toBe(true);
  },
  120_000,
);

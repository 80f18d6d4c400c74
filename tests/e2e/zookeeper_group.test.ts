/**
 * ZooKeeper mode of `metaq consume --group` and `metaq produce` against two metaq brokers (ids 1
 * and 2) registered in a real ZooKeeper:
 *
 * - a group of two `metaq consume --group g --zk-connect` processes reading a topic sharded over
 *   both brokers, with messages sent by `metaq produce --zk-connect` round-robin over every
 *   partition of both: the group splits the partitions as MetaQ's DEFAULT strategy does, the
 *   remaining member takes everything over when the other stops, nothing is read twice or lost,
 *   the offsets are in ZooKeeper in MetaQ's `<msgId>-<offset>` format, and a member started later
 *   resumes from them;
 * - `metaq produce --zk-connect` (under another --zk-root): its summary, round robin over the
 *   sorted partitions, --key and --partition <brokerId>-<partition>, and a SIGKILLed broker whose
 *   registration is still in ZooKeeper skipped without losing a line.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type ChildProcess, spawn } from "node:child_process";
import * as path from "node:path";
import { ZkClient } from "../../lib/zk/client.ts";
import { parseZkOffset } from "../../lib/zk/meta_layout.ts";
import { childrenOf, readText } from "../../lib/zk/nodes.ts";
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
  readonly brokerId: number;
  readonly partition: number;
  readonly offset: number;
  readonly id: string;
  readonly payload: string;
}

/** A `metaq consume --group g --zk-connect` child process; its stdout parsed as JSON lines. */
class ConsumerProcess {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  readonly exit: Promise<number | null>;

  constructor(consumerId: string) {
    this.child = spawn(METAQ_BINARY, [
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
  const result = await runMetaq(["produce", "orders", "--zk-connect", zk.connect], { input });
  expect(result.stderr).toContain(`Produced ${count} messages`);
  expect(result.stderr).toContain("0 failed, 0 indeterminate");
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
    // A broker registers a new topic in ZooKeeper just after it stores the topic's first message,
    // and a consumer started before that finds no broker offering it and exits.
    await waitFor(
      "both brokers' registrations of orders",
      async () => (await childrenOf(reader, "/meta/brokers/topics-sub/orders")).length === 2,
    );
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
    // Each line names its partition as <brokerId>-<partition>: message i is on the (i % 4)th.
    for (const line of [...a.lines, ...b.lines].filter((line) => line.payload !== "seed")) {
      expect(`${line.brokerId}-${line.partition}`).toBe(
        ["1-0", "1-1", "2-0", "2-1"][Number(line.payload.slice(1)) % 4],
      );
    }

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

    // A member started now resumes from those offsets: it reads only what came after.
    await produce(60, 8);
    await using c = new ConsumerProcess("c");
    await waitFor("the 8 new messages at c", () => payloads(c.lines).length === 8);
    expect(payloads(c.lines).sort()).toEqual(
      Array.from({ length: 8 }, (_, i) => `m${60 + i}`).sort(),
    );
    c.child.kill("SIGTERM");
    expect(await c.exit).toBe(0);
    expect(payloads(c.lines).length).toBe(8);
  },
  120_000,
);

test(
  "metaq produce --zk-connect: round robin over every master's partitions, --key, --partition " +
    "B-P, and a SIGKILLed broker still registered is skipped",
  async () => {
    const zkArgs = ["--zk-connect", zk.connect, "--zk-root", "/fleet2"];
    await using one = await BrokerProcess.start({
      dataDir: path.join(temp.path, "p1"),
      args: ["--broker-id", "1", "--partitions", "2", ...zkArgs],
    });
    await using two = await BrokerProcess.start({
      dataDir: path.join(temp.path, "p2"),
      args: ["--broker-id", "2", "--partitions", "2", ...zkArgs],
    });
    for (const broker of [one, two]) {
      const seed = ["produce", "routes", "--broker", broker.address, "--message", "seed"];
      expect((await runMetaq(seed)).code).toBe(0);
    }
    const published = async () =>
      (await childrenOf(reader, "/fleet2/brokers/topics-pub/routes")).sort();
    await waitFor(
      "both brokers to publish routes",
      async () => JSON.stringify(await published()) === JSON.stringify(["1-m", "2-m"]),
    );
    const readPartition = async (broker: BrokerProcess, partition: number) => {
      const read = await runMetaq([
        "consume",
        "routes",
        "--broker",
        broker.address,
        "--partition",
        String(partition),
        "--format",
        "json",
      ]);
      expect(read.code).toBe(0);
      return read.stdout.split("\n").filter(Boolean).map((line) => JSON.parse(line).payload)
        .filter((payload) => payload !== "seed");
    };
    const stored = async () => ({
      "1-0": await readPartition(one, 0),
      "1-1": await readPartition(one, 1),
      "2-0": await readPartition(two, 0),
      "2-1": await readPartition(two, 1),
    });

    const input = Array.from({ length: 8 }, (_, i) => `r${i}`).join("\n") + "\n";
    const sent = await runMetaq(["produce", "routes", ...zkArgs.slice(0, 4), "--format", "json"], {
      input,
    });
    expect(sent.code).toBe(0);
    const summary = JSON.parse(sent.stdout);
    expect([summary.lines, summary.acknowledged, summary.failed, summary.indeterminate])
      .toEqual([8, 8, 0, 0]);
    expect(await stored()).toEqual({
      "1-0": ["r0", "r4"],
      "1-1": ["r1", "r5"],
      "2-0": ["r2", "r6"],
      "2-1": ["r3", "r7"],
    });

    const keyed = await runMetaq(["produce", "routes", ...zkArgs, "--key", "customer-7"], {
      input: "k0\nk1\nk2\n",
    });
    expect(keyed.code).toBe(0);
    const named = await runMetaq([
      "produce",
      "routes",
      ...zkArgs,
      "--partition",
      "2-1",
      "--message",
      "named",
    ]);
    expect(named.code).toBe(0);
    const after = await stored();
    const withKeys = Object.entries(after).filter(([, payloads]) => payloads.includes("k0"));
    expect(withKeys.length).toBe(1);
    expect(withKeys[0][1].filter((payload) => payload.startsWith("k"))).toEqual(["k0", "k1", "k2"]);
    expect(after["2-1"].at(-1)).toBe("named");
    const missing = await runMetaq([
      "produce",
      "routes",
      ...zkArgs,
      "--partition",
      "3-0",
      "--message",
      "x",
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("partition 3-0 is not published (1-0, 1-1, 2-0, 2-1 are)");

    // Broker 2 dies; its ephemeral nodes stay until its session times out (30 s), so the
    // producer still lists it: every put to it fails before it is written and goes on.
    await two.kill("SIGKILL");
    expect(await published()).toEqual(["1-m", "2-m"]);
    const input2 = Array.from({ length: 10 }, (_, i) => `d${i}`).join("\n") + "\n";
    const survived = await runMetaq(["produce", "routes", ...zkArgs], { input: input2 });
    expect(survived.stderr).toContain("Produced 10 messages");
    expect(survived.code).toBe(0);
    const onOne = [...await readPartition(one, 0), ...await readPartition(one, 1)]
      .filter((payload) => payload.startsWith("d"));
    expect(onOne.sort()).toEqual(Array.from({ length: 10 }, (_, i) => `d${i}`).sort());

    // A topic no broker offers is an error for a ZooKeeper consumer too (unless --follow).
    const unknown = await runMetaq(["consume", "nothere", "--group", "g", ...zkArgs]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("Cannot consume nothere: no broker offers it in ZooKeeper");
  },
  120_000,
);

test("ZooKeeper mode's usage errors name the flag at fault (exit 2)", async () => {
  const cases: [string[], string][] = [
    [["consume", "t", "--zk-connect", zk.connect], "Cannot use --zk-connect without --group"],
    [
      ["consume", "t", "--group", "g", "--zk-connect", zk.connect, "--broker", "127.0.0.1:1"],
      "Cannot combine --broker with --zk-connect: ZooKeeper names the brokers",
    ],
    [
      ["consume", "t", "--group", "g", "--zk-connect", zk.connect, "--offsets", "file"],
      "Cannot combine --offsets with --zk-connect",
    ],
    [["consume", "t", "--group", "g", "--zk-root", "/x"], "Cannot use --zk-root without"],
    [
      ["consume", "t", "--group", "g", "--zk-sync-time-ms", "100"],
      "Cannot use --zk-sync-time-ms without --zk-connect",
    ],
    [
      ["produce", "t", "--zk-connect", zk.connect, "--partition", "3"],
      "Cannot use --partition 3 with --zk-connect: name a partition as <brokerId>-<partition>",
    ],
    [["produce", "t", "--zk-connect", "a:b:c"], "Cannot use --zk-connect a:b:c"],
    [["zk", "consume", "t", "--group", "g"], "it is metaq consume TOPIC --group G --zk-connect"],
    [["zk", "status"], "Cannot run zk status: give --zk-connect"],
  ];
  for (const [args, message] of cases) {
    const result = await runMetaq(args);
    expect(result.stderr, args.join(" ")).toContain(message);
    expect(result.code, args.join(" ")).toBe(2);
  }
});

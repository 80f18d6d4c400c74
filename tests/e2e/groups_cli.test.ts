import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { MetaqClient } from "../../lib/client/client.ts";
import { GroupClient } from "../../lib/client/group_client.ts";
import { Producer } from "../../lib/client/producer.ts";
import { BrokerProcess, runMetaq } from "../support/harness.ts";
import { MetaqProcess } from "../support/metaq_process.ts";
import { tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const SESSION_TIMEOUT_MS = 2000;

/** A broker with 6 partitions per topic and a short group session, as the tests need. */
async function startBroker(dir: string): Promise<BrokerProcess> {
  const config = path.join(dir, "server.ini");
  fs.writeFileSync(
    config,
    `[system]\nnumPartitions=6\ngroupSessionTimeoutMs=${SESSION_TIMEOUT_MS}\n[topic=*]\n`,
  );
  return await BrokerProcess.start({ dataDir: path.join(dir, "data"), args: ["--config", config] });
}

interface Printed {
  readonly partition: number;
  readonly offset: number;
  readonly payload: string;
}

function printed(consumer: MetaqProcess): Printed[] {
  return consumer.lines.map((line) => JSON.parse(line));
}

/** [start, stop) of each partition a consumer read, from its stderr report. */
function intervals(consumer: MetaqProcess, who: string) {
  const open = new Map<string, number>();
  const found: { who: string; key: string; from: number; to: number }[] = [];
  for (const line of consumer.stderr.split("\n")) {
    const match = /^(\S+) (started|stopped) (\S+) at /.exec(line);
    if (!match) continue;
    const [, at, kind, key] = match;
    if (kind === "started") open.set(key, Date.parse(at));
    else {
      found.push({ who, key, from: open.get(key)!, to: Date.parse(at) });
      open.delete(key);
    }
  }
  for (const [key, from] of open) found.push({ who, key, from, to: Infinity });
  return found;
}

function overlaps(all: ReturnType<typeof intervals>): string[] {
  const found: string[] = [];
  for (const a of all) {
    for (const b of all) {
      if (a.who < b.who && a.key === b.key && a.from < b.to && b.from < a.to) {
        found.push(`${a.key}: ${a.who} and ${b.who}`);
      }
    }
  }
  return found;
}

function groupConsumer(address: string, group: string, home: string, extra: string[] = []) {
  return new MetaqProcess([
    "consume",
    "stream",
    "--group",
    group,
    "--broker",
    address,
    "--format",
    "json",
    "--commit-period",
    "200",
    "--follow", // members start before the topic's first message
    ...extra,
  ], { HOME: home });
}

async function produce(producer: Producer, from: number, count: number): Promise<string[]> {
  const values = Array.from({ length: count }, (_, i) => `v-${from + i}`);
  await Promise.all(values.map((value) => producer.send("stream", value)));
  return values;
}

test("three group members split 6 partitions and read 30,000 messages exactly once", async () => {
  await using temp = tempDir();
  await using broker = await startBroker(temp.path);
  const client = new MetaqClient({ brokers: [broker.address] });
  const groups = new GroupClient(client);
  await using a = groupConsumer(broker.address, "split", temp.path);
  await using b = groupConsumer(broker.address, "split", temp.path);
  await using c = groupConsumer(broker.address, "split", temp.path);
  try {
    await waitFor("three members with two partitions each", async () => {
      const [report] = await groups.describe("split");
      return report.members.length === 3 && report.members.every((m) => m.partitions.length === 2);
    });
    const sent = await produce(new Producer(client), 0, 30_000);
    const consumers = [a, b, c];
    await waitFor(
      "every message",
      () => consumers.reduce((n, p) => n + p.lines.length, 0) >= 30_000,
      {
        timeoutMs: 90_000,
      },
    );
    for (const consumer of consumers) expect((await consumer.stop("SIGTERM")).code).toBe(0);
    const all = consumers.flatMap(printed).map((record) => record.payload);
    expect(all.length).toBe(sent.length); // no duplicates
    expect(all.sort()).toEqual([...sent].sort());
    for (const consumer of consumers) expect(consumer.lines.length).toBeGreaterThan(0);
    expect(overlaps([...intervals(a, "a"), ...intervals(b, "b"), ...intervals(c, "c")])).toEqual(
      [],
    );
    const [report] = await groups.describe("split");
    expect(report.members).toEqual([]);
    expect(report.partitions.map((p) => p.lag)).toEqual([0, 0, 0, 0, 0, 0]);
  } finally {
    client.close();
  }
});

test("a SIGKILLed member's partitions move to the others, which resume from its commits", async () => {
  await using temp = tempDir();
  await using broker = await startBroker(temp.path);
  const client = new MetaqClient({ brokers: [broker.address] });
  const groups = new GroupClient(client);
  const producer = new Producer(client);
  await using victim = groupConsumer(broker.address, "crash", temp.path, [
    "--consumer-id",
    "victim",
  ]);
  await using s1 = groupConsumer(broker.address, "crash", temp.path, ["--consumer-id", "s1"]);
  await using s2 = groupConsumer(broker.address, "crash", temp.path, ["--consumer-id", "s2"]);
  try {
    await waitFor("three balanced members", async () => {
      const [report] = await groups.describe("crash");
      return report.members.length === 3 && report.members.every((m) => m.partitions.length === 2);
    });
    const [before] = await groups.describe("crash");
    const victimPartitions = before.members.find((m) => m.id === "victim")!.partitions;
    // Production goes on while the victim dies and its partitions move: truly mid-stream.
    const producing = produce(producer, 0, 30_000);
    await waitFor("the victim to be mid-stream", () => victim.lines.length >= 1000, {
      timeoutMs: 60_000,
    });
    await victim.stop("SIGKILL");
    await waitFor("the survivors to own every partition", async () => {
      const [report] = await groups.describe("crash");
      return report.members.length === 2 && report.partitions.every((p) => p.owner !== null);
    }, { timeoutMs: SESSION_TIMEOUT_MS + 15_000 });
    const sent = await producing;
    const distinct = () => new Set([victim, s1, s2].flatMap(printed).map((r) => r.payload)).size;
    await waitFor("every message", () => distinct() >= sent.length, { timeoutMs: 90_000 });
    for (const survivor of [s1, s2]) expect((await survivor.stop("SIGTERM")).code).toBe(0);

    const byVictim = printed(victim);
    const bySurvivors = [...printed(s1), ...printed(s2)];
    const all = [...byVictim, ...bySurvivors].map((r) => r.payload);
    expect([...new Set(all)].sort()).toEqual([...sent].sort()); // nothing lost
    // Duplicates are exactly the victim's uncommitted tail: per partition, the survivors start at
    // the last offset the victim committed, at or before where it stopped, never after.
    const victimSeen = new Set(byVictim.map((r) => r.payload));
    const duplicates = bySurvivors.filter((r) => victimSeen.has(r.payload));
    for (const duplicate of duplicates) {
      expect(victimPartitions).toContain(`stream-${duplicate.partition}`);
    }
    for (const key of victimPartitions) {
      const partition = Number(key.split("-")[1]);
      const victimRecords = byVictim.filter((r) => r.partition === partition);
      const survivorOffsets = bySurvivors.filter((r) => r.partition === partition).map((r) =>
        r.offset
      );
      if (victimRecords.length === 0 || survivorOffsets.length === 0) continue;
      // The survivors resume at a record boundary the victim reached: the start of a record it
      // printed or the end of its last one (20 header bytes + payload), never beyond (a gap).
      const resumedAt = Math.min(...survivorOffsets);
      const last = victimRecords.reduce((a, b) => (a.offset > b.offset ? a : b));
      const victimEnd = last.offset + 20 + Buffer.byteLength(last.payload);
      expect(resumedAt).toBeLessThanOrEqual(victimEnd);
      const rereads = duplicates.filter((r) => r.partition === partition);
      expect(rereads.every((r) => r.offset >= resumedAt && r.offset < victimEnd)).toBe(true);
      expect(rereads.length).toBe(victimRecords.filter((r) => r.offset >= resumedAt).length);
    }
  } finally {
    client.close();
  }
});

test("committed offsets survive a broker SIGKILL; the group resumes where it left off", async () => {
  await using temp = tempDir();
  await using broker = await startBroker(temp.path);
  const client = new MetaqClient({ brokers: [broker.address] });
  const sent = await produce(new Producer(client), 0, 1200);
  client.close();
  const firstRun = await runMetaq(
    ["consume", "stream", "--group", "durable", "--broker", broker.address, "--max", "500"],
    { env: { HOME: temp.path } },
  );
  expect(firstRun.code).toBe(0);
  const before = await runMetaq([
    "groups",
    "durable",
    "--format",
    "json",
    "--broker",
    broker.address,
  ]);
  expect((await broker.kill("SIGKILL")).signal).toBe("SIGKILL");
  await broker.restart();
  const after = await runMetaq([
    "groups",
    "durable",
    "--format",
    "json",
    "--broker",
    broker.address,
  ]);
  const committed = (text: string) =>
    JSON.parse(text)[0].partitions.map((p: { committed: number | null }) => p.committed);
  expect(committed(after.stdout)).toEqual(committed(before.stdout));
  const secondRun = await runMetaq(
    ["consume", "stream", "--group", "durable", "--broker", broker.address, "--max", "700"],
    { env: { HOME: temp.path } },
  );
  const lines = [...firstRun.stdout.trim().split("\n"), ...secondRun.stdout.trim().split("\n")];
  expect(lines.length).toBe(1200);
  expect(lines.sort()).toEqual([...sent].sort());
});

test("broadcast: each of three consumers receives every message", async () => {
  await using temp = tempDir();
  await using broker = await startBroker(temp.path);
  const client = new MetaqClient({ brokers: [broker.address] });
  const sent = await produce(new Producer(client), 0, 3000);
  client.close();
  const runs = await Promise.all(["i1", "i2", "i3"].map((instance) =>
    runMetaq(
      [
        "consume",
        "stream",
        "--group",
        "news",
        "--broadcast",
        "--instance",
        instance,
        "--broker",
        broker.address,
        "--max",
        "3000",
      ],
      { env: { HOME: temp.path } },
    )
  ));
  for (const run of runs) {
    expect(run.code).toBe(0);
    expect(run.stdout.trim().split("\n").sort()).toEqual([...sent].sort());
  }
  expect(fs.existsSync(path.join(temp.path, ".metaq", "offsets", "news@i1", "offsets.records")))
    .toBe(true);
});

test("group CLI errors are one line: bad names, unknown topics, a reset while members are active", async () => {
  await using temp = tempDir();
  const config = path.join(temp.path, "server.ini");
  fs.writeFileSync(config, `[system]\nnumPartitions=2\n[topic=known]\n`);
  await using broker = await BrokerProcess.start({
    dataDir: path.join(temp.path, "data"),
    args: ["--config", config],
  });
  const env = { env: { HOME: temp.path } };
  const badName = await runMetaq([
    "consume",
    "known",
    "--group",
    "bad/name",
    "--broker",
    broker.address,
  ], env);
  expect([badName.code, badName.stderr.trim()]).toEqual([
    2,
    "metaq consume: Cannot use group: group name 'bad/name' may use only letters, digits, '_', '-' and '@'",
  ]);
  const unknown = await runMetaq(
    ["consume", "unknown", "--group", "g", "--broker", broker.address],
    env,
  );
  expect(unknown.code).toBe(1);
  expect(unknown.stderr.trim().split("\n").at(-1)).toBe(
    "metaq consume: Cannot consume unknown: The server do not accept topic unknown: no [topic=...] section of the broker's configuration matches it (sections: known)",
  );
  await using member = new MetaqProcess([
    "consume",
    "known",
    "--group",
    "busy",
    "--broker",
    broker.address,
  ], {
    HOME: temp.path,
  });
  const client = new MetaqClient({ brokers: [broker.address] });
  await waitFor(
    "the member to join",
    async () => (await new GroupClient(client).describe("busy"))[0].members.length === 1,
  );
  client.close();
  const refused = await runMetaq([
    "groups",
    "reset",
    "busy",
    "known",
    "--to",
    "earliest",
    "--broker",
    broker.address,
  ]);
  expect(refused.code).toBe(1);
  expect(refused.stderr.trim()).toMatch(
    /^metaq groups: Cannot reset offsets: the group has active members: group busy has 1 member\(s\)/,
  );
  const forced = await runMetaq([
    "groups",
    "reset",
    "busy",
    "known",
    "--to",
    "earliest",
    "--force",
    "--broker",
    broker.address,
  ]);
  expect([forced.code, forced.stdout]).toEqual([0, "busy known-0 -> 0\nbusy known-1 -> 0\n"]);
  expect((await member.stop("SIGTERM")).code).toBe(0);
});

/**
 * Positions by message through `dist/metaq` against a broker child process: the last N
 * messages (`--last N`, `--offset -N`), the first message at or after a time (`--from-time`,
 * `groups reset --to-time`), `groups reset --dry-run`, the one spelling of positions with its
 * aliases, and timestamps decoded from message ids. Segments are 64 KiB so that searches cross
 * segment ends (a `get` answers at most one segment) and bisect over many of them.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { BrokerProcess, runMetaq, startWithConfig } from "../support/harness.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const CONFIG = `[system]
numPartitions=2
maxSegmentSize=65536
[topic=events]
`;

let temp: TempDir;
let broker: BrokerProcess;
let address: string[];
/** Wall-clock instants between the three batches written to events-0. */
let t1 = 0;
let t2 = 0;
const A = 8000;
const B = 4000;
const C = 2000;

/** Lines `<prefix>-<n>` padded to 100 bytes. */
function lines(prefix: string, count: number): string {
  return Array.from({ length: count }, (_, i) => `${prefix}-${i + 1}`.padEnd(100, ".")).join("\n") +
    "\n";
}

async function produce(topic: string, input: string, extra: string[] = []): Promise<void> {
  const result = await runMetaq(["produce", topic, ...extra, ...address], {
    input,
    timeoutMs: 120_000,
  });
  expect(result.stderr).toContain("0 failed, 0 indeterminate");
  expect(result.code).toBe(0);
}

/** A wall-clock instant strictly after every message written so far (ids carry ms). */
async function nextInstant(): Promise<number> {
  const after = Date.now() + 2;
  await waitFor("the clock to move past the last message", () => Date.now() > after, {
    everyMs: 1,
  });
  return Date.now();
}

beforeAll(async () => {
  temp = tempDir();
  broker = await startWithConfig(temp.path, CONFIG, { http: true });
  address = ["--broker", broker.address];
  await produce("events", lines("a", A), ["--partition", "0"]);
  t1 = await nextInstant();
  await produce("events", lines("b", B), ["--partition", "0"]);
  t2 = await nextInstant();
  await produce("events", lines("c", C), ["--partition", "0"]);
  // events-1: ten messages, so that per-partition positions are seen to be per partition.
  await produce("events", lines("p1", 10), ["--partition", "1"]);
}, 300_000);

afterAll(async () => {
  await broker.kill("SIGKILL");
  temp[Symbol.dispose]();
});

function payloads(stdout: string): string[] {
  return stdout.split("\n").filter(Boolean).map((line) => line.replace(/\.+$/, ""));
}

describe("the last N messages", () => {
  test("--last N and --offset -N start N messages before each partition's end", async () => {
    const last = await runMetaq(["consume", "events", "--last", "3", ...address]);
    expect(last.code).toBe(0);
    expect(payloads(last.stdout).sort()).toEqual(
      ["c-1998", "c-1999", "c-2000", "p1-8", "p1-9", "p1-10"].sort(),
    );
    const negative = await runMetaq([
      "consume",
      "events",
      "--partition",
      "0",
      "--offset",
      "-1500",
      ...address,
    ]);
    expect(payloads(negative.stdout)).toEqual(
      Array.from({ length: 1500 }, (_, i) => `c-${i + 501}`),
    );
    // More than the partition holds: all of it.
    const all = await runMetaq([
      "consume",
      "events",
      "--partition",
      "1",
      "--last",
      "50",
      ...address,
    ]);
    expect(payloads(all.stdout)).toHaveLength(10);
    expect(all.stderr).toContain("Consumed 10 messages");
  });

  test("the last messages of a partition far larger than one search step, across segments", async () => {
    // 6000 records of 120 bytes span many 64 KiB segments back from the end.
    const result = await runMetaq([
      "consume",
      "events",
      "--partition",
      "0",
      "--last",
      "6000",
      "--max",
      "1",
      ...address,
    ]);
    expect(payloads(result.stdout)).toEqual(["b-1"]);
  });
});

describe("positions by time", () => {
  test("--from-time starts at the first message written at or after the time", async () => {
    const fromB = await runMetaq([
      "consume",
      "events",
      "--partition",
      "0",
      "--from-time",
      new Date(t1).toISOString(),
      "--max",
      String(B),
      ...address,
    ]);
    expect(fromB.code).toBe(0);
    expect(payloads(fromB.stdout)).toEqual(Array.from({ length: B }, (_, i) => `b-${i + 1}`));
    // The same instant as milliseconds since 1970, and with another zone's notation.
    const zoned = new Date(t2 + 3600_000).toISOString().replace("Z", "+01:00");
    for (const time of [String(t2), zoned]) {
      const fromC = await runMetaq([
        "consume",
        "events",
        "--partition",
        "0",
        "--from-time",
        time,
        ...address,
      ]);
      expect(payloads(fromC.stdout)).toEqual(Array.from({ length: C }, (_, i) => `c-${i + 1}`));
    }
    // Before everything: the start; after everything: nothing, exit 0.
    const early = await runMetaq([
      "consume",
      "events",
      "--partition",
      "0",
      "--from-time",
      "2020-01-01",
      "--max",
      "1",
      ...address,
    ]);
    expect(payloads(early.stdout)).toEqual(["a-1"]);
    const late = await runMetaq([
      "consume",
      "events",
      "--from-time",
      new Date(Date.now() + 60_000).toISOString(),
      ...address,
    ]);
    expect(late.code).toBe(0);
    expect(late.stdout).toBe("");
  });

  test("JSON and format strings carry the write time decoded from the message id", async () => {
    const json = await runMetaq([
      "consume",
      "events",
      "--partition",
      "0",
      "--from-time",
      String(t2),
      "--max",
      "1",
      "--format",
      "json",
      ...address,
    ]);
    const message = JSON.parse(json.stdout);
    const ms = Date.parse(message.timestamp);
    expect(ms).toBeGreaterThanOrEqual(t2);
    // The id's top 42 bits are milliseconds since MetaQ's epoch.
    expect(Number(BigInt(message.id) >> 22n) + 1303895660503).toBe(ms);
    const text = await runMetaq([
      "consume",
      "events",
      "--partition",
      "0",
      "--from-time",
      String(t2),
      "--max",
      "1",
      "-f",
      "%T|%m|%i",
      ...address,
    ]);
    expect(text.stdout).toBe(`${message.timestamp}|${ms}|${message.id}\n`);
  });

  test("groups reset --to-time moves a group there; --dry-run shows it and changes nothing", async () => {
    const create = await runMetaq([
      "groups",
      "reset",
      "audit",
      "events",
      "--to",
      "beginning",
      "--create",
      ...address,
    ]);
    expect(create.code).toBe(0);
    const describe = async () =>
      JSON.parse((await runMetaq(["groups", "audit", "--format", "json", ...address])).stdout)[0]
        .partitions.map((p: { partition: number; committed: number }) => [
          p.partition,
          p.committed,
        ]);
    const before = await describe();
    expect(before).toEqual([[0, 0], [1, 0]]);
    const dry = await runMetaq([
      "groups",
      "reset",
      "audit",
      "events",
      "--to-time",
      new Date(t1).toISOString(),
      "--dry-run",
      "--format",
      "json",
      ...address,
    ]);
    expect(dry.code).toBe(0);
    const plan = JSON.parse(dry.stdout);
    expect(plan.dryRun).toBe(true);
    const zero = plan.offsets.find((row: { partition: number }) => row.partition === 0);
    expect(zero.from).toBe(0);
    expect(zero.offset).toBe(A * 120); // after the A batch of 120-byte records
    expect(Date.parse(zero.timestamp)).toBeGreaterThanOrEqual(t1);
    // events-1 was written after t1 too: its first message.
    expect(plan.offsets.find((row: { partition: number }) => row.partition === 1).offset).toBe(0);
    expect(await describe()).toEqual(before); // nothing changed

    const real = await runMetaq([
      "groups",
      "reset",
      "audit",
      "events",
      "--to-time",
      new Date(t2).toISOString(),
      "--partition",
      "0",
      ...address,
    ]);
    expect(real.code).toBe(0);
    expect(real.stdout).toMatch(/^audit events-0 -> 1440000 \(message of 20\d\d-/);
    expect(await describe()).toEqual([[0, (A + B) * 120], [1, 0]]);
    // A member of the group reads from there.
    const read = await runMetaq([
      "consume",
      "events",
      "--group",
      "audit",
      "--max",
      "1",
      "-f",
      "%p %s",
      ...address,
    ], { timeoutMs: 60_000 });
    expect(["0 c-1", "1 p1-1"]).toContain(read.stdout.trim().replace(/\.+$/, ""));
  });
});

describe("one spelling of positions", () => {
  test("earliest/latest everywhere, beginning/end accepted as aliases", async () => {
    const earliest = await runMetaq([
      "consume",
      "events",
      "--partition",
      "1",
      "--offset",
      "earliest",
      "--max",
      "1",
      ...address,
    ]);
    const beginning = await runMetaq([
      "consume",
      "events",
      "--partition",
      "1",
      "--offset",
      "beginning",
      "--max",
      "1",
      ...address,
    ]);
    expect(payloads(earliest.stdout)).toEqual(["p1-1"]);
    expect(beginning.stdout).toBe(earliest.stdout);
    for (const to of ["latest", "end"]) {
      const reset = await runMetaq([
        "groups",
        "reset",
        `g-${to}`,
        "events",
        "--to",
        to,
        "--partition",
        "1",
        "--create",
        "--format",
        "json",
        ...address,
      ]);
      expect(reset.code).toBe(0);
      expect(JSON.parse(reset.stdout).offsets).toMatchObject([{ partition: 1, offset: 10 * 120 }]);
    }
  });

  test("positions that cannot apply are usage errors naming the flags", async () => {
    const cases: [string[], RegExp][] = [
      [["--offset", "120"], /Cannot use --offset N without --partition/],
      [["--last", "2", "--from-time", "2026-01-01"], /Cannot combine --last and --from-time/],
      [["--from-time", "yesterday"], /Cannot use --from-time yesterday: expected a time/],
      [["--offset", "first"], /Cannot use --offset first: expected earliest, latest/],
      [["--group", "g1", "--last", "5"], /Cannot start a group at --last/],
    ];
    for (const [flags, message] of cases) {
      const result = await runMetaq(["consume", "events", ...flags, ...address]);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(message);
    }
    const both = await runMetaq([
      "groups",
      "reset",
      "audit",
      "events",
      "--to",
      "earliest",
      "--to-time",
      "2026-01-01",
      ...address,
    ]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("give one of --to");
  });
});

describe("HTTP speaks the same", () => {
  test("fetched records carry the timestamp; reset and stream take earliest/latest", async () => {
    const page = await (await fetch(
      `${broker.httpBase}/v1/topics/events/partitions/1/messages?offset=0&max=1`,
    )).json();
    const cli = JSON.parse(
      (await runMetaq([
        "consume",
        "events",
        "--partition",
        "1",
        "--max",
        "1",
        "--format",
        "json",
        ...address,
      ])).stdout,
    );
    expect(page.messages[0]).toMatchObject({
      id: cli.id,
      timestamp: cli.timestamp,
      key: null,
      headers: [],
    });
    expect(cli.timestamp).toMatch(/^20\d\d-\d\d-\d\dT/);
    const created = ["groups", "reset", "g-http", "events", "--to", "earliest", "--create"];
    expect((await runMetaq([...created, ...address])).code).toBe(0);
    for (const to of ["earliest", "latest"]) {
      const reset = await fetch(`${broker.httpBase}/v1/groups/g-http/reset`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ topic: "events", partition: 1, to }),
      });
      expect(reset.status).toBe(200);
      expect(JSON.stringify(await reset.json())).toContain(
        `"offset":${to === "earliest" ? 0 : 1200}`,
      );
    }
  });
});

describe("HTTP keys and headers", () => {
  test("a key and headers sent over HTTP are stored as metaq produce stores them", async () => {
    const sent = await fetch(`${broker.httpBase}/v1/topics/events/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        payload: "from http",
        key: "customer-9",
        headers: [{ key: "trace", value: "7" }],
      }),
    });
    expect(sent.status).toBe(200);
    const { results } = await sent.json();
    const read = JSON.parse(
      (await runMetaq([
        "consume",
        "events",
        "--partition",
        String(results[0].partition),
        "--last",
        "1",
        "--format",
        "json",
        ...address,
      ])).stdout,
    );
    expect(read).toMatchObject({
      key: "customer-9",
      headers: [{ key: "trace", value: "7" }],
      attribute: null,
      payload: "from http",
    });
    const bad = await fetch(`${broker.httpBase}/v1/topics/events/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ payload: "x", headers: { trace: "7" } }),
    });
    expect(bad.status).toBe(400);
  });
});

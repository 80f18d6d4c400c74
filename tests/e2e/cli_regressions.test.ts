/**
 * The CLI as issue 18 found it, through `dist/metaq` against a broker child process: results
 * that were wrong, successes that were silent, errors that misled, and `metaq produce` when its
 * broker dies. Each test states the behaviour; the regressions name what was broken.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { MetaqClient } from "../../lib/client/client.ts";
import { GroupClient } from "../../lib/client/group_client.ts";
import { Producer } from "../../lib/client/producer.ts";
import { decodeRecords } from "../../lib/protocol/record.ts";
import {
  BrokerProcess,
  readPartitionBytes,
  runMetaq,
  startWithConfig,
} from "../support/harness.ts";
import { MetaqProcess } from "../support/metaq_process.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const CONFIG = `[system]
numPartitions=3
[topic=orders]
[topic=logs-*]
numPartitions=2
`;

let temp: TempDir;
let broker: BrokerProcess;
let client: MetaqClient;
let address: string[];

beforeAll(async () => {
  temp = tempDir();
  broker = await startWithConfig(temp.path, CONFIG);
  client = new MetaqClient({ brokers: [broker.address] });
  address = ["--broker", broker.address];
});

afterAll(async () => {
  client.close();
  await broker.kill("SIGKILL");
  temp[Symbol.dispose]();
});

/** stderr's one line, or a failure naming everything it printed. */
function oneLine(result: { stderr: string }): string {
  const lines = result.stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  return lines[0];
}

describe("results", () => {
  test("consume prints binary payloads byte for byte, and in JSON as base64 with its encoding", async () => {
    // Regression: bytes that are not UTF-8 came out as U+FFFD, and JSON had no `encoding`.
    const binary = new Uint8Array([0x00, 0xff, 0xfe, 0x80, 0x61, 0xc3]);
    const producer = new Producer(client);
    await producer.send("orders", binary, { partition: 2 });
    await producer.send("orders", "héllo", { partition: 2 });
    const text = await runMetaq(["consume", "orders", "--partition", "2", ...address]);
    expect(text.code).toBe(0);
    expect([...text.stdoutBytes]).toEqual([
      ...binary,
      10,
      ...new TextEncoder().encode("héllo\n"),
    ]);
    const json = await runMetaq([
      "consume",
      "orders",
      "--partition",
      "2",
      "--format",
      "json",
      ...address,
    ]);
    const [first, second] = json.stdout.trim().split("\n").map((line) => JSON.parse(line));
    expect(first).toMatchObject({
      topic: "orders",
      partition: 2,
      offset: 0,
      nextOffset: 20 + binary.length,
      payload: Buffer.from(binary).toString("base64"),
      encoding: "base64",
      bytes: binary.length,
    });
    expect(second).toMatchObject({
      offset: first.nextOffset,
      payload: "héllo",
      encoding: "utf8",
    });
  });

  test("topics and stats count a topic's partitions, not only those holding messages", async () => {
    // Regression: a 2-partition topic with messages in one was listed with 1 partition.
    expect(
      (await runMetaq(["produce", "logs-web", "--partition", "0", "--message", "x", ...address]))
        .code,
    ).toBe(0);
    const table = await runMetaq(["topics", ...address]);
    expect(table.stdout).toMatch(/^logs-web\s+2\s+1\s+21 B$/m);
    const json = JSON.parse((await runMetaq(["topics", "--format", "json", ...address])).stdout);
    expect(json.topics).toContainEqual({
      name: "logs-web",
      numPartitions: 2,
      messages: 1,
      bytes: 21,
    });
    // A configured topic nothing was written to yet shows its configured count too.
    expect(json.topics).toContainEqual({
      name: "orders",
      numPartitions: 3,
      messages: 2,
      bytes: 52,
    });
    const stats = JSON.parse(
      (await runMetaq(["stats", "logs-web", "--format", "json", ...address])).stdout,
    );
    expect(stats).toMatchObject({ topic: "logs-web", resultCode: 0, partitions: 2 });
  });

  test("groups reset refuses an offset inside a record, and moves to a record start", async () => {
    // Regression: `--to 5` was taken, and the group then re-read the whole segment.
    const producer = new Producer(client);
    const first = await producer.send("orders", "first", { partition: 0 });
    const second = await producer.send("orders", "second", { partition: 0 });
    const reset = (to: number) =>
      runMetaq([
        "groups",
        "reset",
        "rewind",
        "orders",
        "--to",
        String(to),
        "--partition",
        "0",
        "--create",
        ...address,
      ]);
    const inside = await reset(first.offset + 5);
    expect([inside.code, oneLine(inside)]).toEqual([
      1,
      `metaq groups: Cannot accept offset: no record starts at offset ${
        first.offset + 5
      } of orders-0 (give a record's first byte, as 'metaq consume --format json' prints it)`,
    ]);
    expect(await new GroupClient(client).committed("rewind", "orders", 0)).toBeUndefined();
    const start = await reset(second.offset);
    expect(start.code).toBe(0);
    expect(start.stdout).toMatch(
      new RegExp(`^rewind orders-0 -> ${second.offset} \\(message of 20\\d\\d-[^)]+Z\\)\n$`),
    );
  });

  test("verify refuses a data directory that is not there, and creates nothing", async () => {
    // Regression: `verify --data ./typo` created the directory, printed nothing and exited 0.
    const typo = path.join(temp.path, "typo");
    const missing = await runMetaq(["verify", "--data", typo]);
    expect([missing.code, oneLine(missing)]).toEqual([
      1,
      `metaq verify: Cannot verify ${typo}: no such directory (give the broker's --data, or its --config)`,
    ]);
    expect(fs.existsSync(typo)).toBe(false);
    const file = path.join(temp.path, "server.ini");
    const notDirectory = await runMetaq(["verify", "--data", file]);
    expect([notDirectory.code, oneLine(notDirectory)]).toEqual([
      1,
      `metaq verify: Cannot verify ${file}: it is a file, not a data directory`,
    ]);
  });

  test("verify prints each partition and a total, or the same as one JSON object", async () => {
    await using stopped = tempDir();
    const data = path.join(stopped.path, "data");
    const alone = await BrokerProcess.start({ dataDir: data });
    await runMetaq(["produce", "v", "--broker", alone.address], { input: "a\nb\nc\n" });
    expect((await alone.kill("SIGTERM")).code).toBe(0);
    const text = await runMetaq(["verify", "--data", data]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain("v-0: ok, 1 segments, 3 records, 63 B\n");
    expect(text.stdout).toMatch(/^Checked \d+ partitions in .*: \d+ records, .*, no damage$/m);
    const json = await runMetaq(["verify", "--data", data, "--format", "json"]);
    const report = JSON.parse(json.stdout);
    expect(report).toMatchObject({ dataPath: data, damaged: 0 });
    expect(report.partitions).toContainEqual({
      name: "v-0",
      ok: true,
      segments: 1,
      records: 3,
      bytes: 63,
      bytesCut: 0,
    });
  });
});

describe("no silent successes", () => {
  test("an unknown topic or partition is one line and exit 1, never 'Consumed 0 messages'", async () => {
    const cases: [string[], string][] = [
      [
        ["consume", "nope"],
        "metaq consume: Cannot consume nope: The server do not accept topic nope: no [topic=...] section of the broker's configuration matches it (sections: orders, logs-*)",
      ],
      [
        ["consume", "logs-none"],
        "metaq consume: Cannot consume logs-none: no such topic (no partition holds a message, and no [topic=logs-none] section names it) (give --follow to wait for its first message)",
      ],
      [
        ["consume", "logs-none", "--group", "g1"],
        "metaq consume: Cannot consume logs-none: no such topic (no partition holds a message, and no [topic=logs-none] section names it) (give --follow to wait for its first message)",
      ],
      [
        ["consume", "orders", "--partition", "9"],
        "metaq consume: Cannot consume orders: partition 9 does not exist (orders has partitions 0 to 2)",
      ],
      [
        ["produce", "orders", "--partition", "9", "--message", "x"],
        "metaq produce: Cannot produce to orders: partition 9 does not exist (orders has partitions 0 to 2)",
      ],
      [
        ["produce", "nope", "--message", "x"],
        "metaq produce: Cannot produce to nope: The server do not accept topic nope: no [topic=...] section of the broker's configuration matches it (sections: orders, logs-*)",
      ],
      [
        ["groups", "typo"],
        "metaq groups: Cannot describe group typo: no such consumer group",
      ],
      [
        ["groups", "reset", "typo", "orders", "--to", "earliest"],
        "metaq groups: Cannot reset group typo: no such consumer group (give --create to start it at these offsets)",
      ],
      [
        ["groups", "reset", "typo", "logs-none", "--to", "earliest", "--create"],
        "metaq groups: Cannot reset offsets of logs-none: no such topic (no partition holds a message, and no [topic=logs-none] section names it)",
      ],
      [
        ["stats", "nope"],
        "metaq stats: Cannot read stats of nope: no such topic or stats item (items: topics, offsets, realtime, security, help, reset, config)",
      ],
    ];
    for (const [args, message] of cases) {
      const result = await runMetaq([...args, ...address]);
      expect([args.join(" "), result.code, result.stderr.trim()]).toEqual([
        args.join(" "),
        1,
        message,
      ]);
    }
    // Nothing was created for the group that does not exist.
    expect(await new GroupClient(client).describe("typo")).toEqual([
      expect.objectContaining({ members: [], partitions: [] }),
    ]);
  });

  test("names are checked before they reach the wire", async () => {
    // Regression: a space in a topic name read as "connection closed".
    const topic = await runMetaq(["produce", "bad name", "--message", "x", ...address]);
    expect([topic.code, oneLine(topic)]).toEqual([
      2,
      "metaq produce: Cannot use topic: topic name 'bad name' may use only letters, digits, '_', '-' and '.', and may not start with '.' or '-'",
    ]);
    const consumed = await runMetaq(["consume", "bad name", ...address]);
    expect(consumed.code).toBe(2);
    const group = await runMetaq(["groups", "reset", "bad/g", "orders", "--to", "0", ...address]);
    expect([group.code, oneLine(group)]).toEqual([
      2,
      "metaq groups: Cannot use group: group name 'bad/g' may use only letters, digits, '_', '-' and '@'",
    ]);
  });

  test("unknown commands and flags are one line with a did-you-mean", async () => {
    const command = await runMetaq(["topic"]);
    expect([command.code, oneLine(command)]).toEqual([
      2,
      "metaq: unknown command 'topic' (did you mean 'topics'?) (see 'metaq --help')",
    ]);
    const flag = await runMetaq(["consume", "orders", "--form", "json"]);
    expect([flag.code, oneLine(flag)]).toEqual([
      2,
      "metaq consume: Cannot run 'consume': unknown flag --form (did you mean --format?) (see 'metaq consume --help')",
    ]);
    const value = await runMetaq(["consume", "orders", "--max"]);
    expect(oneLine(value)).toBe(
      "metaq consume: Cannot run 'consume': flag --max needs a value (see 'metaq consume --help')",
    );
  });

  test("help CMD prints that command's help, and every client command lists its connection flags", async () => {
    const viaHelp = await runMetaq(["help", "consume"]);
    const viaFlag = await runMetaq(["consume", "--help"]);
    expect([viaHelp.code, viaHelp.stdout]).toEqual([0, viaFlag.stdout]);
    expect((await runMetaq(["help", "topic"])).stderr).toContain("did you mean 'topics'?");
    const clients = ["produce", "consume", "groups", "topics", "stats", "tx", "cluster", "version"];
    for (const name of [...clients, "bench"]) {
      const usage = (await runMetaq([name, "--help"])).stdout;
      for (const flag of ["--broker", "--user", "--token", "--token-file", "--tls", "--ca"]) {
        expect([name, flag, usage.includes(`  ${flag} `)]).toEqual([name, flag, true]);
      }
    }
  });

  test("flag errors name the flag as typed, and a negative value reaches its flag", async () => {
    await using scratch = tempDir();
    const partitions = await runMetaq([
      "serve",
      "--partitions",
      "abc",
      "--data",
      scratch.path,
    ]);
    expect([partitions.code, oneLine(partitions)]).toEqual([
      2,
      "metaq serve: Cannot use --partitions abc: Cannot evaluate 'abc': unexpected 'a'",
    ]);
    const port = await runMetaq(["serve", "--port", "99999", "--data", scratch.path]);
    expect(oneLine(port)).toBe(
      "metaq serve: Cannot use --port 99999: must be between 0 and 65535",
    );
    // (`--offset -10` is the last 10 messages now: tests/e2e/cli_positions.test.ts.)
    const negative = await runMetaq([
      "consume",
      "orders",
      "--partition",
      "0",
      "--max",
      "-10",
      ...address,
    ]);
    expect(oneLine(negative)).toBe(
      "metaq consume: Cannot use --max -10: must be between 1 and 9007199254740991",
    );
  });

  test("--tls against a plaintext port fails at once and says the port does not speak TLS", async () => {
    const started = performance.now();
    const result = await runMetaq(["topics", "--tls", "--tls-insecure", ...address]);
    expect(performance.now() - started).toBeLessThan(4000); // the connect timeout is 5 s
    expect(result.code).toBe(1);
    expect(oneLine(result)).toMatch(
      /^metaq topics: Cannot list topics: Cannot connect to .*: it does not speak TLS; drop --tls\?\)$/,
    );
  });

  test("a broker that is not there fails the first contact at once, even with --follow or --group", async () => {
    for (const extra of [["--follow"], ["--group", "g1"]]) {
      const started = performance.now();
      const result = await runMetaq(["consume", "orders", ...extra, "--broker", "127.0.0.1:1"]);
      expect(performance.now() - started).toBeLessThan(5000); // not ~30 min of redialling
      expect([result.code, oneLine(result)]).toEqual([
        1,
        "metaq consume: Cannot consume orders: Cannot connect to 127.0.0.1:1: connect ECONNREFUSED 127.0.0.1:1",
      ]);
    }
    // With a list, each broker is dialled before giving up.
    const list = ["--broker", `127.0.0.1:1,${broker.address}`];
    expect((await runMetaq(["produce", "logs-list", "--message", "x", ...list])).code).toBe(0);
    expect((await runMetaq(["consume", "logs-list", ...list])).stdout).toBe("x\n");
  });

  test("an operating system error is one line with a hint, not an unexpected error", async () => {
    // Regression: `unexpected error: EEXIST ...` and exit code 70.
    await using scratch = tempDir();
    const file = path.join(scratch.path, "not-a-dir");
    fs.writeFileSync(file, "");
    const result = await runMetaq(["serve", "--data", file, "--port", "0", "--no-http"]);
    expect([result.code, oneLine(result)]).toEqual([
      1,
      `metaq serve: Cannot mkdir ${file}: a file is where a directory should be: check the paths given (EEXIST)`,
    ]);
  });
});

describe("metaq produce when its broker dies", () => {
  /** A broker of its own whose fsyncs the test can slow, so puts are in flight when it dies. */
  async function brokerWithSlowFsync(dir: string) {
    const control = path.join(dir, "fsync-control");
    const started = await BrokerProcess.start({
      dataDir: path.join(dir, "data"),
      env: { METAQ_TEST_FSYNC_CONTROL: control },
    });
    return { broker: started, control };
  }

  async function statsLine(at: BrokerProcess, item: string | undefined, prefix: string) {
    const own = new MetaqClient({ brokers: [at.address], reconnectAttemptsMax: 1 });
    try {
      return (await own.stats(item)).split("\r\n").find((text) => text.startsWith(prefix)) ?? "";
    } finally {
      own.close();
    }
  }

  async function storedCount(at: BrokerProcess, topic: string): Promise<number> {
    const line = await statsLine(at, "topics", `${topic} `);
    return Number(/message_count (\d+)/.exec(line)?.[1] ?? 0);
  }

  /**
   * Makes every later fsync take a minute, then waits until records are written but not
   * acknowledged (the topic's bytes on disk beyond the acknowledged end of partition 0, its only
   * one): the puts of a full window are in flight when the broker is killed.
   */
  async function stallAcknowledgements(at: BrokerProcess, topic: string, control: string) {
    fs.writeFileSync(control, "delay 60000\n");
    await waitFor("puts waiting for their fsync", async () => {
      const written = /message_bytes (\d+)/.exec(await statsLine(at, "topics", `${topic} `));
      const acked = /max_offset (\d+)/.exec(await statsLine(at, "offsets", `${topic} part 0 `));
      return Number(written?.[1]) > Number(acked?.[1]);
    });
  }

  function storedLines(dataDir: string, topic: string): Set<number> {
    const lines = new Set<number>();
    for (const record of decodeRecords(readPartitionBytes(dataDir, topic, 0))) {
      lines.add(Number(new TextDecoder().decode(record.data)));
    }
    return lines;
  }

  test("it reconnects when the broker is back, names the indeterminate lines and loses no acknowledged one", async () => {
    // Regression: every remaining line failed one by one for 20-40 s, with no reconnect, and
    // the summary counted only acknowledged and failed puts.
    await using dir = tempDir();
    const { broker: own, control } = await brokerWithSlowFsync(dir.path);
    await using _own = own;
    const total = 60_000;
    const input = path.join(dir.path, "lines.txt");
    fs.writeFileSync(input, Array.from({ length: total }, (_, i) => `${i + 1}\n`).join(""));
    await using producer = new MetaqProcess([
      "produce",
      "numbers",
      "--file",
      input,
      "--format",
      "json",
      "--broker",
      own.address,
    ]);
    await waitFor("some lines stored", async () => (await storedCount(own, "numbers")) >= 5000);
    await stallAcknowledgements(own, "numbers", control);
    const port = own.port;
    await own.kill("SIGKILL");
    await waitFor("produce to notice", () => producer.stderr.includes("retrying in"));
    await own.restart(["--port", String(port)]);
    const exit = await Promise.race([
      producer.exit,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("hung")), 60_000)),
    ]);
    const summary = JSON.parse(producer.lines[0]);
    expect(summary).toMatchObject({
      topic: "numbers",
      lines: total,
      failed: 0,
      unsent: 0,
      stopped: "input",
      resumeFromLine: null,
    });
    expect(summary.acknowledged + summary.indeterminate).toBe(total);
    expect(summary.indeterminate).toBeGreaterThan(0);
    expect(exit.code).toBe(1); // not every line is known to be stored
    const indeterminate = new Set<number>();
    for (const [first, last] of summary.indeterminateLines) {
      for (let line = first; line <= last; line++) indeterminate.add(line);
    }
    expect(indeterminate.size).toBe(summary.indeterminate);
    const stored = storedLines(path.join(dir.path, "data"), "numbers");
    for (let line = 1; line <= total; line++) {
      if (!indeterminate.has(line) && !stored.has(line)) {
        throw new Error(`line ${line} was acknowledged but is not stored`);
      }
    }
  });

  test("it gives up after --retry-ms when the broker stays down, and says where to resume", async () => {
    await using dir = tempDir();
    const { broker: own, control } = await brokerWithSlowFsync(dir.path);
    await using _own = own;
    await using producer = new MetaqProcess(
      [
        "produce",
        "numbers",
        "--retry-ms",
        "1500",
        "--broker",
        own.address,
      ],
      {},
      { stdin: true },
    );
    // An endless input, written as fast as it is read: the run can only end by giving up.
    const stdin = producer.child.stdin!;
    stdin.on("error", () => {}); // it stops reading when it gives up
    let next = 1;
    let writable = true;
    stdin.on("drain", () => (writable = true));
    const feed = setInterval(() => {
      if (!writable) return;
      writable = stdin.write(Array.from({ length: 2000 }, () => `${next++}\n`).join(""));
    }, 10);
    try {
      await waitFor("some lines stored", async () => (await storedCount(own, "numbers")) >= 3000);
      await stallAcknowledgements(own, "numbers", control);
      await own.kill("SIGKILL");
      const started = performance.now();
      const exit = await producer.exit;
      expect(performance.now() - started).toBeLessThan(15_000);
      expect(exit.code).toBe(1);
    } finally {
      clearInterval(feed);
    }
    const stderr = producer.stderr;
    expect(stderr).toMatch(/^Produced [\d,]+ messages .* 0 failed, [1-9][\d,]* indeterminate$/m);
    expect(stderr).toMatch(/^Gave up: Cannot reconnect: Cannot connect to .*ECONNREFUSED/m);
    const resume = Number(
      /^Resume from line (\d+): tail -n \+\1 INPUT \| metaq produce numbers/m
        .exec(stderr)?.[1],
    );
    expect(resume).toBeGreaterThan(3000);
    // Every line before the resume point is stored, bar the indeterminate ones it names.
    const named = /indeterminate: lines? ([\d, -]+) \(/.exec(stderr)![1].split(", ");
    const indeterminate = new Set<number>();
    for (const run of named) {
      const [first, last = first] = run.split("-").map(Number);
      for (let line = first; line <= last; line++) indeterminate.add(line);
    }
    const stored = storedLines(path.join(dir.path, "data"), "numbers");
    for (let line = 1; line < resume; line++) {
      if (!indeterminate.has(line) && !stored.has(line)) {
        throw new Error(`line ${line} before the resume point is neither stored nor named`);
      }
    }
    for (const line of stored) expect(line).toBeLessThan(resume);
  });

  test("Ctrl-C stops it with a summary of acknowledged, failed and indeterminate lines", async () => {
    await using producer = new MetaqProcess(["produce", "logs-stop", ...address], {}, {
      stdin: true,
    });
    producer.child.stdin!.write(Array.from({ length: 1000 }, (_, i) => `m${i}\n`).join(""));
    await waitFor(
      "1000 lines stored",
      async () => (await storedCount(broker, "logs-stop")) === 1000,
    );
    const exit = await producer.stop("SIGINT");
    expect(exit.code).toBe(130);
    expect(producer.stderr).toMatch(
      /^Produced 1,000 messages \(3\.8 KiB\) in [\d.]+ s: [\d,]+ msg\/s, 0 failed, 0 indeterminate\nStopped by Ctrl-C\n/m,
    );
    expect(producer.stderr).toContain(
      "Resume from line 1001: tail -n +1001 INPUT | metaq produce logs-stop\n",
    );
  });
});

import { expect, test } from "bun:test";
import * as fs from "node:fs";
import { MetaqClient } from "../../lib/client/client.ts";
import { Producer } from "../../lib/client/producer.ts";
import { BrokerProcess, readPartitionBytes, runMetaq } from "../support/harness.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";
import { decodeRecords } from "../../lib/protocol/record.ts";

test("help and usage errors are one clear line, never a stack trace", async () => {
  const help = await runMetaq(["--help"]);
  expect(help.code).toBe(0);
  for (const command of ["serve", "produce", "consume", "topics", "stats", "verify", "version"]) {
    expect(help.stdout).toContain(command);
  }
  const unknown = await runMetaq(["frobnicate"]);
  expect([unknown.code, unknown.stderr.trim()]).toEqual([
    2,
    "metaq: unknown command 'frobnicate' (see 'metaq --help')",
  ]);
  const missing = await runMetaq(["produce"]);
  expect(missing.code).toBe(2);
  expect(missing.stderr.trim().split("\n").length).toBe(1);
  const badFlag = await runMetaq(["consume", "t", "--bogus"]);
  expect(badFlag.stderr).toContain("see 'metaq consume --help'");
  expect(badFlag.stderr).not.toContain("    at ");
  const produceHelp = await runMetaq(["produce", "--help"]);
  expect(produceHelp.stdout).toContain("Examples:");
});

test("produce and consume through the CLI round-trip every line", async () => {
  await using temp = tempDir();
  await using broker = await BrokerProcess.start({
    dataDir: temp.path,
    args: ["--partitions", "3"],
  });
  const lines = Array.from({ length: 20_000 }, (_, i) => `line ${i} ${"x".repeat(i % 50)}`);
  const produced = await runMetaq(["produce", "lines", "--broker", broker.address], {
    input: `${lines.join("\n")}\n`,
  });
  expect(produced.code).toBe(0);
  expect(produced.stderr).toMatch(/Produced 20,000 messages .* 0 failed/);
  const consumed = await runMetaq([
    "consume",
    "lines",
    "--broker",
    broker.address,
    "--from-beginning",
  ]);
  expect(consumed.code).toBe(0);
  expect(consumed.stdout.trimEnd().split("\n").sort()).toEqual([...lines].sort());
  const json = await runMetaq([
    "consume",
    "lines",
    "--broker",
    broker.address,
    "--partition",
    "1",
    "--max",
    "2",
    "--format",
    "json",
  ]);
  const [first, second] = json.stdout.trim().split("\n").map((line) => JSON.parse(line));
  expect(first).toMatchObject({
    topic: "lines",
    partition: 1,
    offset: 0,
    flag: 0,
    attribute: null,
  });
  expect(second.offset).toBe(20 + Buffer.byteLength(first.payload));
  const one = await runMetaq([
    "produce",
    "lines",
    "--broker",
    broker.address,
    "--message",
    "solo",
    "--partition",
    "2",
    "--attribute",
    "k=v",
  ]);
  expect(one.code).toBe(0);
  const last = await runMetaq([
    "consume",
    "lines",
    "--broker",
    broker.address,
    "--partition",
    "2",
    "--format",
    "json",
  ]);
  expect(JSON.parse(last.stdout.trim().split("\n").at(-1)!)).toMatchObject({
    payload: "solo",
    attribute: "k=v",
    flag: 1,
  });
  const topics = await runMetaq(["topics", "--broker", broker.address]);
  expect(topics.stdout).toMatch(/lines\s+3\s+20001/);
});

test("producing to an unreachable broker fails with one line and exit code 1", async () => {
  const result = await runMetaq(["produce", "t", "--broker", "127.0.0.1:1", "--message", "x"]);
  expect(result.code).toBe(1);
  expect(result.stderr.trim()).toMatch(
    /^metaq produce: Cannot produce to t: Cannot connect to 127\.0\.0\.1:1/,
  );
});

test("a broker killed with SIGKILL mid-produce loses no acknowledged message", async () => {
  await using temp = tempDir();
  await using broker = await BrokerProcess.start({
    dataDir: temp.path,
    args: ["--partitions", "2"],
  });
  const client = new MetaqClient({
    brokers: [broker.address],
    reconnectAttemptsMax: 1,
    requestTimeoutMs: 5000,
  });
  const producer = new Producer(client, { windowMax: 256 });
  const acked = new Set<string>();
  let sent = 0;
  let killed: Promise<unknown> | undefined;
  try {
    for (; sent < 200_000; sent++) {
      const payload = `m-${sent}`;
      await producer.whenWritable();
      // Killed once puts are being acknowledged, with a window of them in flight.
      if (acked.size >= 500) killed ??= broker.kill("SIGKILL");
      if (broker.child?.exitCode !== null || broker.child?.signalCode) break;
      producer.send("crash", payload, { partition: sent % 2 }).then(
        () => acked.add(payload),
        () => {},
      );
    }
    await producer.flush().catch(() => {});
  } finally {
    client.close();
  }
  await killed;
  await broker.kill("SIGKILL");
  expect(acked.size).toBeGreaterThan(0);
  await broker.restart();
  const stored = new Set<string>();
  for (const partition of [0, 1]) {
    for (const record of decodeRecords(readPartitionBytes(temp.path, "crash", partition))) {
      stored.add(Buffer.from(record.data).toString());
    }
  }
  const lost = [...acked].filter((payload) => !stored.has(payload));
  expect(lost).toEqual([]);
  const consumed = await runMetaq(["consume", "crash", "--broker", broker.address]);
  expect(new Set(consumed.stdout.trim().split("\n")).size).toBe(stored.size);
});

test("SIGTERM shuts down cleanly with exit code 0, and a second broker cannot share the data", async () => {
  await using temp = tempDir();
  await using broker = await BrokerProcess.start({ dataDir: temp.path });
  const second = await runMetaq(["serve", "--port", "0", "--no-http", "--data", temp.path], {
    timeoutMs: 10_000,
  });
  expect(second.code).toBe(1);
  expect(second.stderr).toContain("is in use by process");
  await runMetaq(["produce", "t", "--broker", broker.address, "--message", "bye"]);
  const exit = await broker.kill("SIGTERM");
  expect(exit.code).toBe(0);
  expect(broker.stderr).toContain("Stopped cleanly");
  expect(fs.existsSync(`${temp.path}/.lock`)).toBe(false);
});

test("a damaged sealed segment is refused at start-up, found by verify and cut by verify --repair", async () => {
  await using temp = tempDir();
  await using broker = await BrokerProcess.start({
    dataDir: temp.path,
    args: ["--config", writeConfig(temp.path)],
  });
  const lines = Array.from({ length: 3000 }, (_, i) => `message number ${i}`).join("\n");
  expect(
    (await runMetaq(["produce", "dmg", "--broker", broker.address, "--partition", "0"], {
      input: lines,
    })).code,
  ).toBe(0);
  await broker.kill("SIGTERM");
  const dir = `${temp.path}/dmg-0`;
  const segments = fs.readdirSync(dir).filter((name) => name.endsWith(".meta")).sort();
  expect(segments.length).toBeGreaterThan(2);
  const victim = `${dir}/${segments[1]}`;
  const bytes = fs.readFileSync(victim);
  bytes[100] ^= 0xff;
  fs.writeFileSync(victim, bytes);

  await broker.restart();
  expect(broker.stderr).toContain("Refusing damaged partition");
  const consume = await runMetaq([
    "consume",
    "dmg",
    "--broker",
    broker.address,
    "--partition",
    "0",
  ]);
  expect(consume.code).toBe(1);
  expect(consume.stderr).toContain("metaq verify --repair");
  await broker.kill("SIGTERM");

  const verify = await runMetaq(["verify", "--data", temp.path]);
  expect(verify.code).toBe(1);
  expect(verify.stdout).toContain("dmg-0: DAMAGED");
  const repair = await runMetaq(["verify", "--data", temp.path, "--repair"]);
  expect(repair.code).toBe(0);
  expect(repair.stdout).toMatch(/dmg-0: ok, .*repaired: cut at offset \d+/);
  expect(fs.readdirSync(dir).filter((name) => name.endsWith(".damaged")).length).toBeGreaterThan(0);
  await broker.restart();
  const after = await runMetaq(["consume", "dmg", "--broker", broker.address, "--partition", "0"]);
  expect(after.code).toBe(0);
  const kept = after.stdout.trim().split("\n");
  expect(kept.length).toBeGreaterThan(0);
  expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => `message number ${i}`));
});

function writeConfig(dir: string): string {
  const file = `${dir}/server.ini`;
  fs.writeFileSync(file, "[system]\nmaxSegmentSize=8192\n[topic=*]\n");
  return file;
}

test("SIGTERM answers every put already taken, refuses later ones with 503, and keeps them all", async () => {
  await using temp = tempDir();
  const control = `${temp.path}/fsync-control`;
  const dataDir = `${temp.path}/data`;
  await using broker = await BrokerProcess.start({
    dataDir,
    env: { METAQ_TEST_FSYNC_CONTROL: control },
  });
  using socket = await RawSocket.connect(broker.port);
  socket.write("put drain 0 5 0 1\r\nwarm!");
  expect((await socket.readFrame()).header).toMatch(/^result 200 /);
  // Every fsync now takes 1.5 s: the puts below are still waiting for theirs at SIGTERM.
  fs.writeFileSync(control, "delay 1500\n");
  const count = 50;
  for (let i = 0; i < count; i++) {
    socket.write(`put drain 0 5 0 ${i + 2}\r\nm-${String(i).padStart(3, "0")}`);
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  const exited = broker.kill("SIGTERM");
  // Once the broker says it is shutting down, a new put is read during the drain.
  for (let i = 0; i < 500 && !broker.stderr.includes("Shutting down"); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  expect(broker.stderr).toContain("Shutting down");
  socket.write("put drain 0 5 0 999\r\nlate!"); // read during the drain: refused, not lost
  const replies = new Map<number, string>();
  for (let i = 0; i < count + 1; i++) {
    const { header, body } = await socket.readFrame(10_000);
    const [, code, , opaque] = header.split(" ");
    replies.set(Number(opaque), `${code} ${body.toString()}`);
  }
  for (let i = 0; i < count; i++) expect(replies.get(i + 2)).toMatch(/^200 \d+ 0 \d+$/);
  expect(replies.get(999)).toMatch(/^503 .*shutting down/);
  expect(await socket.waitClosed(10_000)).toBe(true);
  expect((await exited).code).toBe(0);
  fs.rmSync(control);
  const stored = decodeRecords(readPartitionBytes(dataDir, "drain", 0)).map((record) =>
    new TextDecoder().decode(record.data)
  );
  expect(stored).toEqual([
    "warm!",
    ...Array.from({ length: count }, (_, i) => `m-${String(i).padStart(3, "0")}`),
  ]);
});

test("SIGTERM keeps a recently active connection open long enough to refuse its next request", async () => {
  await using temp = tempDir();
  await using broker = await BrokerProcess.start({ dataDir: `${temp.path}/data` });
  using socket = await RawSocket.connect(broker.port);
  socket.write("put drain 0 5 0 1\r\nwarm!");
  expect((await socket.readFrame()).header).toMatch(/^result 200 /);
  const exited = broker.kill("SIGTERM");
  for (let i = 0; i < 500 && !broker.stderr.includes("Shutting down"); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  // A client that was busy a moment ago sends again 150 ms later, while the broker drains: the
  // request is answered (refused with 503, or stored if the drain had not begun on a slow
  // machine), never lost unanswered in the close. The old 50 ms drain closed it unanswered.
  await new Promise((resolve) => setTimeout(resolve, 150));
  socket.write("put drain 0 5 0 2\r\nlate!");
  const { header, body } = await socket.readFrame(10_000);
  expect(`${header} ${body.toString()}`).toMatch(/^result (503 .*shutting down|200 )/);
  expect(await socket.waitClosed(10_000)).toBe(true);
  expect((await exited).code).toBe(0);
});

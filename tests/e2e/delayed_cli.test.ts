/**
 * Delayed messages through the CLI against the compiled binary: `metaq produce --delay` and
 * `--at` hold every line until its time, and bad flags get one clear line.
 */
import { expect, test } from "bun:test";
import { parseScheduledAttribute } from "../../lib/protocol/delayed.ts";
import { decodeRecords, splitAttribute } from "../../lib/protocol/record.ts";
import { BrokerProcess, runMetaq } from "../support/harness.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

/** Payload and scheduled time of every message in `topic`-0. */
async function delivered(port: number, topic: string) {
  using socket = await RawSocket.connect(port);
  socket.write(`get ${topic} g 0 0 1048576 1\r\n`);
  const reply = await socket.readFrame();
  if (!reply.header.startsWith("value")) return [];
  return decodeRecords(new Uint8Array(reply.body)).map((record) => {
    const { attribute, payload } = splitAttribute(record.flag, record.data);
    return {
      payload: new TextDecoder().decode(payload),
      scheduledAtMs: parseScheduledAttribute(attribute ?? "")?.scheduled.scheduledAtMs,
    };
  });
}

test("metaq produce --delay and --at hold each line until its time", async () => {
  await using temp = tempDir();
  await using broker = await BrokerProcess.start({
    dataDir: temp.path,
    args: ["--partitions", "1"],
  });
  const before = Date.now();
  const produced = await runMetaq(
    ["produce", "later", "--broker", broker.address, "--delay", "1500ms"],
    { input: "one\ntwo\nthree\n" },
  );
  expect(produced.code).toBe(0);
  expect(produced.stderr).toMatch(/Produced 3 messages .* 0 failed/);
  const at = new Date(Math.ceil((Date.now() + 1000) / 1000) * 1000);
  const atIso = at.toISOString().replace(".000Z", "Z");
  const fixed = await runMetaq(
    ["produce", "later", "--broker", broker.address, "--at", atIso, "--message", "four"],
  );
  expect(fixed.code).toBe(0);
  let found: Awaited<ReturnType<typeof delivered>> = [];
  await waitFor("four messages", async () => {
    found = await delivered(broker.port, "later");
    for (const message of found) expect(Date.now()).toBeGreaterThanOrEqual(message.scheduledAtMs!);
    return found.length === 4;
  }, { timeoutMs: 15_000, everyMs: 50 });
  expect(found.map((m) => m.payload).sort()).toEqual(["four", "one", "three", "two"]);
  const four = found.find((m) => m.payload === "four")!;
  expect(four.scheduledAtMs).toBe(at.getTime());
  for (const m of found.filter((m) => m.payload !== "four")) {
    expect(m.scheduledAtMs! - before).toBeGreaterThanOrEqual(1500);
  }

  const bad = await runMetaq([
    "produce",
    "later",
    "--broker",
    broker.address,
    "--delay",
    "soon",
    "--message",
    "x",
  ]);
  expect([bad.code, bad.stderr.trim()]).toEqual([
    2,
    "metaq produce: Cannot use --delay soon: expected a duration such as 500ms, 30s, 15m, 2h, 40d",
  ]);
  const both = await runMetaq(
    [
      "produce",
      "later",
      "--broker",
      broker.address,
      "--delay",
      "1s",
      "--at",
      atIso,
      "--message",
      "x",
    ],
  );
  expect(both.stderr.trim()).toBe("metaq produce: Cannot combine --delay and --at");
  const local = await runMetaq(
    [
      "produce",
      "later",
      "--broker",
      broker.address,
      "--at",
      "2026-12-24T09:00:00",
      "--message",
      "x",
    ],
  );
  expect(local.stderr).toContain("expected an ISO 8601 time with a zone");
}, 60_000);

test(
  "metaq schedule: a schedule publishes every second once, none skipped, across a SIGKILL and restart",
  async () => {
    await using temp = tempDir();
    await using broker = await BrokerProcess.start({
      dataDir: temp.path,
      args: ["--partitions", "1"],
    });
    const run = (args: string[]) => runMetaq(["schedule", ...args, "--broker", broker.address]);
    const added = await run([
      "add",
      "tick",
      "--cron",
      "* * * * * ?",
      "--topic",
      "ticks",
      "--partition",
      "0",
      "--message",
      "tick",
    ]);
    expect([added.code, added.stdout.trim()]).toEqual([0, "added tick"]);
    expect((await run(["list"])).stdout).toMatch(
      /^tick {2}'\* \* \* \* \* \?' {2}-> ticks-0 {2}next /,
    );
    await waitFor("two ticks", async () => (await delivered(broker.port, "ticks")).length >= 2, {
      timeoutMs: 15_000,
      everyMs: 100,
    });
    await broker.kill("SIGKILL");
    await broker.restart();
    const upAtMs = Date.now();
    let found: Awaited<ReturnType<typeof delivered>> = [];
    await waitFor("two ticks after the restart", async () => {
      found = await delivered(broker.port, "ticks");
      return found.filter((m) => m.scheduledAtMs! >= upAtMs).length >= 2;
    }, { timeoutMs: 15_000, everyMs: 100 });
    const times = found.map((m) => m.scheduledAtMs!);
    expect(times.every((at) => at % 1000 === 0)).toBe(true);
    expect(new Set(times).size).toBe(times.length); // no occurrence twice
    expect(times).toEqual([...times].sort((a, b) => a - b));
    // Every second once, none skipped: those missed while it was down are published late.
    const gaps = times.slice(1).map((at, i) => at - times[i]);
    expect(gaps.every((gap) => gap === 1000), `${upAtMs} ${JSON.stringify(times)}`).toBe(true);

    expect((await run(["pause", "tick"])).stdout.trim()).toBe("paused tick");
    expect(JSON.parse((await run(["list", "--format", "json"])).stdout)[0].paused).toBe(true);
    expect((await run(["rm", "tick"])).stdout.trim()).toBe("removed tick");
    expect((await run(["list"])).stdout.trim()).toBe("no schedules");
    const missing = await run(["rm", "tick"]);
    expect([missing.code, missing.stderr]).toEqual([
      1,
      expect.stringContaining("no such schedule"),
    ]);
    const bad = await run(["add", "x", "--cron", "* * *", "--topic", "ticks", "--message", "m"]);
    expect([bad.code, bad.stderr]).toEqual([1, expect.stringContaining("expected 6 or 7 fields")]);
    const unknown = await runMetaq(["schedule", "frob"]);
    expect(unknown.code).toBe(2);
  },
  60_000,
);

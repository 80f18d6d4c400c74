/**
 * A new user's first session with `dist/metaq`, end to end, as one story: start a broker, keep
 * its address in a profile, produce, read back by count, by position and by time, in the
 * formats people script with, look at topics and groups, rewind a group, and make the usual
 * mistakes (each with its exit code and a one-line error).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { BrokerProcess, runMetaq } from "../support/harness.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

let temp: TempDir;
let broker: BrokerProcess;
/** The user's environment: profiles in their own config directory, nothing else set. */
let env: Record<string, string>;

beforeAll(async () => {
  temp = tempDir();
  broker = await BrokerProcess.start({
    dataDir: path.join(temp.path, "data"),
    args: ["--partitions", "2"],
  });
  const configHome = path.join(temp.path, "config");
  fs.mkdirSync(path.join(configHome, "metaq"), { recursive: true });
  fs.writeFileSync(
    path.join(configHome, "metaq", "config.ini"),
    [
      "; the broker this user works with",
      "[profile=default]",
      `broker = ${broker.address}`,
      "[profile=elsewhere]",
      "broker = nothing-here.invalid",
      "[profile=typo]",
      "brokers = 127.0.0.1",
      "",
    ].join("\n"),
  );
  env = { XDG_CONFIG_HOME: configHome, METAQ_PROFILE: "" };
});

afterAll(async () => {
  await broker.kill("SIGKILL");
  temp[Symbol.dispose]();
});

/** `metaq ARGS` as the user types it: no --broker, the default profile supplies it. */
function metaq(args: string[], input?: string) {
  return runMetaq(args, { input, env });
}

test("a new user's session", async () => {
  // Produce: 100 orders with keys, through a pipe.
  const lines = Array.from({ length: 100 }, (_, i) => `{"order":${i + 1}}`).join("\n");
  const produced = await metaq(["produce", "orders", "--key", "customer-1"], lines);
  expect(produced.code).toBe(0);
  expect(produced.stderr).toMatch(/^Produced 100 messages .* 0 failed, 0 indeterminate$/m);
  const marker = Date.now() + 2;
  await waitFor("the clock to pass the first batch", () => Date.now() > marker, { everyMs: 1 });
  const since = new Date().toISOString();
  expect((await metaq(["produce", "orders", "--message", '{"order":"late"}'])).code).toBe(0);

  // By count: the first three of the keyed partition, the last of each, as a format string.
  const first = await metaq(["consume", "orders", "--partition", "1", "--max", "3"]);
  expect([first.code, first.stdout]).toEqual([
    0,
    '{"order":1}\n{"order":2}\n{"order":3}\n',
  ]);
  const last = await metaq([
    "consume",
    "orders",
    "--last",
    "1",
    "-f",
    "%k %s",
  ]);
  expect(last.stdout.split("\n").filter(Boolean).sort()).toEqual(
    [' {"order":"late"}', 'customer-1 {"order":100}'].sort(),
  );

  // By time: only what was written after `since`, as JSON with its timestamp.
  const recent = await metaq(["consume", "orders", "--from-time", since, "--format", "json"]);
  const messages = recent.stdout.trim().split("\n").map((line) => JSON.parse(line));
  expect(messages.map((message) => message.payload)).toEqual(['{"order":"late"}']);
  expect(Date.parse(messages[0].timestamp)).toBeGreaterThanOrEqual(Date.parse(since));

  // Admin: topics, one topic's partitions, a group rewound with a dry run first.
  const topics = await metaq(["topics"]);
  expect(topics.stdout).toMatch(/^orders\s+2\s+101\s/m);
  const described = JSON.parse(
    (await metaq(["topics", "describe", "orders", "--format", "json"])).stdout,
  );
  expect(described.partitions.reduce((n: number, p: { messages: number }) => n + p.messages, 0))
    .toBe(101);
  const dry = await metaq([
    "groups",
    "reset",
    "billing",
    "orders",
    "--to",
    "-5",
    "--create",
    "--dry-run",
  ]);
  expect(dry.stdout).toContain("(dry run: nothing changed)");
  expect((await metaq(["groups", "billing"])).code).toBe(1); // still no such group
  expect((await metaq(["groups", "reset", "billing", "orders", "--to", "-5", "--create"])).code)
    .toBe(0);
  const lag = JSON.parse((await metaq(["groups", "billing", "--format", "json"])).stdout)[0];
  expect(lag.partitions.reduce((n: number, p: { lagMessages: number }) => n + p.lagMessages, 0))
    .toBe(6); // five of the keyed partition, the one late message of the other
  const member = await metaq(["consume", "orders", "--group", "billing", "--max", "6"]);
  expect(member.stdout.trim().split("\n").sort()).toEqual(
    [
      '{"order":96}',
      '{"order":97}',
      '{"order":98}',
      '{"order":99}',
      '{"order":100}',
      '{"order":"late"}',
    ].sort(),
  );

  // Mistakes: each one line on stderr with its exit code.
  const mistakes: [string[], number, RegExp][] = [
    [["consum", "orders"], 2, /unknown command 'consum' \(did you mean 'consume'\?\)/],
    [["consume", "ordres"], 1, /Cannot consume ordres: no such topic/],
    [["consume", "orders", "--partition", "7"], 1, /partition 7 does not exist/],
    [["consume", "orders", "--from-time", "noon"], 2, /Cannot use --from-time noon/],
    [["produce", "orders", "-H", "novalue", "--message", "x"], 2, /expected NAME=VALUE/],
    [
      ["topics", "--profile", "elswhere"],
      2,
      /no \[profile=elswhere\] section \(did you mean elsewhere\?\)/,
    ],
    [["topics", "--profile", "typo"], 2, /line 7: unknown key brokers \(did you mean broker\?\)/],
  ];
  for (const [args, code, message] of mistakes) {
    const result = await metaq(args);
    expect([args.join(" "), result.code]).toEqual([args.join(" "), code]);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(message);
  }
});

test("profiles: named, from METAQ_PROFILE, overridden by flags; a host alone means port 8123", async () => {
  // A named profile whose host has no port: the client dials port 8123 there.
  const elsewhere = await metaq(["topics", "--profile", "elsewhere"]);
  expect(elsewhere.code).toBe(1);
  expect(elsewhere.stderr).toContain("nothing-here.invalid:8123");
  const fromEnv = await runMetaq(["topics"], { env: { ...env, METAQ_PROFILE: "elsewhere" } });
  expect(fromEnv.stderr).toContain("nothing-here.invalid:8123");
  // The flag wins over the profile; the variable wins over the profile too.
  const flag = await metaq(["topics", "--profile", "elsewhere", "--broker", broker.address]);
  expect([flag.code, flag.stdout]).toEqual([0, expect.stringMatching(/^TOPIC/)]);
  const variable = await runMetaq(["topics", "--profile", "elsewhere"], {
    env: { ...env, METAQ_BROKER: broker.address },
  });
  expect(variable.code).toBe(0);
  const host = await metaq(["topics", "--broker", "nothing-here.invalid"]);
  expect(host.stderr).toContain("nothing-here.invalid:8123");
});

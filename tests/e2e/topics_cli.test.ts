/**
 * `metaq topics create|delete` through `dist/metaq` against a `metaq serve` child: counts that
 * server.ini does not give survive a SIGKILL and restart, shrinking and unknown topics are
 * one-line errors with exit 1, flag mistakes exit 2, and a delete removes the files.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { BrokerProcess, runMetaq, startWithConfig } from "../support/harness.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";

const CONFIG = `[system]
numPartitions=2
[topic=orders]
`;

let temp: TempDir;
let broker: BrokerProcess;

beforeAll(async () => {
  temp = tempDir();
  broker = await startWithConfig(temp.path, CONFIG);
});

afterAll(async () => {
  await broker.kill("SIGKILL");
  temp[Symbol.dispose]();
});

const topics = (...args: string[]) => runMetaq(["topics", ...args, "--broker", broker.address]);
const dirs = (topic: string) =>
  fs.readdirSync(broker.options.dataDir).filter((name) => name.startsWith(`${topic}-`)).sort();

describe("metaq topics create and delete", () => {
  test("create makes a topic server.ini does not name; grow a configured one", async () => {
    const created = await topics("create", "clicks", "--partitions", "3");
    expect([created.code, created.stdout, created.stderr]).toEqual([
      0,
      "Created topic clicks with 3 partitions\n",
      "",
    ]);
    expect(dirs("clicks")).toEqual(["clicks-0", "clicks-1", "clicks-2"]);
    const grown = await topics("create", "orders", "--partitions", "4", "--format", "json");
    expect(grown.code).toBe(0);
    expect(JSON.parse(grown.stdout)).toEqual({
      topic: "orders",
      partitions: 4,
      previous: 2,
      changed: true,
    });
    const same = await topics("create", "orders", "--partitions", "4");
    expect([same.code, same.stdout]).toEqual([
      0,
      "Topic orders has 4 partitions already: nothing changed\n",
    ]);
    const produced = await runMetaq(
      ["produce", "clicks", "--partition", "2", "--broker", broker.address],
      { input: "a\nb\n" },
    );
    expect(produced.code).toBe(0);
  });

  test("the counts survive a SIGKILL and a restart on the same data", async () => {
    await broker.kill("SIGKILL");
    await broker.restart();
    const listed = await topics("--format", "json");
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout).topics).toEqual(expect.arrayContaining([
      expect.objectContaining({ name: "clicks", numPartitions: 3, messages: 2 }),
      expect.objectContaining({ name: "orders", numPartitions: 4 }),
    ]));
  });

  test("refusals are one line with a non-zero exit", async () => {
    const shrink = await topics("create", "orders", "--partitions", "2");
    expect(shrink.code).toBe(1);
    expect(shrink.stderr).toStartWith(
      "metaq topics: Cannot shrink topic orders from 4 to 2 partitions: partitions are addressed",
    );
    expect(shrink.stderr.trimEnd().split("\n").length).toBe(1);
    const unknown = await topics("delete", "nope");
    expect([unknown.code, unknown.stderr]).toEqual([
      1,
      "metaq topics: Cannot delete topic nope: no such topic (metaq topics lists them)\n",
    ]);
    const internal = await topics("delete", "__meta");
    expect(internal.code).toBe(1);
    expect(internal.stderr).toContain("topics starting with '__' hold the broker's own state");
    const zero = await topics("create", "x", "--partitions", "0");
    expect([zero.code, zero.stderr]).toEqual([
      2,
      "metaq topics: Cannot use --partitions 0: must be between 1 and 1024\n",
    ]);
    const typo = await topics("creat", "x");
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain("(did you mean 'create'?)");
    const misplaced = await topics("describe", "orders", "--partitions", "3");
    expect([misplaced.code, misplaced.stderr]).toEqual([
      2,
      "metaq topics: Cannot use --partitions: only 'topics create' takes it\n",
    ]);
  });

  test("delete removes the files; the topic is refused after a restart too", async () => {
    const deleted = await topics("delete", "clicks");
    expect([deleted.code, deleted.stdout]).toEqual([
      0,
      "Deleted topic clicks (3 partition(s) and their files removed, 0 group offset(s))\n",
    ]);
    expect(dirs("clicks")).toEqual([]);
    await broker.kill("SIGKILL");
    await broker.restart();
    const again = await topics("delete", "clicks");
    expect([again.code, again.stderr]).toEqual([
      1,
      "metaq topics: Cannot delete topic clicks: it is deleted already\n",
    ]);
    const consumed = await runMetaq(["consume", "clicks", "--broker", broker.address]);
    expect(consumed.code).not.toBe(0);
    expect(consumed.stderr).toContain("it was deleted (metaq topics create clicks");
    const listed = await topics("--format", "json");
    expect(JSON.parse(listed.stdout).topics.map((t: { name: string }) => t.name)).not.toContain(
      "clicks",
    );
    expect(fs.existsSync(path.join(broker.options.dataDir, "topic-catalogue"))).toBe(true);
  });
});

/**
 * @module Deno smoke test (`npm run test:deno`): the same sources run on Deno. Starts a broker
 * in-process on real files and a real port, produces and consumes through the TypeScript client,
 * and runs the CLI entry point. Exits non-zero on any mismatch.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as process from "node:process";
import { MetaqClient } from "../lib/client/client.ts";
import { Producer } from "../lib/client/producer.ts";
import { buildConfig } from "../lib/config/config.ts";
import { silentLogger } from "../lib/log.ts";
import { startBroker } from "../lib/server/start_broker.ts";
import { Consumer } from "../lib/client/consumer.ts";
import { GroupClient } from "../lib/client/group_client.ts";
import { groupsPlugin } from "../lib/server/group_commands.ts";
import { decodeRecords } from "../lib/store/record.ts";

function check(condition: unknown, message: string): void {
  if (!condition) {
    console.error(`deno smoke test failed: ${message}`);
    process.exit(1);
  }
}

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-deno-"));
try {
  const config = buildConfig({
    overrides: { serverPort: "0", dataPath: dataDir, numPartitions: "2", httpEnabled: "false" },
  });
  const broker = await startBroker({ config, logger: silentLogger });
  const client = new MetaqClient({ brokers: [`127.0.0.1:${broker.port}`] });
  const producer = new Producer(client, { windowMax: 64 });
  const sent = Array.from({ length: 500 }, (_, i) => `deno-${i}`);
  await Promise.all(sent.map((text) => producer.send("smoke", text, { partition: 0 })));
  const reply = await client.get({
    topic: "smoke",
    group: "g",
    partition: 0,
    offset: 0,
    maxSize: 1 << 20,
  });
  check(reply.kind === "records", `get returned ${reply.kind}`);
  const received = decodeRecords((reply as { bytes: Uint8Array }).bytes).map((record) =>
    new TextDecoder().decode(record.data)
  );
  check(
    JSON.stringify(received) === JSON.stringify(sent),
    "records read back differ from those sent",
  );
  check((await client.stats()).includes("cmd_put 500"), "stats do not count the puts");
  client.close();
  await broker.close();
  await smokeGroups();

  const deno = process.execPath;
  const help = spawnSync(deno, ["run", "-A", "main.ts", "--help"], { encoding: "utf8" });
  check(
    help.status === 0 && help.stdout.includes("produce"),
    `deno run main.ts --help failed: ${help.stderr}`,
  );
  console.log("deno smoke test passed: broker, client, consumer groups and CLI run on Deno");
} finally {
  fs.rmSync(dataDir, { recursive: true, force: true });
}

/** A consumer group on Deno: join, consume every message, commit, leave. */
async function smokeGroups(): Promise<void> {
  const groupsDir = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-deno-groups-"));
  try {
    const config = buildConfig({
      overrides: { serverPort: "0", dataPath: groupsDir, numPartitions: "3", httpEnabled: "false" },
    });
    const broker = await startBroker({ config, logger: silentLogger, plugins: [groupsPlugin()] });
    const client = new MetaqClient({ brokers: [`127.0.0.1:${broker.port}`] });
    const producer = new Producer(client);
    await Promise.all(Array.from({ length: 90 }, (_, i) => producer.send("grouped", `g-${i}`)));
    const seen = new Set<string>();
    const consumer = new Consumer(client, {
      group: "deno",
      maxDelayFetchMs: 100,
      recoverDir: path.join(groupsDir, "recover"),
    }).subscribe("grouped", (message) => void seen.add(new TextDecoder().decode(message.payload)));
    await consumer.start();
    for (let i = 0; i < 200 && seen.size < 90; i++) await new Promise((r) => setTimeout(r, 25));
    await consumer.close();
    check(seen.size === 90, `the group consumer saw ${seen.size} of 90 messages`);
    const [report] = await new GroupClient(client).describe("deno");
    check(report.partitions.every((p) => p.lag === 0), "the group did not commit its offsets");
    client.close();
    await broker.close();
  } finally {
    fs.rmSync(groupsDir, { recursive: true, force: true });
  }
}

/**
 * @module Deno smoke test (`npm run test:deno`): the same sources run on Deno. Starts a broker
 * in-process on real files and a real port, produces and consumes through the TypeScript client,
 * uses the HTTP API (served by the portable node:http listener) including a live event stream
 * that is still open at shutdown, and runs the CLI entry point. Exits non-zero on any mismatch,
 * or when something keeps the process alive after shutdown.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { MetaqClient } from "../lib/client/client.ts";
import { Producer } from "../lib/client/producer.ts";
import { TransactionalProducer } from "../lib/client/transaction.ts";
import { buildConfig } from "../lib/config/config.ts";
import { httpPlugin } from "../lib/http/plugin.ts";
import { silentLogger } from "../lib/log.ts";
import { startBroker } from "../lib/server/start_broker.ts";
import { Consumer } from "../lib/client/consumer.ts";
import { GroupClient } from "../lib/client/group_client.ts";
import { groupsPlugin } from "../lib/server/group_commands.ts";
import { decodeRecords } from "../lib/store/record.ts";
import { transactionsPlugin } from "../lib/tx/plugin.ts";

function check(condition: unknown, message: string): void {
  if (!condition) {
    console.error(`deno smoke test failed: ${message}`);
    process.exit(1);
  }
}

// Anything left running after shutdown (a socket, a stream, a timer) would keep Deno alive.
const watchdog = setTimeout(() => {
  console.error("deno smoke test failed: the process did not finish in 60 s");
  process.exit(1);
}, 60_000);

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-deno-"));
try {
  const config = buildConfig({
    overrides: { serverPort: "0", dataPath: dataDir, numPartitions: "2", dashboardHttpPort: "0" },
  });
  const broker = await startBroker({
    config,
    logger: silentLogger,
    plugins: [transactionsPlugin(), httpPlugin()],
  });
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
  const transactional = new TransactionalProducer(client);
  await transactional.transaction(async (tx) => {
    for (const text of ["tx-a", "tx-b"]) await tx.send("smoke", text, { partition: 1 });
  });
  const committed = await client.get({
    topic: "smoke",
    group: "g",
    partition: 1,
    offset: 0,
    maxSize: 1 << 20,
  });
  check(
    committed.kind === "records" &&
      decodeRecords(committed.bytes).map((record) => new TextDecoder().decode(record.data))
          .join(",") === "tx-a,tx-b",
    "a committed transaction's messages are not in the partition",
  );
  client.close();
  await checkHttp(`http://127.0.0.1:${broker.facts.get("httpPort")}`, broker.close);
  await smokeGroups();

  const deno = process.execPath;
  const help = spawnSync(deno, ["run", "-A", "main.ts", "--help"], { encoding: "utf8" });
  check(
    help.status === 0 && help.stdout.includes("produce"),
    `deno run main.ts --help failed: ${help.stderr}`,
  );
  console.log(
    "deno smoke test passed: broker, transactions, consumer groups, client, HTTP API and CLI run on Deno",
  );
} finally {
  fs.rmSync(dataDir, { recursive: true, force: true });
  clearTimeout(watchdog);
}

/** The HTTP API on Deno: produce, fetch, a live stream, metrics; then shutdown with it open. */
async function checkHttp(base: string, close: () => Promise<void>): Promise<void> {
  const produced = await fetch(`${base}/v1/topics/smokehttp/messages`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ payload: "over http", partition: 1 }] }),
  });
  check(produced.status === 200, `HTTP produce answered ${produced.status}`);
  await produced.body?.cancel();
  const fetched = await (await fetch(`${base}/v1/topics/smokehttp/partitions/1/messages`)).json();
  check(fetched.messages[0]?.payload === "over http", "HTTP fetch did not return the message");
  const stream = await fetch(`${base}/v1/topics/smokehttp/stream?partition=1&from=beginning`);
  const reader = stream.body!.getReader();
  let text = "";
  for (let reads = 0; reads < 20 && !text.includes("over http"); reads++) {
    text += new TextDecoder().decode((await reader.read()).value);
  }
  check(text.includes('"payload":"over http"'), "the HTTP stream did not deliver the message");
  const metrics = await (await fetch(`${base}/metrics`)).text();
  // 500 plain puts, 2 transactional ones and the one over HTTP.
  check(metrics.includes("metaq_put_requests_total 503"), "metrics do not count the puts");
  await close();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ended = await Promise.race([
    reader.read().then(() => true, () => true),
    new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), 5000)),
  ]);
  clearTimeout(timer);
  check(ended, "the open event stream did not end at shutdown");
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

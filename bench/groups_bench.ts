/**
 * @module Consumer-group throughput (a script, not a test): a broker child process, a topic filled
 * with small messages, then one and three group members reading all of it, first as consumers in
 * this process (each with its own connection), then as `metaq consume --group` processes.
 *
 * Usage: bun bench/groups_bench.ts [--messages N] [--bytes B] [--partitions P]
 * Uses dist/metaq (or $METAQ_BINARY); run `npm run build` first.
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { MetaqClient } from "../lib/client/client.ts";
import { Consumer } from "../lib/client/consumer.ts";
import { GroupClient } from "../lib/client/group_client.ts";
import { Producer } from "../lib/client/producer.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    messages: { type: "string", default: "200000" },
    bytes: { type: "string", default: "100" },
    partitions: { type: "string", default: "6" },
  },
});
const MESSAGES = Number(values.messages);
const BYTES = Number(values.bytes);
const PARTITIONS = Number(values.partitions);
const BINARY = process.env.METAQ_BINARY ?? path.resolve("dist/metaq");
const RUN_TIMEOUT_MS = 300_000;

interface Row {
  readonly what: string;
  readonly seconds: number;
}

async function main(): Promise<void> {
  if (!fs.existsSync(BINARY)) throw new Error(`${BINARY} not found: run 'npm run build' first`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-groups-bench-"));
  const broker = await startBroker(dir);
  const address = `127.0.0.1:${broker.port}`;
  const rows: Row[] = [];
  try {
    rows.push({ what: "produce (window 4096)", seconds: await produce(address) });
    for (const members of [1, 3]) {
      rows.push({
        what: `${members} member(s), in this process`,
        seconds: await inProcess(address, members),
      });
    }
    for (const members of [1, 3]) {
      rows.push({
        what: `${members} member(s), metaq consume processes`,
        seconds: await processes(address, members, dir),
      });
    }
  } finally {
    broker.child.kill("SIGTERM");
    await new Promise((resolve) => broker.child.once("exit", resolve));
    fs.rmSync(dir, { recursive: true, force: true });
  }
  console.log(
    `${MESSAGES} messages of ${BYTES} bytes, ${PARTITIONS} partitions, ${os.cpus().length} CPUs`,
  );
  for (const row of rows) {
    const rate = Math.round(MESSAGES / row.seconds).toLocaleString("en-US");
    const mib = (MESSAGES * BYTES / row.seconds / 1024 / 1024).toFixed(1);
    console.log(
      `${row.what.padEnd(40)} ${row.seconds.toFixed(2).padStart(7)} s  ${
        rate.padStart(9)
      } msg/s  ${mib} MiB/s`,
    );
  }
}

async function startBroker(dir: string): Promise<{ child: ChildProcess; port: number }> {
  const portsFile = path.join(dir, "ports.json");
  fs.writeFileSync(
    path.join(dir, "server.ini"),
    `[system]\nnumPartitions=${PARTITIONS}\n[topic=*]\n`,
  );
  const child = spawn(BINARY, [
    "serve",
    "--port",
    "0",
    "--no-http",
    "--data",
    path.join(dir, "data"),
    "--config",
    path.join(dir, "server.ini"),
    "--ports-file",
    portsFile,
  ], { stdio: ["ignore", "ignore", "inherit"] });
  await until(
    "the broker to start",
    () => fs.existsSync(portsFile) && fs.statSync(portsFile).size > 0,
  );
  return { child, port: JSON.parse(fs.readFileSync(portsFile, "utf8")).port };
}

async function produce(address: string): Promise<number> {
  const client = new MetaqClient({ brokers: [address] });
  const producer = new Producer(client, { windowMax: 4096 });
  const payload = new Uint8Array(BYTES).fill(120);
  const started = performance.now();
  for (let i = 0; i < MESSAGES; i++) {
    await producer.whenWritable();
    producer.send("bench", payload).catch((error) => {
      throw new Error(`produce failed: ${error}`);
    });
  }
  await producer.flush();
  client.close();
  return (performance.now() - started) / 1000;
}

async function inProcess(address: string, members: number): Promise<number> {
  const clients = Array.from({ length: members }, () => new MetaqClient({ brokers: [address] }));
  let delivered = 0;
  const consumers = clients.map((client) =>
    new Consumer(client, {
      group: `bench-in-${members}`,
      recoverDir: path.join(os.tmpdir(), "metaq-groups-bench-recover"),
      maxDelayFetchMs: 200,
    }).subscribe("bench", () => void delivered++)
  );
  const started = performance.now();
  await Promise.all(consumers.map((consumer) => consumer.start()));
  await until("every message", () => delivered >= MESSAGES);
  const seconds = (performance.now() - started) / 1000;
  for (const consumer of consumers) await consumer.close();
  for (const client of clients) client.close();
  return seconds;
}

async function processes(address: string, members: number, dir: string): Promise<number> {
  const group = `bench-proc-${members}`;
  const client = new MetaqClient({ brokers: [address] });
  const groups = new GroupClient(client);
  const started = performance.now();
  const children = Array.from(
    { length: members },
    () =>
      spawn(BINARY, [
        "consume",
        "bench",
        "--group",
        group,
        "--broker",
        address,
        "--commit-period",
        "100",
      ], {
        stdio: ["ignore", "ignore", "ignore"],
        env: { ...process.env, HOME: dir },
      }),
  );
  try {
    await until("the group to commit the end of every partition", async () => {
      const [report] = await groups.describe(group);
      return report.partitions.length === PARTITIONS &&
        report.partitions.every((p) => p.committed !== null && p.lag === 0 && p.end > 0);
    }, 50);
    return (performance.now() - started) / 1000;
  } finally {
    for (const child of children) child.kill("SIGTERM");
    await Promise.all(
      children.map((child) => new Promise((resolve) => child.once("exit", resolve))),
    );
    client.close();
  }
}

async function until(
  what: string,
  condition: () => boolean | Promise<boolean>,
  everyMs = 10,
): Promise<void> {
  const deadline = performance.now() + RUN_TIMEOUT_MS;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

await main();

/**
 * @module Transactional throughput (a script, not a test): messages per second committed in
 * local transactions of 1, 10 and 100 messages, from several connections at once, against an
 * in-process broker on real files in a temp dir (or `--broker host:port`). Prints one table
 * row per transaction size, plus plain puts for comparison.
 *
 *   bun bench/tx_bench.ts [--messages 20000] [--connections 8] [--bytes 100] [--broker h:p]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { MetaqClient } from "../lib/client/client.ts";
import { TransactionalProducer } from "../lib/client/transaction.ts";
import { buildConfig } from "../lib/config/config.ts";
import { silentLogger } from "../lib/log.ts";
import { type App, assemble } from "../lib/app/assemble.ts";

const { values } = parseArgs({
  options: {
    messages: { type: "string", default: "20000" },
    connections: { type: "string", default: "8" },
    bytes: { type: "string", default: "100" },
    broker: { type: "string" },
  },
});
const MESSAGES = Number(values.messages);
const CONNECTIONS = Number(values.connections);
const PAYLOAD = new Uint8Array(Number(values.bytes)).fill(120);
const TOPIC = "bench";
const PARTITIONS = 4;

async function main(): Promise<void> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-txbench-"));
  let running: App | undefined;
  try {
    let address = values.broker;
    if (!address) {
      running = await assemble({
        config: buildConfig({
          overrides: {
            serverPort: "0",
            dataPath: dataDir,
            numPartitions: String(PARTITIONS),
            httpEnabled: "false",
          },
        }),
        logger: silentLogger,
      });
      address = `127.0.0.1:${running.port}`;
    }
    console.log(
      `${MESSAGES} messages of ${PAYLOAD.length} bytes, ${CONNECTIONS} connections, ` +
        `${os.cpus().length} CPUs, ${os.platform()} ${os.arch()}, ${
          process.versions.bun ? `Bun ${process.versions.bun}` : `Node ${process.versions.node}`
        }`,
    );
    console.log("messages/tx  transactions/s  messages/s");
    for (const perTx of [1, 10, 100]) {
      const { seconds, transactions } = await runTransactions(address, perTx);
      console.log(
        `${String(perTx).padStart(11)}  ${rate(transactions, seconds).padStart(14)}  ${
          rate(MESSAGES, seconds).padStart(10)
        }`,
      );
    }
    const plainSeconds = await runPlain(address);
    console.log(
      `plain puts (one connection each, awaited one by one): ${
        rate(MESSAGES, plainSeconds)
      } messages/s`,
    );
  } finally {
    await running?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Each connection runs transactions back to back until MESSAGES are committed in all. */
async function runTransactions(address: string, perTx: number) {
  const clients = Array.from(
    { length: CONNECTIONS },
    () => new MetaqClient({ brokers: [address] }),
  );
  const transactions = Math.ceil(MESSAGES / perTx);
  let next = 0;
  const started = performance.now();
  await Promise.all(clients.map(async (client, index) => {
    const producer = new TransactionalProducer(client);
    while (next < transactions) {
      next += 1;
      await producer.transaction(async (tx) => {
        for (let i = 0; i < perTx; i++) {
          await tx.send(TOPIC, PAYLOAD, { partition: (index + i) % PARTITIONS });
        }
      });
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  for (const client of clients) client.close();
  return { seconds, transactions };
}

/** The same message count as plain puts, each awaited, on the same number of connections. */
async function runPlain(address: string): Promise<number> {
  const clients = Array.from(
    { length: CONNECTIONS },
    () => new MetaqClient({ brokers: [address] }),
  );
  let next = 0;
  const started = performance.now();
  await Promise.all(clients.map(async (client, index) => {
    while (next < MESSAGES) {
      next += 1;
      await client.put(TOPIC, index % PARTITIONS, { payload: PAYLOAD });
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  for (const client of clients) client.close();
  return seconds;
}

function rate(count: number, seconds: number): string {
  return Math.round(count / seconds).toLocaleString("en-US");
}

await main();

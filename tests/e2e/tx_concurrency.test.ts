/**
 * Concurrent transactions against the compiled binary: while 50 transactions from several
 * connections run between plain puts (every fifth one rolled back), a consumer keeps fetching
 * and must never see part of a transaction in a partition; afterwards every partition's files
 * are a valid sequence of records with each transaction contiguous.
 */
import { expect, test } from "bun:test";
import { MetaqClient } from "../../lib/client/client.ts";
import { Producer } from "../../lib/client/producer.ts";
import { TransactionalProducer } from "../../lib/client/transaction.ts";
import { decodeRecords } from "../../lib/protocol/record.ts";
import { BrokerProcess, readPartitionBytes } from "../support/harness.ts";
import { tempDir } from "../support/temp_dir.ts";

const PARTITIONS = 4;
const TRANSACTIONS = 50;
const PER_TX = 8;
const rolledBack = (n: number) => n % 5 === 4;
const decoder = new TextDecoder();

/** Transaction number of a transactional message (`t<n>-<i>`), else undefined. */
const txOf = (text: string) => /^t(\d+)-\d+$/.exec(text)?.[1];

/** Each transaction's messages per partition: 2 of its 8 in each of the 4 partitions. */
const perPartition = PER_TX / PARTITIONS;

test("50 concurrent transactions with plain puts: never seen in part, contiguous, valid logs", async () => {
  await using temp = tempDir();
  await using broker = await BrokerProcess.start({
    dataDir: temp.path,
    args: ["--partitions", String(PARTITIONS)],
  });
  const clients = Array.from({ length: 6 }, () => new MetaqClient({ brokers: [broker.address] }));
  try {
    const producers = clients.slice(0, 5).map((client) => new TransactionalProducer(client));
    const plain = new Producer(clients[5], { windowMax: 32 });
    const plainSends: Promise<unknown>[] = [];
    let running = true;
    // Five connections, each running its transactions one after another, all at once.
    const runOne = (n: number) =>
      producers[n % producers.length].transaction(async (tx) => {
        for (let i = 0; i < PER_TX; i++) {
          await tx.send("orders", `t${n}-${i}`, { partition: (n + i) % PARTITIONS });
          plainSends.push(
            plain.send("orders", `p${n}-${i}`, { partition: (n * 3 + i) % PARTITIONS }),
          );
        }
        if (rolledBack(n)) throw new Error("roll back");
      }).catch((error) => {
        if (!rolledBack(n)) throw error;
      });
    const work = Promise.all(producers.map(async (_, k) => {
      for (let n = k; n < TRANSACTIONS; n += producers.length) await runOne(n);
    })).finally(() => (running = false));

    const reader = new MetaqClient({ brokers: [broker.address] });
    clients.push(reader);
    let fetches = 0;
    while ((running || fetches === 0) && fetches < 2000) {
      for (let partition = 0; partition < PARTITIONS; partition++) {
        const reply = await reader.get({
          topic: "orders",
          group: "g",
          partition,
          offset: 0,
          maxSize: 1 << 20,
        });
        fetches += 1;
        if (reply.kind !== "records") continue;
        const seen = new Map<string, number>();
        for (const record of decodeRecords(reply.bytes)) {
          const n = txOf(decoder.decode(record.data));
          if (n !== undefined) seen.set(n, (seen.get(n) ?? 0) + 1);
        }
        for (const [n, count] of seen) {
          expect(rolledBack(Number(n)), `t${n} visible`).toBe(false);
          expect(count, `t${n} in partition ${partition} after ${fetches} fetches`).toBe(
            perPartition,
          );
        }
      }
    }
    await work;
    expect(fetches).toBeGreaterThan(PARTITIONS); // the reader ran while transactions did
    await Promise.all(plainSends);
  } finally {
    for (const client of clients) client.close();
  }
  await broker.kill("SIGTERM");

  let transactional = 0;
  for (let partition = 0; partition < PARTITIONS; partition++) {
    const bytes = readPartitionBytes(temp.path, "orders", partition);
    const records = decodeRecords(bytes); // throws on any checksum or length damage
    expect(records.reduce((sum, record) => sum + 20 + record.length, 0)).toBe(bytes.length);
    const texts = records.map((record) => decoder.decode(record.data));
    for (let n = 0; n < TRANSACTIONS; n++) {
      const positions = texts.flatMap((text, index) => txOf(text) === String(n) ? [index] : []);
      expect(positions.length, `t${n} in ${partition}`).toBe(rolledBack(n) ? 0 : perPartition);
      if (positions.length > 0) {
        expect(positions[positions.length - 1] - positions[0]).toBe(perPartition - 1);
      }
    }
    transactional += texts.filter((text) => txOf(text) !== undefined).length;
    expect(texts.filter((text) => text.startsWith("p")).length).toBe(
      TRANSACTIONS * PER_TX / PARTITIONS,
    );
  }
  expect(transactional).toBe(40 * PER_TX);
});

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MetaqClient } from "../../lib/client/client.ts";
import { BrokerError, ConnectionError } from "../../lib/client/errors.ts";
import { Producer } from "../../lib/client/producer.ts";
import {
  beginTransaction,
  runTransaction,
  TransactionalProducer,
} from "../../lib/client/transaction.ts";
import { MetaqXAResource, XA_CODES, XAError, type Xid } from "../../lib/client/xa_resource.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { payloads, recordsOf, startTxBroker, type TxBroker } from "../support/tx_broker.ts";

let temp: TempDir;
let broker: TxBroker;
const clients: MetaqClient[] = [];

function client(): MetaqClient {
  const made = new MetaqClient({ brokers: [`127.0.0.1:${broker.running.port}`] });
  clients.push(made);
  return made;
}

beforeAll(async () => {
  temp = tempDir();
  broker = await startTxBroker(temp.path);
});

afterAll(async () => {
  for (const made of clients) made.close();
  await broker.close();
  temp[Symbol.dispose]();
});

describe("local transactions through the client", () => {
  test("transaction() commits when the callback resolves and rolls back when it throws", async () => {
    const producer = new TransactionalProducer(client());
    const sent = await producer.transaction(async (tx) => {
      const first = await tx.send("multi", "kept-1", { partition: 3 });
      await tx.send("multi", "kept-2", { partition: 3, attribute: "a" });
      return first;
    });
    expect(sent.offset).toBe(-1);
    const failure = new Error("application failed");
    const thrown = await producer.transaction(async (tx) => {
      await tx.send("multi", "dropped", { partition: 3 });
      throw failure;
    }).catch((error) => error);
    expect(thrown).toBe(failure);
    const records = recordsOf(broker.running, "multi", 3);
    expect(records.map((record) => record.flag)).toEqual([0, 1]);
    expect(payloads(records)[0]).toBe("kept-1");
    expect(payloads(records).some((text) => text.endsWith("dropped"))).toBe(false);
  });

  test("explicit begin, commit and rollback; a finished transaction refuses more calls", async () => {
    const metaq = client();
    const tx = await beginTransaction(metaq, { timeoutSeconds: 30 });
    expect(tx.key).toMatch(/^TX:[^: ]+:1$/);
    await tx.send("test", "explicit", { partition: 1 });
    await tx.commit();
    expect(tx.state).toBe("committed");
    await expect(tx.send("test", "late", { partition: 1 })).rejects.toThrow("it is committed");
    const other = await beginTransaction(metaq);
    await other.send("test", "undone", { partition: 1 });
    await other.rollback();
    expect(payloads(recordsOf(broker.running, "test", 1))).toEqual(["explicit"]);
  });

  test("broker refusals arrive as BrokerErrors with MetaQ's text", async () => {
    const thrown = await runTransaction(client(), async (tx) => {
      await tx.send("test", "x", { partition: -1 });
    }).catch((error) => error);
    expect(thrown).toBeInstanceOf(BrokerError);
    expect(thrown.message).toBe("Invalid partition for transaction command:-1");
  });

  test("a transaction whose connection dropped fails with ConnectionError and was rolled back", async () => {
    const manager = broker.running.transactions.manager!;
    const metaq = client();
    const openBefore = manager.openCount;
    const tx = await beginTransaction(metaq);
    await tx.send("test", "lost", { partition: 0 });
    expect(manager.openCount).toBe(openBefore + 1);
    (await metaq.connection()).close();
    await expect(tx.commit()).rejects.toBeInstanceOf(ConnectionError);
    expect(tx.state).toBe("failed");
    for (let i = 0; i < 100 && manager.openCount > openBefore; i++) await Bun.sleep(10);
    expect(manager.openCount).toBe(openBefore);
    expect(payloads(recordsOf(broker.running, "test", 0))).not.toContain("lost");
  });
});

describe("concurrent transactions", () => {
  test("50 transactions from several connections interleaved with plain puts: every log is valid and each transaction contiguous", async () => {
    const producers = Array.from({ length: 5 }, () => new TransactionalProducer(client()));
    const plain = new Producer(client(), { windowMax: 64 });
    const plainSends: Promise<unknown>[] = [];
    const transactions = Array.from(
      { length: 50 },
      (_, n) =>
        producers[n % producers.length].transaction(async (tx) => {
          for (let i = 0; i < 8; i++) {
            await tx.send("multi", `t${n}-${i}`, { partition: (n + i) % 4 });
            plainSends.push(plain.send("multi", `p${n}-${i}`, { partition: (n * 3 + i) % 4 }));
          }
        }),
    );
    await Promise.all(transactions);
    await Promise.all(plainSends);
    for (let partition = 0; partition < 4; partition++) {
      const texts = payloads(recordsOf(broker.running, "multi", partition)); // decodes and checks CRCs
      for (let n = 0; n < 50; n++) {
        const positions = texts.flatMap((text, index) => text.startsWith(`t${n}-`) ? [index] : []);
        if (positions.length === 0) continue;
        expect(positions[positions.length - 1] - positions[0], `t${n} in ${partition}`).toBe(
          positions.length - 1,
        );
        expect(positions.map((index) => texts[index])).toEqual(
          [...positions.map((index) => texts[index])].sort((a, b) =>
            Number(a.split("-")[1]) - Number(b.split("-")[1])
          ),
        );
      }
    }
    const all = [0, 1, 2, 3].flatMap((partition) =>
      payloads(recordsOf(broker.running, "multi", partition))
    );
    expect(all.filter((text) => /^t\d+-\d$/.test(text)).length).toBe(400);
    expect(all.filter((text) => /^p\d+-\d$/.test(text)).length).toBe(400);
  });
});

describe("the XA resource", () => {
  const xid = (n: number): Xid => ({
    formatId: 7,
    globalId: new Uint8Array([0xca, 0xfe, n]),
    branchQualifier: "01",
  });

  test("start, send, end, prepare, recover, commit: the two-phase protocol a transaction manager drives", async () => {
    const resource = new MetaqXAResource(client(), { uniqueQualifier: "rm-a", timeoutSeconds: 30 });
    await resource.start(xid(1));
    await resource.send("multi", "xa-1", { partition: 2 });
    await expect(resource.prepare(xid(1))).rejects.toMatchObject({ code: XA_CODES.PROTO });
    await resource.end(xid(1));
    expect(await resource.prepare(xid(1))).toBe(XA_CODES.OK);
    const recovered = await resource.recover();
    expect(recovered).toContainEqual({
      formatId: 7,
      globalId: "cafe01",
      branchQualifier: "01",
      uniqueQualifier: "rm-a",
    });
    const other = new MetaqXAResource(client(), { uniqueQualifier: "rm-b" });
    expect(await other.recover()).toEqual([]);
    await resource.commit(xid(1), false);
    expect(payloads(recordsOf(broker.running, "multi", 2))).toContain("xa-1");
  });

  test("a branch without work prepares read-only; errors carry MetaQ's XA codes", async () => {
    const resource = new MetaqXAResource(client(), { uniqueQualifier: "rm-c" });
    await resource.start(xid(2));
    await resource.end(xid(2));
    expect(await resource.prepare(xid(2))).toBe(XA_CODES.RDONLY);
    const notStarted = await resource.commit(xid(2), true).catch((error) => error);
    expect(notStarted).toBeInstanceOf(XAError);
    expect(notStarted.code).toBe(XA_CODES.NOTA);
    await resource.start(xid(3));
    await resource.send("test", "xa-3", { partition: 0 });
    await resource.end(xid(3));
    const twoPhase = await resource.commit(xid(3), false).catch((error) => error);
    expect([twoPhase.code, twoPhase.message]).toEqual([
      XA_CODES.PROTO,
      "Cannot do 2 phase commit if the transaction has not been prepared.",
    ]);
    await resource.rollback(xid(3));
    expect(payloads(recordsOf(broker.running, "test", 0))).not.toContain("xa-3");
  });

  test("after a heuristic commit the resource sees XA_HEURCOM until it forgets the branch", async () => {
    const resource = new MetaqXAResource(client(), { uniqueQualifier: "rm-d" });
    await resource.start(xid(4));
    await resource.send("test", "xa-4", { partition: 1 });
    await resource.end(xid(4));
    await resource.prepare(xid(4));
    await client().extension("heuristic", ["commit", "XID:7:cafe04:01:rm-d"]);
    const heuristic = await resource.commit(xid(4), false).catch((error) => error);
    expect(heuristic.code).toBe(XA_CODES.HEURCOM);
    await resource.forget(xid(4));
    expect(await resource.recover()).toEqual([]);
    expect(payloads(recordsOf(broker.running, "test", 1))).toContain("xa-4");
  });
});

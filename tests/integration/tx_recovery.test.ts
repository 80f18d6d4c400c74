/**
 * Crash recovery of transactions, in process, on memory storage with the power-cut model
 * (files fall back to what was synced). The end-to-end SIGKILL tests of the compiled binary
 * are in tests/e2e/tx_crash.test.ts; these can afford to crash at every byte.
 */
import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { tempDir } from "../support/temp_dir.ts";
import { MemoryStorage } from "../../lib/store/storage_memory.ts";
import { type KillableStorage, killableStorage } from "../support/killable_storage.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { waitFor } from "../support/wait.ts";
import {
  ask,
  payloads,
  putLine,
  recordsOf,
  startTxBroker,
  type TxBroker,
  type TxHooks,
} from "../support/tx_broker.ts";

const XID = "XID:1:0a0b:01:rq";

/** A broker on `memory` through a fresh killable view. */
async function boot(
  memory: MemoryStorage,
  hooks: TxHooks = {},
  extra = "",
): Promise<{ broker: TxBroker; storage: KillableStorage }> {
  const storage = killableStorage(memory);
  const broker = await startTxBroker("/data", { storage, hooks, extra });
  return { broker, storage };
}

/** A power cut: the old broker can no longer touch storage, which falls back to synced data. */
function powerCut(memory: MemoryStorage, old: { broker: TxBroker; storage: KillableStorage }) {
  old.storage.kill();
  memory.crash();
  void old.broker.close().catch(() => {}); // frees its port; its storage calls now fail
}

async function withSocket<T>(broker: TxBroker, work: (socket: RawSocket) => Promise<T>) {
  using socket = await RawSocket.connect(broker.running.port);
  return await work(socket);
}

/** Plain records on multi-0 and multi-1, then a prepared XA branch with 3 messages in each. */
async function prepareBranch(broker: TxBroker): Promise<void> {
  await withSocket(broker, async (socket) => {
    for (const partition of [0, 1]) {
      await ask(
        socket,
        putLine({ topic: "multi", partition, body: `before-${partition}`, opaque: 1 }),
      );
    }
    expect((await ask(socket, `transaction ${XID} s BEGIN rq 2\r\n`)).header).toBe(
      "result 200 0 2",
    );
    for (let i = 0; i < 6; i++) {
      const body = `m${i}-p${i % 2}`;
      const reply = await ask(
        socket,
        putLine({ topic: "multi", partition: i % 2, body, txKey: XID, opaque: 3 }),
      );
      expect(reply.text).toEndWith(` ${i % 2} -1`);
    }
    expect((await ask(socket, `transaction ${XID} s PREPARE rq 4\r\n`)).text).toBe("0");
  });
}

const EXPECTED = {
  0: ["before-0", "m0-p0", "m2-p0", "m4-p0"],
  1: ["before-1", "m1-p1", "m3-p1", "m5-p1"],
};

describe("transaction recovery after a power cut", () => {
  test("a prepared branch comes back PREPARED, RECOVER lists it, and COMMIT_TWO_PHASE publishes it once", async () => {
    const memory = new MemoryStorage();
    const first = await boot(memory);
    await prepareBranch(first.broker);
    powerCut(memory, first);

    const second = await boot(memory);
    await withSocket(second.broker, async (socket) => {
      expect((await ask(socket, "transaction null s RECOVER rq 1\r\n")).text).toBe(XID);
      expect(recordsOf(second.broker.running, "multi", 0).length).toBe(1);
      const commit = await ask(socket, `transaction ${XID} s COMMIT_TWO_PHASE rq 2\r\n`);
      expect(commit.header).toBe("result 200 0 2");
      expect((await ask(socket, "transaction null s RECOVER rq 3\r\n")).text).toBe("");
    });
    expect(payloads(recordsOf(second.broker.running, "multi", 0))).toEqual(EXPECTED[0]);
    expect(payloads(recordsOf(second.broker.running, "multi", 1))).toEqual(EXPECTED[1]);
    await second.broker.close();

    const third = await boot(memory); // a clean restart changes nothing more
    expect(payloads(recordsOf(third.broker.running, "multi", 0))).toEqual(EXPECTED[0]);
    expect(payloads(recordsOf(third.broker.running, "multi", 1))).toEqual(EXPECTED[1]);
    await third.broker.close();
  });

  test("a commit cut off after any number of its appended bytes is completed exactly once", async () => {
    const batchBytes = 3 * (20 + 5); // three records of 5 bytes per partition
    for (let cut = 0; cut <= 2 * batchBytes; cut++) {
      const memory = new MemoryStorage();
      const crashed = { value: false };
      const holder: { node?: { broker: TxBroker; storage: KillableStorage } } = {};
      const first = await boot(memory, {
        crashAfterCommitBytes: cut, // the commit below appends `cut` bytes, then this "dies"
        crash: () => {
          crashed.value = true;
          powerCut(memory, holder.node!);
        },
      });
      holder.node = first;
      await prepareBranch(first.broker);
      await withSocket(first.broker, async (socket) => {
        socket.write(`transaction ${XID} s COMMIT_TWO_PHASE rq 9\r\n`);
        for (let i = 0; i < 200 && !crashed.value; i++) await Bun.sleep(5);
      });
      expect(crashed.value, `cut=${cut}`).toBe(true);

      const second = await boot(memory);
      expect(payloads(recordsOf(second.broker.running, "multi", 0)), `cut=${cut}`).toEqual(
        EXPECTED[0],
      );
      expect(payloads(recordsOf(second.broker.running, "multi", 1)), `cut=${cut}`).toEqual(
        EXPECTED[1],
      );
      await withSocket(second.broker, async (socket) => {
        expect((await ask(socket, "transaction null s RECOVER rq 1\r\n")).text, `cut=${cut}`).toBe(
          "",
        );
      });
      await second.broker.close();
    }
  });

  test("unprepared transactions are rolled back by a crash and leave nothing behind", async () => {
    const memory = new MemoryStorage();
    const first = await boot(memory);
    await withSocket(first.broker, async (socket) => {
      await ask(socket, "transaction TX:u:1 u BEGIN 1\r\n");
      await ask(socket, putLine({ body: "local", txKey: "TX:u:1", opaque: 2 }));
      await ask(socket, `transaction ${XID} u BEGIN rq 3\r\n`);
      await ask(socket, putLine({ body: "xa", txKey: XID, opaque: 4 }));
      await ask(socket, putLine({ body: "plain", opaque: 5 }));
    });
    powerCut(memory, first);
    const second = await boot(memory);
    expect(second.broker.running.transactions.manager!.openCount).toBe(0);
    expect(payloads(recordsOf(second.broker.running, "test", 0))).toEqual(["plain"]);
    await withSocket(second.broker, async (socket) => {
      const commit = await ask(socket, `transaction ${XID} u COMMIT_ONE_PHASE rq 1\r\n`);
      expect(commit.text).toBe(
        `XAException:code=-4,msg=XA transaction '${XID}' has not been started.`,
      );
    });
    await second.broker.close();
  });

  test("a commit whose append failed is completed at restart after the records that took its place", async () => {
    const memory = new MemoryStorage();
    const first = await boot(memory);
    await prepareBranch(first.broker);
    await withSocket(first.broker, async (socket) => {
      first.storage.failNextWrite("multi-1/");
      const commit = await ask(socket, `transaction ${XID} s COMMIT_TWO_PHASE rq 1\r\n`);
      expect(commit.text).toStartWith(
        "XAException:code=-3,msg=Cannot append committed transaction",
      );
      expect(commit.text).toEndWith("it is journalled and will be completed");
      // Plain puts now occupy the offset the commit record names for multi-1.
      await ask(socket, putLine({ topic: "multi", partition: 1, body: "after-1", opaque: 2 }));
    });
    expect(payloads(recordsOf(first.broker.running, "multi", 1))).toEqual(["before-1", "after-1"]);
    await first.broker.close();

    const second = await boot(memory);
    expect(payloads(recordsOf(second.broker.running, "multi", 0))).toEqual(EXPECTED[0]);
    expect(payloads(recordsOf(second.broker.running, "multi", 1))).toEqual([
      "before-1",
      "after-1",
      "m1-p1",
      "m3-p1",
      "m5-p1",
    ]);
    await second.broker.close();
    const third = await boot(memory);
    expect(payloads(recordsOf(third.broker.running, "multi", 1)).length).toBe(5);
    await third.broker.close();
  });

  test("a heuristic outcome survives restarts until FORGET", async () => {
    const memory = new MemoryStorage();
    const first = await boot(memory);
    await prepareBranch(first.broker);
    await withSocket(first.broker, async (socket) => {
      expect((await ask(socket, `heuristic rollback ${XID} 1\r\n`)).header).toBe("result 200 0 1");
    });
    powerCut(memory, first);
    const second = await boot(memory);
    await withSocket(second.broker, async (socket) => {
      expect((await ask(socket, "transaction null s RECOVER rq 1\r\n")).text).toBe(XID);
      const commit = await ask(socket, `transaction ${XID} s COMMIT_TWO_PHASE rq 2\r\n`);
      expect(commit.text).toStartWith("XAException:code=6,");
      await ask(socket, `transaction ${XID} s FORGET rq 3\r\n`);
    });
    await second.broker.close();
    const third = await boot(memory);
    await withSocket(third.broker, async (socket) => {
      expect((await ask(socket, "transaction null s RECOVER rq 1\r\n")).text).toBe("");
    });
    expect(payloads(recordsOf(third.broker.running, "multi", 0))).toEqual(["before-0"]);
    await third.broker.close();
  });
});

describe("journal snapshots", () => {
  // With 4 KiB segments the journal writes a snapshot every KiB and drops what it covers.
  const SMALL = "metaSegmentSize=4096";

  test("snapshots taken while commits create their partitions lose no transaction", async () => {
    const memory = new MemoryStorage();
    const first = await boot(memory, {}, SMALL);
    await withSocket(first.broker, async (socket) => {
      for (let n = 0; n < 15; n++) {
        const key = n < 10 ? `TX:c:${n}` : `XID:1:0${n.toString(16)}:01:rq`;
        await ask(socket, `transaction ${key} c BEGIN rq 1\r\n`);
        for (const partition of [0, 1]) {
          const body = `c${n}-${partition}`;
          const reply = await ask(
            socket,
            putLine({ topic: `stat-${n}`, partition, body, txKey: key, opaque: 2 }),
          );
          expect(reply.text).toEndWith(" -1");
        }
        const finish = n < 10 ? "COMMIT_ONE_PHASE" : "PREPARE";
        expect((await ask(socket, `transaction ${key} c ${finish} rq 3\r\n`)).header).toStartWith(
          "result 200",
        );
      }
    });
    powerCut(memory, first);

    const second = await boot(memory, {}, SMALL);
    for (let n = 0; n < 10; n++) {
      for (const partition of [0, 1]) {
        expect(payloads(recordsOf(second.broker.running, `stat-${n}`, partition))).toEqual([
          `c${n}-${partition}`,
        ]);
      }
    }
    await withSocket(second.broker, async (socket) => {
      const prepared = (await ask(socket, "transaction null c RECOVER rq 1\r\n")).text.split(
        "\r\n",
      );
      expect(prepared.sort()).toEqual(
        [10, 11, 12, 13, 14].map((n) => `XID:1:0${n.toString(16)}:01:rq`),
      );
      for (const key of prepared) {
        expect((await ask(socket, `transaction ${key} c COMMIT_TWO_PHASE rq 2\r\n`)).header).toBe(
          "result 200 0 2",
        );
      }
    });
    expect(payloads(recordsOf(second.broker.running, "stat-14", 1))).toEqual(["c14-1"]);
    await second.broker.close();
  });

  test("snapshots keep the journal bounded while prepared branches survive them", async () => {
    const memory = new MemoryStorage();
    const first = await boot(memory, {}, SMALL);
    await prepareBranch(first.broker);
    const journalBytes = () =>
      memory.list("/data/__tx-0").reduce(
        (sum, name) => sum + (memory.stat(`/data/__tx-0/${name}`)?.size ?? 0),
        0,
      );
    let largest = 0;
    await withSocket(first.broker, async (socket) => {
      for (let n = 1; n <= 300; n++) {
        await ask(socket, `transaction TX:j:${n} j BEGIN 1\r\n`);
        await ask(
          socket,
          putLine({ body: `j${n}`.padEnd(40, "."), txKey: `TX:j:${n}`, opaque: 2 }),
        );
        await ask(socket, `transaction TX:j:${n} j COMMIT_ONE_PHASE 3\r\n`);
        // The journal's upkeep runs on a timer: give it a turn now and then.
        if (n % 50 === 0) {
          await waitFor("a snapshot", () => journalBytes() < 4 * 4096, { timeoutMs: 5000 });
        }
        largest = Math.max(largest, journalBytes());
      }
    });
    expect(payloads(recordsOf(first.broker.running, "test", 0)).length).toBe(300);
    // 300 commits journal about 300 × 170 bytes; snapshots and compaction keep far less.
    expect(largest).toBeLessThan(6 * 4096);
    powerCut(memory, first);
    const second = await boot(memory, {}, SMALL);
    await withSocket(second.broker, async (socket) => {
      expect((await ask(socket, "transaction null s RECOVER rq 1\r\n")).text).toBe(XID);
    });
    expect(payloads(recordsOf(second.broker.running, "test", 0)).length).toBe(300);
    await second.broker.close();
  });
});

describe("flushTxLogAtCommit", () => {
  for (const mode of [0, 2]) {
    test(`with flushTxLogAtCommit=${mode} commits and prepared branches survive a clean restart`, async () => {
      const memory = new MemoryStorage();
      const extra = `flushTxLogAtCommit=${mode}`;
      const first = await startTxBroker("/data", { storage: memory, extra });
      await prepareBranch(first);
      await withSocket(first, async (socket) => {
        await ask(socket, "transaction TX:f:1 f BEGIN 1\r\n");
        await ask(socket, putLine({ body: "flushed", txKey: "TX:f:1", opaque: 2 }));
        expect((await ask(socket, "transaction TX:f:1 f COMMIT_ONE_PHASE 3\r\n")).header)
          .toBe("result 200 0 3");
      });
      await first.close();
      const second = await startTxBroker("/data", { storage: memory, extra });
      expect(payloads(recordsOf(second.running, "test", 0))).toEqual(["flushed"]);
      await withSocket(second, async (socket) => {
        expect((await ask(socket, "transaction null s RECOVER rq 1\r\n")).text).toBe(XID);
      });
      await second.close();
    });
  }
});

describe("a damaged journal", () => {
  test("stops the start with the damage named, and --repair cuts it", async () => {
    await using temp = tempDir();
    const first = await startTxBroker(temp.path);
    await prepareBranch(first);
    await withSocket(first, async (socket) => {
      await ask(socket, "transaction TX:z:1 z BEGIN 1\r\n");
      await ask(socket, putLine({ body: "later", txKey: "TX:z:1", opaque: 2 }));
      await ask(socket, "transaction TX:z:1 z COMMIT_ONE_PHASE 3\r\n");
    });
    await first.close();
    // Damage inside the first record of the journal: a valid record follows it.
    const dir = `${temp.path}/__tx-0`;
    const segment = `${dir}/${fs.readdirSync(dir).find((name) => name.endsWith(".meta"))}`;
    const bytes = fs.readFileSync(segment);
    bytes[30] ^= 0xff;
    fs.writeFileSync(segment, bytes);
    await expect(startTxBroker(temp.path)).rejects.toThrow(/__tx-0/);
    const repaired = await startTxBroker(temp.path, { repair: true });
    await withSocket(repaired, async (socket) => {
      expect((await ask(socket, "version 1\r\n")).header).toStartWith("result 200");
    });
    await repaired.close();
  });
});

/**
 * Transactions on a 3-node cluster of the compiled binary, across the death of the node that
 * coordinates them (the leader of `__tx-0`): a prepared XA branch survives the SIGKILL of the
 * leader that prepared it (RECOVER on the new leader lists it, COMMIT publishes it exactly
 * once, on every node); a commit cut off right after its journal record is completed once by
 * the next coordinator. (A local transaction of a client whose node died is rolled back:
 * tests/integration/cluster_tx.test.ts, where the coordinator's tables can be seen.)
 */
import { expect, test } from "bun:test";
import { agreedLeader, eventually, startClusterProcesses } from "../support/cluster_process.ts";
import type { BrokerProcess } from "../support/harness.ts";
import { messagesThrough } from "../support/partition_reads.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";

const XID = "XID:1:0a0b0c:01:cq";

async function ask(socket: RawSocket, request: string) {
  socket.write(request);
  const frame = await socket.readFrame(15_000);
  return { header: frame.header, text: frame.body.toString() };
}

function put(topic: string, partition: number, body: string, opaque: number, txKey?: string) {
  const key = txKey ? ` ${txKey}` : "";
  return `put ${topic} ${partition} ${Buffer.byteLength(body)} 0 -1${key} ${opaque}\r\n${body}`;
}

/** Every message of a partition as `node` serves it (its own committed copy). */
async function messagesOn(node: BrokerProcess, topic: string, partition: number) {
  using socket = await RawSocket.connect(node.port);
  return await messagesThrough(socket, topic, partition);
}

/** Asks `request` until the answer is not a 503 (a new coordinator being elected), bounded. */
async function askUntilServed(socket: RawSocket, request: string) {
  let reply = await ask(socket, request);
  for (let attempt = 0; attempt < 60 && reply.header.startsWith("result 503"); attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    reply = await ask(socket, request);
  }
  return reply;
}

test("a prepared XA branch survives the SIGKILL of its coordinator and commits once on every node", async () => {
  await using temp = tempDir();
  const nodes = await startClusterProcesses({ dataDir: temp.path });
  try {
    const coordinator = await agreedLeader(nodes, "__tx-0");
    const survivors = nodes.filter((node) => node !== coordinator);
    {
      // The client talks to a node that survives; its requests are forwarded to the coordinator.
      using socket = await RawSocket.connect(survivors[0].port);
      for (const partition of [0, 1]) {
        expect((await ask(socket, put("orders", partition, `plain-${partition}`, 1))).header)
          .toStartWith("result 200 ");
      }
      expect((await ask(socket, `transaction ${XID} s BEGIN 60 2\r\n`)).header).toBe(
        "result 200 0 2",
      );
      for (let n = 0; n < 6; n++) {
        expect((await ask(socket, put("orders", n % 2, `tx-${n}`, 3, XID))).text)
          .toEndWith(` ${n % 2} -1`);
      }
      socket.write(`transaction ${XID} s END 4\r\n`);
      expect((await ask(socket, `transaction ${XID} s PREPARE 5\r\n`)).text).toBe("0");
    }
    await coordinator.kill("SIGKILL");

    using socket = await RawSocket.connect(survivors[1].port);
    const recovered = await askUntilServed(socket, "transaction null s RECOVER cq 6\r\n");
    expect(recovered.text).toBe(XID);
    expect((await askUntilServed(socket, `transaction ${XID} s COMMIT_TWO_PHASE 7\r\n`)).header)
      .toBe("result 200 0 7");
    const again = await ask(socket, `transaction ${XID} s COMMIT_TWO_PHASE 8\r\n`);
    expect(again.text).toBe(
      `XAException:code=-4,msg=XA transaction '${XID}' has not been started.`,
    );
    expect((await ask(socket, "transaction null s RECOVER cq 9\r\n")).text).toBe("");

    // Once on every node: the survivors now, the killed one once it is back and caught up.
    const expected = [["plain-0", "tx-0", "tx-2", "tx-4"], ["plain-1", "tx-1", "tx-3", "tx-5"]];
    await coordinator.restart();
    for (const node of nodes) {
      for (const partition of [0, 1]) {
        await eventually(
          `orders-${partition} complete on ${node.options.dataDir}`,
          async () =>
            JSON.stringify(await messagesOn(node, "orders", partition)) ===
              JSON.stringify(expected[partition]),
        );
      }
    }
  } finally {
    await Promise.all(nodes.map((node) => node.kill("SIGKILL")));
  }
});

test("a commit cut off right after its journal record is completed once by the next coordinator", async () => {
  await using temp = tempDir();
  // Every node would crash after journalling a commit: the first coordinator to commit does.
  const nodes = await startClusterProcesses({
    dataDir: temp.path,
    env: () => ({ METAQ_TEST_CRASH_AFTER_COMMIT_BYTES: "0" }),
  });
  try {
    const coordinator = await agreedLeader(nodes, "__tx-0");
    const client = nodes.find((node) => node !== coordinator)!;
    using socket = await RawSocket.connect(client.port);
    await ask(socket, "transaction TX:k:1 k BEGIN 1\r\n");
    for (let n = 0; n < 4; n++) await ask(socket, put("cut", n % 2, `cut-${n}`, 2, "TX:k:1"));
    // The coordinator journals the commit and dies before appending: the client hears that
    // the outcome is unknown (the forward times out), or nothing (a node it asked dies too:
    // every node carries the crash hook, so the next coordinator dies the same way).
    const commit = await ask(socket, "transaction TX:k:1 k COMMIT_ONE_PHASE 3\r\n").catch(() => ({
      header: "connection closed",
    }));
    expect(commit.header).not.toBe("result 200 0 3");
    await coordinator.exit;
    // Every node started again without the hook: the next coordinator completes the commit.
    for (const node of nodes) await node.kill("SIGKILL");
    for (const node of nodes) await node.restart([], {});
    for (const node of nodes) {
      await eventually(
        `the commit completed on ${node.options.dataDir}`,
        async () =>
          JSON.stringify(await messagesOn(node, "cut", 0)) === JSON.stringify(["cut-0", "cut-2"]) &&
          JSON.stringify(await messagesOn(node, "cut", 1)) === JSON.stringify(["cut-1", "cut-3"]),
      );
    }
  } finally {
    await Promise.all(nodes.map((node) => node.kill("SIGKILL")));
  }
});

/** `stats transactions` of a node, as key -> value. */
async function txStats(node: BrokerProcess): Promise<Record<string, string>> {
  using socket = await RawSocket.connect(node.port);
  const reply = await ask(socket, "stats transactions 1\r\n");
  const lines = reply.text.split("\r\n").slice(1, -2);
  return Object.fromEntries(lines.map((line) => line.split(" ") as [string, string]));
}

test("a local transaction whose client's node died is rolled back by the coordinator", async () => {
  await using temp = tempDir();
  const nodes = await startClusterProcesses({ dataDir: temp.path });
  try {
    const coordinator = await agreedLeader(nodes, "__tx-0");
    const doomed = nodes.find((node) => node !== coordinator)!;
    // The client stays connected: its node dies before it could tell anyone the connection ended.
    using socket = await RawSocket.connect(doomed.port);
    expect((await ask(socket, "transaction TX:d:1 d BEGIN 1\r\n")).header).toBe("result 200 0 1");
    expect((await ask(socket, put("orphan", 0, "never", 2, "TX:d:1"))).text).toEndWith(" 0 -1");
    expect((await txStats(coordinator)).open).toBe("1");
    await doomed.kill("SIGKILL");
    // Back as a new incarnation: the coordinator drops what that node's clients held.
    await doomed.restart();
    await eventually(
      "the orphaned transaction to be rolled back",
      async () => (await txStats(coordinator)).open === "0",
      15_000,
    );
    expect((await txStats(coordinator)).held_bytes).toBe("0");
    expect(await messagesOn(coordinator, "orphan", 0)).toEqual([]);
  } finally {
    await Promise.all(nodes.map((node) => node.kill("SIGKILL")));
  }
});

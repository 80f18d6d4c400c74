/**
 * Transactions through the compiled binary: SIGKILL between PREPARE and COMMIT and in the
 * middle of a commit's append (METAQ_TEST_CRASH_AFTER_COMMIT_BYTES, a test-only hook), and
 * heuristic completion with `metaq tx`.
 */
import { expect, test } from "bun:test";
import { decodeRecords } from "../../lib/protocol/record.ts";
import { BrokerProcess, runMetaq } from "../support/harness.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";

const CRASH_ENV = "METAQ_TEST_CRASH_AFTER_COMMIT_BYTES";

async function ask(socket: RawSocket, request: string) {
  socket.write(request);
  const frame = await socket.readFrame();
  return { header: frame.header, text: frame.body.toString(), body: frame.body };
}

function put(topic: string, partition: number, body: string, opaque: number, txKey?: string) {
  const key = txKey ? ` ${txKey}` : "";
  return `put ${topic} ${partition} ${Buffer.byteLength(body)} 0 -1${key} ${opaque}\r\n${body}`;
}

/** Every message in a partition, read with `get` (empty when the partition does not exist). */
async function messages(socket: RawSocket, topic: string, partition: number): Promise<string[]> {
  const reply = await ask(socket, `get ${topic} g ${partition} 0 1048576 99\r\n`);
  if (!reply.header.startsWith("value")) return [];
  return decodeRecords(reply.body).map((record) => record.data.toString());
}

/** Plain records first, then an XA branch of three messages in each of partitions 0 and 1. */
async function prepareBranch(socket: RawSocket, xid: string): Promise<void> {
  for (const partition of [0, 1]) {
    expect((await ask(socket, put("orders", partition, `plain-${partition}`, 1))).header)
      .toStartWith("result 200");
  }
  expect((await ask(socket, `transaction ${xid} s BEGIN 60 q 2\r\n`)).header).toBe(
    "result 200 0 2",
  );
  for (let i = 0; i < 6; i++) {
    const reply = await ask(socket, put("orders", i % 2, `tx-${i}`, 3, xid));
    expect(reply.text).toEndWith(` ${i % 2} -1`);
  }
  expect((await ask(socket, `transaction ${xid} s PREPARE q 4\r\n`)).text).toBe("0");
}

const EXPECTED = [["plain-0", "tx-0", "tx-2", "tx-4"], ["plain-1", "tx-1", "tx-3", "tx-5"]];

test("SIGKILL between PREPARE and COMMIT: the branch comes back prepared and commits exactly once", async () => {
  await using temp = tempDir();
  await using broker = await BrokerProcess.start({
    dataDir: temp.path,
    args: ["--partitions", "2"],
  });
  const xid = "XID:1:0a0b0c:01:q";
  {
    using socket = await RawSocket.connect(broker.port);
    await prepareBranch(socket, xid);
    await ask(socket, "transaction TX:local:1 local BEGIN 5\r\n");
    await ask(socket, put("orders", 0, "local-never", 6, "TX:local:1"));
  }
  expect((await broker.kill("SIGKILL")).signal).toBe("SIGKILL");
  await broker.restart();
  using socket = await RawSocket.connect(broker.port);
  expect((await ask(socket, "transaction null s RECOVER q 1\r\n")).text).toBe(xid);
  expect(await messages(socket, "orders", 0)).toEqual(["plain-0"]);
  const commit = await ask(socket, `transaction ${xid} s COMMIT_TWO_PHASE q 2\r\n`);
  expect(commit.header).toBe("result 200 0 2");
  expect(await messages(socket, "orders", 0)).toEqual(EXPECTED[0]);
  expect(await messages(socket, "orders", 1)).toEqual(EXPECTED[1]);
  const local = await ask(socket, "transaction TX:local:1 local COMMIT_ONE_PHASE 3\r\n");
  expect(local.text).toBe("Local transaction 'TX:local:1' has not been started.");
});

test("SIGKILL during a commit's append: after restart each committed message is there exactly once", async () => {
  // Each batch is three 24-byte records (72 bytes): cut before any byte, inside a header,
  // at a record boundary, inside the second partition's batch, and after everything.
  for (const cut of [0, 9, 48, 72 + 30, 144]) {
    await using temp = tempDir();
    await using broker = await BrokerProcess.start({
      dataDir: temp.path,
      args: ["--partitions", "2"],
      env: { [CRASH_ENV]: String(cut) },
    });
    const xid = `XID:1:0${cut.toString(16).padStart(3, "0")}:01:q`;
    {
      using socket = await RawSocket.connect(broker.port);
      await prepareBranch(socket, xid);
      socket.write(`transaction ${xid} s COMMIT_TWO_PHASE q 5\r\n`);
      expect((await broker.exit)?.signal, `cut=${cut}`).toBe("SIGKILL");
    }
    await broker.restart();
    using socket = await RawSocket.connect(broker.port);
    expect(await messages(socket, "orders", 0), `cut=${cut}`).toEqual(EXPECTED[0]);
    expect(await messages(socket, "orders", 1), `cut=${cut}`).toEqual(EXPECTED[1]);
    expect((await ask(socket, "transaction null s RECOVER q 1\r\n")).text, `cut=${cut}`).toBe("");
    const again = await ask(socket, `transaction ${xid} s COMMIT_TWO_PHASE q 2\r\n`);
    expect(again.text).toStartWith("XAException:code=-4,"); // finished: a retry cannot duplicate
  }
});

test("metaq tx lists prepared branches and commits or rolls them back by hand", async () => {
  await using temp = tempDir();
  await using broker = await BrokerProcess.start({
    dataDir: temp.path,
    args: ["--partitions", "2"],
  });
  const keep = "XID:1:01:01:q";
  const drop = "XID:1:02:01:q";
  using socket = await RawSocket.connect(broker.port);
  for (const [xid, body] of [[keep, "kept"], [drop, "dropped"]]) {
    await ask(socket, `transaction ${xid} s BEGIN q 1\r\n`);
    await ask(socket, put("hand", 0, body, 2, xid));
    await ask(socket, `transaction ${xid} s PREPARE q 3\r\n`);
  }
  const listed = await runMetaq(["tx", "list", "--broker", broker.address]);
  expect(listed.code).toBe(0);
  expect(listed.stdout).toContain(`${keep}  prepared  1 messages  4 bytes`);
  expect(listed.stdout).toContain(drop);
  const committed = await runMetaq(["tx", "commit", keep, "--broker", broker.address]);
  expect([committed.code, committed.stdout.trim()]).toEqual([0, `committed ${keep}`]);
  const rolledBack = await runMetaq(["tx", "rollback", drop, "--broker", broker.address]);
  expect(rolledBack.code).toBe(0);
  const missing = await runMetaq(["tx", "commit", drop, "--broker", broker.address]);
  expect(missing.code).toBe(1);
  expect(missing.stderr.trim()).toBe(
    `metaq tx: Cannot commit transactions: Cannot commit ${drop} heuristically: no such prepared transaction`,
  );
  expect(await messages(socket, "hand", 0)).toEqual(["kept"]);
  const client = await ask(socket, `transaction ${keep} s COMMIT_TWO_PHASE q 4\r\n`);
  expect(client.text).toStartWith("XAException:code=7,");
  const json = await runMetaq(["tx", "list", "--format", "json", "--broker", broker.address]);
  expect(JSON.parse(json.stdout)).toEqual([
    { xid: keep, state: "heuristically committed", messages: 0, bytes: 0 },
    { xid: drop, state: "heuristically rolled back", messages: 0, bytes: 0 },
  ]);
});

test("bad transaction input gets MetaQ's replies or a closed connection, and changes nothing", async () => {
  await using temp = tempDir();
  await using broker = await BrokerProcess.start({ dataDir: temp.path });
  const xid = "XID:1:0a:01:q";
  using socket = await RawSocket.connect(broker.port);
  const replies = [
    await ask(socket, "transaction TX:b:1 b COMMIT_ONE_PHASE 1\r\n"),
    await ask(socket, `transaction ${xid} b COMMIT_TWO_PHASE q 2\r\n`),
    await ask(socket, put("orders", 0, "x", 3, "TX:b:1")),
  ];
  expect(replies.map((reply) => reply.text)).toEqual([
    "Local transaction 'TX:b:1' has not been started.",
    `XAException:code=-4,msg=XA transaction '${xid}' has not been started.`,
    "Local transaction 'TX:b:1' has not been started.",
  ]);
  await ask(socket, `transaction ${xid} b BEGIN q 4\r\n`);
  await ask(socket, put("orders", 0, "held", 5, xid));
  const unprepared = await ask(socket, `transaction ${xid} b COMMIT_TWO_PHASE q 6\r\n`);
  expect(unprepared.text).toStartWith("XAException:code=-6,msg=Cannot do 2 phase commit");
  for (
    const malformed of ["transaction XID:1:0g:01:q b BEGIN 1\r\n", "transaction TX:b b BEGIN 1\r\n"]
  ) {
    using bad = await RawSocket.connect(broker.port);
    bad.write(malformed);
    expect(await bad.waitClosed(), malformed).toBe(true);
  }
  await ask(socket, `transaction ${xid} b ROLLBACK q 7\r\n`);
  expect(await messages(socket, "orders", 0)).toEqual([]);
  const stats = (await ask(socket, "stats  8\r\n")).text;
  expect(stats).toContain("tx_begin 1\r\n");
  expect(stats).toContain("tx_commit 3\r\n"); // MetaQ counts every COMMIT, failed or not
  expect(stats).toContain("tx_rollback 1\r\n");
  expect((await ask(socket, "transaction null b RECOVER 9\r\n")).text).toBe("");
});

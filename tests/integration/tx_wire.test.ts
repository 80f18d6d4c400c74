import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { RawSocket } from "../support/raw_socket.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import {
  ask,
  connect,
  payloads,
  putLine,
  recordsOf,
  startTxBroker,
  type TxBroker,
} from "../support/tx_broker.ts";

let temp: TempDir;
let broker: TxBroker;

beforeAll(async () => {
  temp = tempDir();
  broker = await startTxBroker(temp.path);
});

afterAll(async () => {
  await broker.close();
  temp[Symbol.dispose]();
});

const XID = (gtrid: string, qualifier = "q1") => `XID:1:${gtrid}:01:${qualifier}`;

function statsCounter(text: string, name: string): number {
  const line = text.split("\r\n").find((candidate) => candidate.startsWith(`${name} `));
  return Number(line?.split(" ")[1]);
}

describe("local transactions on the wire", () => {
  test("a local transaction's puts answer offset -1, stay invisible, and appear together at commit", async () => {
    using socket = await connect(broker.running);
    const begin = await ask(socket, "transaction TX:s1:1 s1 BEGIN 9\r\n");
    expect([begin.header, begin.text]).toEqual(["result 200 0 9", ""]);
    const first = await ask(socket, putLine({ body: "one", txKey: "TX:s1:1", opaque: 10 }));
    expect(first.header).toBe(`result 200 ${first.body.length} 10`);
    expect(first.text).toMatch(/^\d+ 0 -1$/);
    const second = await ask(socket, putLine({ body: "two", txKey: "TX:s1:1", opaque: 11 }));
    expect(second.text).toMatch(/^\d+ 0 -1$/);
    expect(payloads(recordsOf(broker.running, "test", 0))).toEqual([]);
    const fetch = await ask(socket, "get test g 0 0 1048576 12\r\n");
    expect(fetch.header).toStartWith("result 404");

    const commit = await ask(socket, "transaction TX:s1:1 s1 COMMIT_ONE_PHASE 13\r\n");
    expect([commit.header, commit.text]).toEqual(["result 200 0 13", ""]);
    const records = recordsOf(broker.running, "test", 0);
    expect(payloads(records)).toEqual(["one", "two"]);
    expect(records.map((record) => String(record.id))).toEqual([
      first.text.split(" ")[0],
      second.text.split(" ")[0],
    ]);
    const value = await ask(socket, "get test g 0 0 1048576 14\r\n");
    expect(value.header).toBe(`value ${value.body.length} 14`);
    expect(value.body.length).toBe(2 * 20 + 6);
  });

  test("a rolled-back transaction's messages never appear and its key is gone", async () => {
    using socket = await connect(broker.running);
    await ask(socket, "transaction TX:s2:1 s2 BEGIN 1\r\n");
    await ask(
      socket,
      putLine({ topic: "multi", partition: 3, body: "never", txKey: "TX:s2:1", opaque: 2 }),
    );
    const rollback = await ask(socket, "transaction TX:s2:1 s2 ROLLBACK 3\r\n");
    expect([rollback.header, rollback.text]).toEqual(["result 200 0 3", ""]);
    const commit = await ask(socket, "transaction TX:s2:1 s2 COMMIT_ONE_PHASE 4\r\n");
    expect(commit.header).toStartWith("result 500");
    expect(commit.text).toBe("Local transaction 'TX:s2:1' has not been started.");
    expect(recordsOf(broker.running, "multi", 3)).toEqual([]);
  });

  test("a commit to several partitions appends each partition's messages back to back", async () => {
    using socket = await connect(broker.running);
    using other = await connect(broker.running);
    await ask(socket, "transaction TX:s3:1 s3 BEGIN 1\r\n");
    for (let i = 0; i < 6; i++) {
      const reply = await ask(
        socket,
        putLine({
          topic: "multi",
          partition: i % 2,
          body: `tx-${i}`,
          txKey: "TX:s3:1",
          opaque: 10 + i,
        }),
      );
      expect(reply.header).toStartWith("result 200");
      await ask(
        other,
        putLine({ topic: "multi", partition: i % 2, body: `plain-${i}`, opaque: 20 + i }),
      );
    }
    await ask(socket, "transaction TX:s3:1 s3 COMMIT_ONE_PHASE 30\r\n");
    expect(payloads(recordsOf(broker.running, "multi", 0))).toEqual([
      "plain-0",
      "plain-2",
      "plain-4",
      "tx-0",
      "tx-2",
      "tx-4",
    ]);
    expect(payloads(recordsOf(broker.running, "multi", 1))).toEqual([
      "plain-1",
      "plain-3",
      "plain-5",
      "tx-1",
      "tx-3",
      "tx-5",
    ]);
  });

  test("a local transaction belongs to its connection and is rolled back when it closes", async () => {
    const manager = broker.running.transactions.manager!;
    const openBefore = manager.openCount;
    const owner = await connect(broker.running);
    await ask(owner, "transaction TX:s4:1 s4 BEGIN 1\r\n");
    await ask(owner, putLine({ body: "orphan", txKey: "TX:s4:1", opaque: 2 }));
    using stranger = await connect(broker.running);
    const foreign = await ask(stranger, "transaction TX:s4:1 s4 COMMIT_ONE_PHASE 3\r\n");
    expect(foreign.text).toBe("Local transaction 'TX:s4:1' has not been started.");
    expect(manager.openCount).toBe(openBefore + 1);
    owner[Symbol.dispose]();
    for (let i = 0; i < 100 && manager.openCount > openBefore; i++) await Bun.sleep(20);
    expect(manager.openCount).toBe(openBefore);
    expect(payloads(recordsOf(broker.running, "test", 0))).not.toContain("orphan");
  });

  test("BEGIN of an open transaction is a no-op and the stats count every command", async () => {
    using socket = await connect(broker.running);
    const before = (await ask(socket, "stats  1\r\n")).text;
    await ask(socket, "transaction TX:s5:1 s5 BEGIN 2\r\n");
    const again = await ask(socket, "transaction TX:s5:1 s5 BEGIN 3\r\n");
    expect([again.header, again.text]).toEqual(["result 200 0 3", ""]);
    await ask(socket, "transaction TX:s5:1 s5 ROLLBACK 4\r\n");
    await ask(socket, `transaction ${XID("aa")} s5 BEGIN q1 5\r\n`);
    await ask(socket, `transaction ${XID("aa")} s5 COMMIT_ONE_PHASE q1 6\r\n`);
    const after = (await ask(socket, "stats  7\r\n")).text;
    const delta = (name: string) => statsCounter(after, name) - statsCounter(before, name);
    expect([delta("tx_begin"), delta("tx_xa_begin"), delta("tx_commit"), delta("tx_rollback")])
      .toEqual([3, 1, 1, 1]);
  });
});

describe("XA transactions on the wire", () => {
  test("BEGIN, put, END (no reply), PREPARE 0, RECOVER lists it, COMMIT_TWO_PHASE publishes it", async () => {
    using socket = await connect(broker.running);
    const xid = XID("0a0b0c");
    const begin = await ask(socket, `transaction ${xid} sx BEGIN 30 q1 1\r\n`);
    expect(begin.header).toBe("result 200 0 1");
    const put = await ask(
      socket,
      putLine({ topic: "multi", partition: 2, body: "xa", txKey: xid, opaque: 2 }),
    );
    expect(put.text).toMatch(/^\d+ 2 -1$/);
    socket.write(`transaction ${xid} sx END q1 3\r\n`);
    const version = await ask(socket, "version 4\r\n");
    expect(version.header).toStartWith("result 200"); // END sent nothing back
    expect(version.header).toEndWith(" 4");
    const prepare = await ask(socket, `transaction ${xid} sx PREPARE q1 5\r\n`);
    expect([prepare.header, prepare.text]).toEqual(["result 200 1 5", "0"]);
    const recover = await ask(socket, "transaction null sx RECOVER q1 6\r\n");
    expect(recover.text.split("\r\n")).toContain(xid);
    expect(recordsOf(broker.running, "multi", 2)).toEqual([]);
    using other = await connect(broker.running); // any connection may finish an XA branch
    const commit = await ask(other, `transaction ${xid} sx COMMIT_TWO_PHASE q1 7\r\n`);
    expect([commit.header, commit.text]).toEqual(["result 200 0 7", ""]);
    expect(payloads(recordsOf(broker.running, "multi", 2))).toEqual(["xa"]);
    const after = await ask(other, "transaction null sx RECOVER q1 8\r\n");
    expect(after.text.split("\r\n")).not.toContain(xid);
  });

  test("PREPARE without work answers XA_RDONLY and finishes the branch", async () => {
    using socket = await connect(broker.running);
    const xid = XID("0b");
    await ask(socket, `transaction ${xid} sx BEGIN q1 1\r\n`);
    const prepare = await ask(socket, `transaction ${xid} sx PREPARE q1 2\r\n`);
    expect(prepare.text).toBe("3");
    const commit = await ask(socket, `transaction ${xid} sx COMMIT_TWO_PHASE q1 3\r\n`);
    expect(commit.text).toBe(
      `XAException:code=-4,msg=XA transaction '${xid}' has not been started.`,
    );
  });

  test("RECOVER lists only the branches of the asking qualifier (all of them without one)", async () => {
    using socket = await connect(broker.running);
    const mine = XID("0c", "alpha");
    const theirs = XID("0d", "beta");
    for (const xid of [mine, theirs]) {
      await ask(socket, `transaction ${xid} sx BEGIN 1\r\n`);
      await ask(socket, putLine({ body: xid, txKey: xid, opaque: 2 }));
      expect((await ask(socket, `transaction ${xid} sx PREPARE 3\r\n`)).text).toBe("0");
    }
    const alpha = (await ask(socket, "transaction null sx RECOVER alpha 4\r\n")).text.split("\r\n");
    expect(alpha).toContain(mine);
    expect(alpha).not.toContain(theirs);
    const all = (await ask(socket, "transaction null sx RECOVER 5\r\n")).text.split("\r\n");
    expect(all).toEqual(expect.arrayContaining([mine, theirs]));
    for (const xid of [mine, theirs]) {
      expect((await ask(socket, `transaction ${xid} sx ROLLBACK 6\r\n`)).header).toBe(
        "result 200 0 6",
      );
    }
    expect(payloads(recordsOf(broker.running, "test", 0))).not.toContain(mine);
  });

  test("an operator's heuristic commit publishes the branch, then its XID answers XA_HEURCOM until FORGET", async () => {
    using socket = await connect(broker.running);
    const xid = XID("0e", "heur");
    await ask(socket, `transaction ${xid} sx BEGIN heur 1\r\n`);
    await ask(
      socket,
      putLine({ topic: "multi", partition: 1, body: "by-hand", txKey: xid, opaque: 2 }),
    );
    await ask(socket, `transaction ${xid} sx PREPARE heur 3\r\n`);
    const listed = JSON.parse((await ask(socket, "heuristic list - 4\r\n")).text);
    expect(listed).toContainEqual({ xid, state: "prepared", messages: 1, bytes: 7 });
    const forced = await ask(socket, `heuristic commit ${xid} 5\r\n`);
    expect(forced.header).toBe("result 200 0 5");
    expect(payloads(recordsOf(broker.running, "multi", 1))).toContain("by-hand");
    const commit = await ask(socket, `transaction ${xid} sx COMMIT_TWO_PHASE heur 6\r\n`);
    expect(commit.text).toBe(
      `XAException:code=7,msg=XA transaction '${xid}' has been heuristically committed.`,
    );
    expect((await ask(socket, "transaction null sx RECOVER heur 7\r\n")).text).toBe(xid);
    expect((await ask(socket, `transaction ${xid} sx FORGET heur 8\r\n`)).header).toBe(
      "result 200 0 8",
    );
    const gone = await ask(socket, `transaction ${xid} sx ROLLBACK heur 9\r\n`);
    expect(gone.text).toBe(`XAException:code=-4,msg=XA transaction '${xid}' has not been started.`);
  });

  test("an operator's heuristic rollback discards the branch, which then answers XA_HEURRB", async () => {
    using socket = await connect(broker.running);
    const xid = XID("0f", "heur");
    await ask(socket, `transaction ${xid} sx BEGIN heur 1\r\n`);
    await ask(socket, putLine({ body: "discarded", txKey: xid, opaque: 2 }));
    await ask(socket, `transaction ${xid} sx PREPARE heur 3\r\n`);
    expect((await ask(socket, `heuristic rollback ${xid} 4\r\n`)).header).toBe("result 200 0 4");
    const commit = await ask(socket, `transaction ${xid} sx COMMIT_TWO_PHASE heur 5\r\n`);
    expect(commit.text).toBe(
      `XAException:code=6,msg=XA transaction '${xid}' has been heuristically rolled back.`,
    );
    const put = await ask(socket, putLine({ body: "late", txKey: xid, opaque: 6 }));
    expect(put.text).toBe(`XA transaction '${xid}' has been heuristically rolled back.`);
    await ask(socket, `transaction ${xid} sx FORGET heur 7\r\n`);
    expect(payloads(recordsOf(broker.running, "test", 0))).not.toContain("discarded");
    const again = await ask(socket, `heuristic commit ${xid} 8\r\n`);
    expect([again.header.split(" ")[1], again.text]).toEqual([
      "500",
      `Cannot commit ${xid} heuristically: no such prepared transaction`,
    ]);
  });
});

describe("bad input gets MetaQ's error and changes nothing", () => {
  test("errors of the transaction command are MetaQ's texts and codes", async () => {
    using socket = await connect(broker.running);
    const xid = XID("10");
    const cases: [string, string][] = [
      [
        "transaction TX:e:1 e COMMIT_ONE_PHASE 1\r\n",
        "Local transaction 'TX:e:1' has not been started.",
      ],
      ["transaction TX:e:1 e ROLLBACK 2\r\n", "Local transaction 'TX:e:1' has not been started."],
      [
        `transaction ${xid} e COMMIT_TWO_PHASE 3\r\n`,
        `XAException:code=-4,msg=XA transaction '${xid}' has not been started.`,
      ],
      ["transaction TX:e:1 e FORGET 4\r\n", "XAException:code=-4,msg=TX:e:1 is not a valid xid"],
      ["transaction null e PREPARE 5\r\n", "Local transaction 'null' has not been started."],
    ];
    for (const [request, text] of cases) {
      const reply = await ask(socket, request);
      expect([reply.header.split(" ")[1], reply.text], request).toEqual(["500", text]);
    }
  });

  test("state errors: two-phase commit of an unprepared branch, local prepare, double prepare", async () => {
    using socket = await connect(broker.running);
    const xid = XID("11");
    await ask(socket, `transaction ${xid} e BEGIN 1\r\n`);
    await ask(socket, putLine({ body: "held", txKey: xid, opaque: 2 }));
    const twoPhase = await ask(socket, `transaction ${xid} e COMMIT_TWO_PHASE 3\r\n`);
    expect(twoPhase.text).toBe(
      "XAException:code=-6,msg=Cannot do 2 phase commit if the transaction has not been prepared.",
    );
    await ask(socket, `transaction ${xid} e PREPARE 4\r\n`);
    const twice = await ask(socket, `transaction ${xid} e PREPARE 5\r\n`);
    expect(twice.text).toBe("XAException:code=-6,msg=Cannot call prepare now.");
    const late = await ask(socket, putLine({ body: "late", txKey: xid, opaque: 6 }));
    expect(late.text).toBe(`Cannot add message to transaction '${xid}': it is prepared`);
    await ask(socket, "transaction TX:e:2 e BEGIN 7\r\n");
    const local = await ask(socket, "transaction TX:e:2 e PREPARE 8\r\n");
    expect(local.text).toBe(
      "XAException:code=-3,msg=Prepare not implemented on Local Transactions.",
    );
    await ask(socket, `transaction ${xid} e ROLLBACK 9\r\n`);
    expect(payloads(recordsOf(broker.running, "test", 0))).not.toContain("held");
  });

  test("transactional puts are checked like plain ones, after MetaQ's own checks", async () => {
    using socket = await connect(broker.running);
    const missing = await ask(socket, putLine({ body: "x", txKey: "TX:p:1", opaque: 1 }));
    expect(missing.text).toBe("Local transaction 'TX:p:1' has not been started.");
    const xa = await ask(socket, putLine({ body: "x", txKey: XID("12"), opaque: 2 }));
    expect(xa.text).toBe(`XA transaction '${XID("12")}' has not been started.`);
    await ask(socket, "transaction TX:p:1 p BEGIN 3\r\n");
    const random = await ask(
      socket,
      putLine({ partition: -1, body: "x", txKey: "TX:p:1", opaque: 4 }),
    );
    expect([random.header.split(" ")[1], random.text]).toEqual([
      "500",
      "Invalid partition for transaction command:-1",
    ]);
    const wrong = await ask(
      socket,
      putLine({ partition: 9, body: "x", txKey: "TX:p:1", opaque: 5 }),
    );
    expect(wrong.text).toEndWith("[partition 'test-9'] failed.Detail:wrong partition 9");
    const topic = await ask(
      socket,
      putLine({ topic: "nope", body: "x", txKey: "TX:p:1", opaque: 6 }),
    );
    expect(topic.text).toContain("failed.Detail:The server do not accept topic nope: no [topic=");
    const checksum = await ask(socket, "put test 0 5 0 12345 TX:p:1 7\r\nhello");
    expect(checksum.text).toEndWith(
      "failed.Detail:Checksum failure,message may be corrupted when transfering on networking.",
    );
    const big = "x".repeat(1001);
    const size = await ask(socket, putLine({ body: big, txKey: "TX:p:1", opaque: 8 }));
    expect(size.header.split(" ")[1]).toBe("400");
    const commit = await ask(socket, "transaction TX:p:1 p COMMIT_ONE_PHASE 9\r\n");
    expect(commit.header).toBe("result 200 0 9");
    expect(payloads(recordsOf(broker.running, "test", 0))).not.toContain("x");
  });

  test("malformed keys and types close the connection without a reply, as MetaQ's decoder does", async () => {
    const manager = broker.running.transactions.manager!;
    const requests = [
      "transaction XID:1:zz:01:q s BEGIN 1\r\n",
      "transaction XID:1:0a:01 s BEGIN 1\r\n",
      "transaction XID:x:0a:01:q s BEGIN 1\r\n",
      "transaction TX:s:notanumber s BEGIN 1\r\n",
      "transaction TX:s s BEGIN 1\r\n",
      "transaction KEY s BEGIN 1\r\n",
      "transaction TX:s:1 s START 1\r\n",
      "transaction TX:s:1 s BEGIN 1 2 3 4\r\n",
      "put test 0 1 0 -1 XID:1:0a 1\r\nx",
    ];
    const openBefore = manager.openCount;
    for (const request of requests) {
      using socket = await RawSocket.connect(broker.running.port);
      socket.write(request);
      expect(await socket.waitClosed(), request).toBe(true);
      expect((await socket.read(1, 50)).length, request).toBe(0);
    }
    expect(manager.openCount).toBe(openBefore);
  });
});

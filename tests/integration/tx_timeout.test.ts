import { expect, test } from "bun:test";
import { ManualClock } from "../../lib/clock.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";
import { ask, payloads, putLine, recordsOf, startTxBroker } from "../support/tx_broker.ts";

test("unprepared transactions past their timeout (capped by maxTxTimeoutInSeconds) are rolled back; prepared ones wait", async () => {
  await using temp = tempDir();
  const clock = new ManualClock();
  const broker = await startTxBroker(temp.path, { clock, extra: "maxTxTimeoutInSeconds=60" });
  try {
    const manager = broker.running.transactions.manager!;
    using socket = await RawSocket.connect(broker.running.port);
    const xid = "XID:1:0a:01:q";
    await ask(socket, "transaction TX:t:1 t BEGIN 5 1\r\n");
    await ask(socket, putLine({ body: "short", txKey: "TX:t:1", opaque: 2 }));
    await ask(socket, "transaction TX:t:2 t BEGIN 600 3\r\n"); // capped at 60 s
    await ask(socket, "transaction TX:t:3 t BEGIN 4\r\n"); // no timeout
    await ask(socket, `transaction ${xid} t BEGIN 5 q 5\r\n`);
    await ask(socket, putLine({ body: "prepared", txKey: xid, opaque: 6 }));
    await ask(socket, `transaction ${xid} t PREPARE q 7\r\n`);
    expect(manager.openCount).toBe(4);

    const waitFor = async (open: number) => {
      for (let i = 0; i < 60 && manager.openCount !== open; i++) await Bun.sleep(50);
      return manager.openCount;
    };
    clock.advance(4_999);
    manager.expire();
    expect(manager.openCount).toBe(4);
    clock.advance(1);
    expect(await waitFor(3)).toBe(3); // the broker's own timer rolled TX:t:1 back
    const late = await ask(socket, "transaction TX:t:1 t COMMIT_ONE_PHASE 8\r\n");
    expect(late.text).toBe("Local transaction 'TX:t:1' has not been started.");
    clock.advance(54_999);
    manager.expire();
    expect(manager.openCount).toBe(3);
    clock.advance(1);
    manager.expire();
    expect(manager.openCount).toBe(2);
    clock.advance(3_600_000);
    manager.expire();
    expect(manager.openCount).toBe(2); // the untimed one and the prepared branch remain
    const commit = await ask(socket, `transaction ${xid} t COMMIT_TWO_PHASE q 9\r\n`);
    expect(commit.header).toBe("result 200 0 9");
    expect(payloads(recordsOf(broker.running, "test", 0))).toEqual(["prepared"]);
  } finally {
    await broker.close();
  }
});

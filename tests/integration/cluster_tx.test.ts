/**
 * Local transactions on a 3-node cluster belong to the client's connection on the node it
 * talks to, wherever they are coordinated: they are rolled back when that connection closes.
 * In process, so the coordinator's table of open transactions can be read; the SIGKILL cases
 * of the binary (a client's node dies) are in tests/e2e/cluster_tx.test.ts.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { App } from "../../lib/app/assemble.ts";
import { type InProcessCluster, startCluster } from "../support/cluster_in_process.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

let temp: TempDir;
let cluster: InProcessCluster;

beforeAll(async () => {
  temp = tempDir();
  cluster = await startCluster({
    dataPath: temp.path,
    configText: "[system]\nnumPartitions=2\n",
  });
});

afterAll(async () => {
  await cluster?.close();
  temp[Symbol.dispose]();
});

async function ask(socket: RawSocket, request: string) {
  socket.write(request);
  const frame = await socket.readFrame(10_000);
  return { header: frame.header, text: frame.body.toString() };
}

/** The node coordinating transactions, once one is ready. */
async function coordinator(): Promise<App> {
  let found: App | undefined;
  await waitFor("a transaction coordinator", () => {
    found = cluster.nodes.find((node) => node.transactions.manager !== undefined);
    return found !== undefined;
  }, { timeoutMs: 10_000 });
  return found!;
}

test("a local transaction begun through another node is rolled back when its connection closes", async () => {
  const home = await coordinator();
  const other = cluster.nodes.find((node) => node !== home)!;
  const before = home.transactions.manager!.openCount;
  {
    using socket = await RawSocket.connect(other.port);
    expect((await ask(socket, "transaction TX:l:1 l BEGIN 1\r\n")).header).toBe("result 200 0 1");
    const held = await ask(socket, "put lt 0 4 0 -1 TX:l:1 2\r\nheld");
    expect(held.text).toEndWith(" 0 -1");
    expect(home.transactions.manager!.openCount).toBe(before + 1);
  }
  await waitFor(
    "the transaction to be rolled back",
    () => home.transactions.manager!.openCount === before,
    { timeoutMs: 5000 },
  );
  expect(home.transactions.manager!.heldBytes).toBe(0);
});

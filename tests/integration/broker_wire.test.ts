import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { buildConfig } from "../../lib/config/config.ts";
import { silentLogger } from "../../lib/log.ts";
import { encodeRecord } from "../../lib/protocol/record.ts";
import { type App, assemble } from "../../lib/app/assemble.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";

const CONFIG = (dataPath: string) => `
[system]
brokerId=7
numPartitions=2
dataPath=${dataPath}
maxSegmentSize=4096
maxMessageSize=1000
deletePolicy=delete,0s
[topic=test]
[topic=multi]
numPartitions=4
[topic=stat-*]
stat=true
[topic=sparse]
numPartitions=3
`;

let temp: TempDir;
let running: App;

beforeAll(async () => {
  temp = tempDir();
  const fileText = CONFIG(temp.path);
  running = await assemble({
    config: buildConfig({
      fileText,
      filePath: "server.ini",
      overrides: { serverPort: "0", httpEnabled: "false" },
    }),
    logger: silentLogger,
  });
});

afterAll(async () => {
  await running.close();
  temp[Symbol.dispose]();
});

async function connect() {
  return await RawSocket.connect(running.port);
}

async function frame(socket: RawSocket, request: string | Uint8Array) {
  socket.write(request);
  return await socket.readFrame();
}

describe("put and get, byte for byte", () => {
  test("put 'hello' returns id, partition and offset; get serves the exact record", async () => {
    using socket = await connect();
    const put = await frame(socket, "put test 0 5 0 907060870 -2147483648\r\nhello");
    expect(put.header).toMatch(/^result 200 \d+ -2147483648$/);
    const [id, partition, offset] = put.body.toString().split(" ");
    expect([partition, offset]).toEqual(["0", "0"]);
    expect(BigInt(id) > 0n).toBe(true);
    expect(put.header).toBe(`result 200 ${put.body.length} -2147483648`);

    const get = await frame(socket, "get test g1 0 0 1048576 12\r\n");
    expect(get.header).toBe("value 25 12");
    expect(get.body).toEqual(
      Buffer.from(encodeRecord({ id: BigInt(id), flag: 0, data: Buffer.from("hello") })),
    );
    expect(get.body.subarray(0, 8).toString("hex")).toBe("000000053610a686");

    const caughtUp = await frame(socket, "get test g1 0 25 1048576 13\r\n");
    expect(caughtUp.header).toBe("result 404 37 13");
    expect(caughtUp.body.toString()).toBe("Could not find message at position 25");

    const fromEnd = await frame(socket, "get test g1 0 9223372036854775807 1048576 14\r\n");
    expect([fromEnd.header, fromEnd.body.toString()]).toEqual(["result 301 2 14", "25"]);

    const pastEnd = await frame(socket, "get test g1 0 26 1048576 15\r\n");
    expect(pastEnd.header).toBe("result 404 37 15");

    const badSize = await frame(socket, "get test g1 0 0 0 16\r\n");
    expect([badSize.header, badSize.body.toString()]).toEqual([
      "result 400 30 16",
      "Bad request,invalid max size:0",
    ]);

    const partial = await frame(socket, "get test g1 0 0 7 17\r\n");
    expect(partial.header).toBe("value 7 17");
  });

  test("the 6-token put of old clients and attribute puts are stored verbatim", async () => {
    using socket = await connect();
    const legacy = await frame(socket, "put test 1 5 0 8\r\nhello");
    expect(legacy.header).toMatch(/^result 200 \d+ 8$/);
    const data = Buffer.from("0000000461747472" + "68656c6c6f", "hex");
    const withAttribute = await frame(
      socket,
      Buffer.concat([Buffer.from("put test 1 13 1 1264772380 7\r\n"), data]),
    );
    const [id, , offset] = withAttribute.body.toString().split(" ");
    expect(offset).toBe("25");
    const get = await frame(socket, "get test g 1 25 100 1\r\n");
    expect(get.body).toEqual(Buffer.from(encodeRecord({ id: BigInt(id), flag: 1, data })));
  });

  test("a checksum mismatch, a wrong partition and an unaccepted topic get MetaQ's texts", async () => {
    using socket = await connect();
    const url = running.broker.brokerUrl;
    const checksum = await frame(socket, "put test 0 5 0 123 1\r\nhello");
    expect(checksum.header.startsWith("result 500")).toBe(true);
    expect(checksum.body.toString()).toBe(
      `Put message to [broker '${url}'] [partition 'test-0'] failed.Detail:Checksum failure,message may be corrupted when transfering on networking.`,
    );
    const partition = await frame(socket, "put test 5 5 0 -1 2\r\nhello");
    expect(partition.body.toString()).toBe(
      `Put message to [broker '${url}'] [partition 'test-5'] failed.Detail:wrong partition 5`,
    );
    const topic = await frame(socket, "put other 0 5 0 -1 3\r\nhello");
    expect(topic.body.toString()).toBe(
      `Put message to [broker '${url}'] [partition 'other-0'] failed.Detail:The server do not accept topic other: ` +
        "no [topic=...] section of the broker's configuration matches it (sections: test, multi, stat-*, sparse)",
    );
    expect(fs.existsSync(`${temp.path}/other-0`)).toBe(false);
  });

  test("invalid topic names are refused and create nothing on disk", async () => {
    using socket = await connect();
    for (const [index, name] of ["../escape", "a/b", ".hidden"].entries()) {
      const reply = await frame(socket, `put ${name} 0 1 0 -1 ${index}\r\nx`);
      expect(reply.header.startsWith("result 500")).toBe(true);
    }
    expect(
      fs.readdirSync(temp.path).filter((name) =>
        name.includes("escape") || name.includes("hidden")
      ),
    ).toEqual([]);
    expect(fs.existsSync(`${temp.path}/../escape-0`)).toBe(false);
  });

  test("partition -1 lets the broker pick one in range", async () => {
    using socket = await connect();
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) {
      seen.add(
        (await frame(socket, `put multi -1 1 0 -1 ${i}\r\nx`)).body.toString().split(" ")[1],
      );
    }
    for (const partition of seen) expect(["0", "1", "2", "3"]).toContain(partition);
    expect(seen.size).toBeGreaterThan(1);
  });

  test("pipelined puts on one connection are stored in the order sent", async () => {
    using socket = await connect();
    const count = 300;
    let wire = "";
    for (let i = 0; i < count; i++) {
      wire += `put multi 3 4 0 -1 ${-1000 - i}\r\n${String(i).padStart(4, "0")}`;
    }
    socket.write(wire);
    const offsets = new Map<number, number>();
    for (let i = 0; i < count; i++) {
      const reply = await socket.readFrame();
      offsets.set(Number(reply.header.split(" ")[3]), Number(reply.body.toString().split(" ")[2]));
    }
    for (let i = 1; i < count; i++) {
      expect(offsets.get(-1000 - i)!).toBeGreaterThan(offsets.get(-1000 - i + 1)!);
    }
  });

  test("an oversized put is refused with a reply before its body is buffered, and the connection goes on", async () => {
    using socket = await connect();
    const reply = await frame(socket, `put test 0 5000 0 -1 77\r\n${"x".repeat(5000)}`);
    expect(reply.header.startsWith("result 400")).toBe(true);
    expect(reply.body.toString()).toContain("exceeds maxMessageSize 1000");
    expect((await frame(socket, "version 78\r\n")).header).toStartWith("result 200");
  });
});

describe("offset, stats, version and the rest", () => {
  test("offset answers the start of the segment holding the offset", async () => {
    using socket = await connect();
    for (let i = 0; i < 300; i++) socket.write(`put test 0 20 0 -1 ${i}\r\n${"y".repeat(20)}`);
    for (let i = 0; i < 300; i++) await socket.readFrame();
    const log = running.store.get("test", 0)!;
    const second = log.segmentStarts[1];
    expect((await frame(socket, `offset test g 0 ${second + 45} 5\r\n`)).body.toString()).toBe(
      String(second),
    );
    expect((await frame(socket, "offset test g 0 -5 6\r\n")).body.toString()).toBe(
      String(log.startOffset),
    );
    expect((await frame(socket, "offset test g 0 999999999 7\r\n")).body.toString()).toBe(
      String(log.ackedEnd),
    );
    const missing = await frame(socket, "offset nope g 0 0 8\r\n");
    expect([missing.header, missing.body.toString()]).toEqual([
      "result 404 47 8",
      "The topic `nope` in partition `0` is not exists",
    ]);
  });

  test("a get below the log start after retention answers 301 with the start", async () => {
    using socket = await connect();
    await running.maintenance.runRetention();
    const log = running.store.get("test", 0)!;
    expect(log.startOffset).toBeGreaterThan(0);
    const moved = await frame(socket, "get test g 0 0 100 9\r\n");
    expect([moved.header.split(" ")[1], moved.body.toString()]).toEqual([
      "301",
      String(log.startOffset),
    ]);
  });

  test("stats items are framed as MetaQ frames them", async () => {
    using socket = await connect();
    const general = await frame(socket, "stats\r\n");
    expect(general.header).toMatch(/^result 200 \d+ 2147483647$/);
    const lines = general.body.toString().split("\r\n");
    expect(lines[0]).toBe("STATS");
    expect(lines.slice(1, -2).map((line) => line.split(" ")[0])).toEqual([
      "pid",
      "broker_id",
      "port",
      "uptime",
      "version",
      "slave",
      "curr_connections",
      "threads",
      "cmd_put",
      "cmd_get",
      "cmd_offset",
      "tx_begin",
      "tx_xa_begin",
      "tx_commit",
      "tx_rollback",
      "get_miss",
      "put_failed",
      "total_messages",
      "topics",
      "config_checksum",
    ]);
    expect(lines.at(-2)).toBe("END");
    expect(general.body.toString()).toContain("broker_id 7\r\n");
    const twoSpaces = await frame(socket, "stats  -3\r\n");
    expect(twoSpaces.header.endsWith(" -3")).toBe(true);
    expect(twoSpaces.body.toString()).toContain("pid ");
    const offsets = (await frame(socket, "stats offsets 4\r\n")).body.toString();
    expect(offsets).toMatch(/\r\ntest part 0 min_offset \d+ max_offset \d+\r\n/);
    const topics = (await frame(socket, "stats topics 5\r\n")).body.toString();
    expect(topics).toMatch(
      /\r\ntest partitions 2 message_count \d+ message_bytes \d+ accept_publish true accept_subscribe true\r\n/,
    );
    const config = await frame(socket, "stats config 6\r\n");
    expect(config.body.toString()).toBe(CONFIG(temp.path));
    expect((await frame(socket, "stats help 7\r\n")).body.toString()).toBe(
      "STATS\r\n*EMPTY* Returns broker info.\r\nhelp Returns help menu.\r\ntopics Returns topics statistics detail info.\r\n" +
        "offsets Returns partitions detail info.\r\nrealtime Returns realtime statistics detail info.\r\n" +
        "config Returns broker's config file content.\r\nEND\r\n",
    );
    expect((await frame(socket, "stats reset 8\r\n")).body.toString()).toBe(
      "STATS\r\nreset ok\r\nEND\r\n",
    );
    const unknown = (await frame(socket, "stats nothing 9\r\n")).body.toString();
    expect(unknown).toStartWith("STATS\r\nnothing\r\nresultCode 1\r\npartitions 0\r\n");
    const configured = (await frame(socket, "stats multi 10\r\n")).body.toString();
    expect(configured).toContain("resultCode 0\r\npartitions 4\r\n");
  });

  test("stats counts a topic's partitions, not only those holding messages", async () => {
    // Regression: `stats topics` and `stats TOPIC` said 1 for a 3-partition topic with data in one.
    using socket = await connect();
    expect((await frame(socket, "put sparse 0 1 0 -1 1\r\nx")).header).toStartWith("result 200");
    const topics = (await frame(socket, "stats topics 2\r\n")).body.toString();
    expect(topics).toContain("\r\nsparse partitions 3 message_count 1 ");
    const topic = (await frame(socket, "stats sparse 3\r\n")).body.toString();
    expect(topic).toContain("\r\nresultCode 0\r\npartitions 3\r\nmessage_count 1\r\n");
  });

  test("realtime stats count topics with stat=true", async () => {
    using socket = await connect();
    await frame(socket, "put stat-a 0 3 0 -1 1\r\nabc");
    await frame(socket, "get stat-a grp 0 0 100 2\r\n");
    const realtime = (await frame(socket, "stats realtime 3\r\n")).body.toString();
    expect(realtime).toMatch(
      /realtime_put Count=1,Value=0,Value\/Count=0,Count\/Duration=[\d.a-z]+,Duration=\d+/,
    );
    expect(realtime).toMatch(/realtime_message_size Count=1,Value=3,/);
    const topic = (await frame(socket, "stats stat-a 4\r\n")).body.toString();
    expect(topic).toContain("topic_realtime_get Count=1,");
    expect(topic).toContain("topic_realtime_put_failed null");
  });

  test("version answers the heartbeat and echoes negative opaques", async () => {
    using socket = await connect();
    expect((await frame(socket, "version -42\r\n")).header).toMatch(/^result 200 \d+ -42$/);
    expect((await frame(socket, "version\r\n")).header).toMatch(/ 2147483647$/);
  });

  test("END gets no reply, a put in a transaction never begun is refused, sync gets 503", async () => {
    using socket = await connect();
    socket.write("transaction TX:s:1 s END 1\r\n");
    const txPut = await frame(socket, "put test 0 1 0 -1 TX:s:1 3\r\nx");
    expect(txPut.header).toStartWith("result 500 ");
    expect(txPut.header).toEndWith(" 3");
    expect(txPut.body.toString()).toBe("Local transaction 'TX:s:1' has not been started.");
    const sync = await frame(socket, "sync test 0 1 0 5 -1 4\r\nx");
    expect(sync.header).toStartWith("result 503");
  });

  test("replies arriving at the broker are dropped and the connection stays", async () => {
    using socket = await connect();
    socket.write("result 200 2 5\r\nokvalue 1 6\r\nz");
    expect((await frame(socket, "version 7\r\n")).header).toStartWith("result 200");
  });
});

describe("bad input", () => {
  test("a malformed line closes only that connection, with no reply", async () => {
    using bad = await connect();
    using good = await connect();
    bad.write("version 1\r\nbogus command\r\nversion 2\r\n");
    expect((await bad.readFrame()).header).toStartWith("result 200");
    expect(await bad.waitClosed()).toBe(true);
    expect((await frame(good, "version 3\r\n")).header).toStartWith("result 200");
  });

  test("quit closes the connection without a reply", async () => {
    using socket = await connect();
    socket.write("quit\r\n");
    expect(await socket.waitClosed()).toBe(true);
    expect((await socket.read(1, 200)).length).toBe(0);
  });

  test("a header line without end longer than the limit closes the connection", async () => {
    using socket = await connect();
    socket.write("g".repeat(10_000));
    expect(await socket.waitClosed()).toBe(true);
  });
});

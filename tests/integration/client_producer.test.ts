import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as net from "node:net";
import { MetaqClient } from "../../lib/client/client.ts";
import type { BrokerConnection } from "../../lib/client/connection.ts";
import { BrokerError, ConnectionError, TimeoutError } from "../../lib/client/errors.ts";
import { failureOutcome, Producer } from "../../lib/client/producer.ts";
import { PutBatcher } from "../../lib/client/put_batcher.ts";
import type { PutResult } from "../../lib/client/client.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { silentLogger } from "../../lib/log.ts";
import { type App, assemble } from "../../lib/app/assemble.ts";
import { metaqChecksum } from "../../lib/crc32.ts";
import { encodePut } from "../../lib/protocol/encoder.ts";
import { Parser } from "../../lib/protocol/parser.ts";
import { SHUTTING_DOWN_REASON } from "../../lib/protocol/shutdown.ts";
import { decodeRecords, splitAttribute } from "../../lib/protocol/record.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

let temp: TempDir;
const encoder = new TextEncoder();
let running: App;
let client: MetaqClient;

beforeAll(async () => {
  temp = tempDir();
  running = await assemble({
    config: buildConfig({
      fileText: `[system]\nnumPartitions=3\nmaxMessageSize=65536\ndataPath=${temp.path}\n` +
        `[topic=orders]\n[topic=other]\n`,
      overrides: { serverPort: "0", httpEnabled: "false" },
    }),
    logger: silentLogger,
  });
  client = new MetaqClient({ brokers: [`127.0.0.1:${running.port}`] });
});

afterAll(async () => {
  client.close();
  await running.close();
  temp[Symbol.dispose]();
});

async function partitionTexts(topic: string, partition: number): Promise<string[]> {
  const reply = await client.get({ topic, group: "t", partition, offset: 0, maxSize: 1 << 20 });
  if (reply.kind !== "records") return [];
  return decodeRecords(reply.bytes).map((record) => new TextDecoder().decode(record.data));
}

describe("Producer", () => {
  test("the window bounds the puts in flight, and every send settles", async () => {
    const producer = new Producer(client, { windowMax: 8 });
    let peak = 0;
    const sends: Promise<PutResult>[] = [];
    for (let i = 0; i < 200; i++) {
      sends.push(producer.send("orders", `w-${i}`));
      peak = Math.max(peak, producer.inFlight);
    }
    const results = await Promise.all(sends);
    expect(peak).toBeLessThanOrEqual(8);
    expect(producer.inFlight).toBe(0);
    expect(new Set(results.map((r) => r.partition))).toEqual(new Set([0, 1, 2]));
    expect(producer.counters).toMatchObject({ sent: 200, acknowledged: 200, failed: 0 });
  });

  test("sendAsync calls back once per message, errors included", async () => {
    const producer = new Producer(client);
    const outcomes: string[] = [];
    await new Promise<void>((resolve) => {
      producer.sendAsync("orders", "fine", {}, (error, result) => {
        outcomes.push(error ? "error" : `ok ${result!.partition}`);
        producer.sendAsync("nope", "refused", {}, (error2) => {
          outcomes.push(error2 ? `error ${(error2 as BrokerError).status}` : "ok");
          resolve();
        });
      });
    });
    expect(outcomes[0]).toMatch(/^ok \d$/);
    expect(outcomes[1]).toBe("error 500");
  });

  test("ordered sends keep one key's order while puts are retried", async () => {
    const producer = new Producer(client, { orderedRetryDelaysMs: [20] });
    const key = "customer-42";
    const partition = (await producer.sendOrdered("orders", key, "probe")).partition;
    running.broker.closedPartitions.add(`orders-${partition}`); // puts get 403: not written
    const sends = Array.from(
      { length: 30 },
      (_, i) => producer.sendOrdered("orders", key, `o-${i}`),
    );
    await waitFor("a retry", () => producer.counters.retried > 0);
    running.broker.closedPartitions.delete(`orders-${partition}`);
    const results = await Promise.all(sends);
    expect(results.every((r) => r.partition === partition)).toBe(true);
    const offsets = results.map((r) => r.offset);
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    const stored = (await partitionTexts("orders", partition)).filter((t) => t.startsWith("o-"));
    expect(stored).toEqual(Array.from({ length: 30 }, (_, i) => `o-${i}`));
  });

  test("a refused ordered message fails the key's messages queued behind it, not later ones", async () => {
    const producer = new Producer(client);
    const first = producer.sendOrdered("no-such-topic", "k", "a");
    const behind = producer.sendOrdered("no-such-topic", "k", "b");
    expect((await first.catch((e) => e)).status).toBe(500);
    expect((await behind.catch((e) => e)).message).toMatch(
      /^Cannot send: an earlier message with key k failed/,
    );
    expect(producer.inFlight).toBe(0);
    expect((await producer.sendOrdered("orders", "k", "after")).offset).toBeGreaterThanOrEqual(0);
  });
});

/**
 * A TCP relay to the broker that decodes what its clients send with the protocol's parser, so
 * a test can see which commands went over the wire. Told to `hold`, it stops passing on what its
 * clients send (those bytes never reach the broker: a request "on the wire" when it goes).
 */
/** Runs `use` with a client whose requests pass through a decodingRelay; closes both after. */
async function withRelayedClient(
  use: (relayed: MetaqClient, relay: Awaited<ReturnType<typeof decodingRelay>>) => Promise<void>,
): Promise<void> {
  const relay = await decodingRelay(running.port);
  const relayed = new MetaqClient({ brokers: [`127.0.0.1:${relay.port}`] });
  try {
    await use(relayed, relay);
  } finally {
    relayed.close();
    relay.close();
  }
}

async function decodingRelay(port: number) {
  const sent: { verb: string; count: number }[] = [];
  const sockets = new Set<net.Socket>();
  let holding = false;
  const server = net.createServer((inbound) => {
    const outbound = net.connect(port, "127.0.0.1");
    sockets.add(inbound).add(outbound);
    const parser = new Parser({
      bodyBytesMax: 1 << 20,
      extensions: new Map([
        ["bput", { args: 4, bodyLengthArg: 3, bodyBytesMax: 1 << 20 }],
        ["meta", { args: 1 }],
      ]),
    });
    inbound.on("data", (chunk: Uint8Array) => {
      for (const command of parser.push(chunk).commands) {
        if (command.kind === "put") sent.push({ verb: "put", count: 1 });
        if (command.kind === "extension" && command.verb === "bput") {
          sent.push({ verb: "bput", count: Number(command.args[2]) });
        }
      }
      if (!holding) outbound.write(chunk);
    });
    outbound.on("data", (chunk) => inbound.write(chunk));
    inbound.on("close", () => outbound.destroy());
    outbound.on("close", () => inbound.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    sent,
    hold: () => (holding = true),
    cut: () => {
      for (const socket of sockets) socket.destroy();
    },
    close() {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

describe("batched puts", () => {
  test("messages sent in one turn leave as one batched put per partition; each gets its id and offset", async () => {
    await withRelayedClient(async (relayed, relay) => {
      const producer = new Producer(relayed, { windowMax: 4096 });
      await producer.send("other", "warm-up", { partition: 0 }); // learns the partition count
      const sends: Promise<PutResult>[] = [];
      for (let i = 0; i < 3000; i++) {
        const attribute = i % 3 === 0 ? `a-${i}` : undefined;
        sends.push(producer.send("other", `m-${i}`, { partition: i % 2, attribute }));
      }
      const results = await Promise.all(sends);
      // Every message went in a batch (the first turn's lone warm-up as a plain put).
      const batches = relay.sent.filter((command) => command.verb === "bput");
      expect(batches.length).toBeGreaterThanOrEqual(2);
      expect(batches.reduce((sum, batch) => sum + batch.count, 0)).toBe(3000);
      expect(relay.sent.filter((command) => command.verb === "put")).toHaveLength(1);
      // The result of each message names where it is and its id, read back from the broker.
      for (const partition of [0, 1]) {
        const reply = await client.get({
          topic: "other",
          group: "t",
          partition,
          offset: 0,
          maxSize: 1 << 20,
        });
        if (reply.kind !== "records") throw new Error(`partition ${partition}: ${reply.kind}`);
        const stored = new Map(decodeRecords(reply.bytes).map((record) => [record.offset, record]));
        for (const [i, result] of results.entries()) {
          if (i % 2 !== partition) continue;
          expect(result.partition).toBe(partition);
          const record = stored.get(result.offset);
          expect(record?.id, `message ${i}`).toBe(result.id);
          const { payload, attribute } = splitAttribute(record!.flag, record!.data);
          expect(new TextDecoder().decode(payload)).toBe(`m-${i}`);
          expect(attribute).toBe(i % 3 === 0 ? `a-${i}` : undefined);
        }
        // In the order sent: offsets grow with the message number within a partition.
        const offsets = results.filter((_, i) => i % 2 === partition).map((r) => r.offset);
        expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
      }
    });
  });

  test("a full window sent in one turn leaves as batches of half the window, in order", async () => {
    await withRelayedClient(async (relayed, relay) => {
      const producer = new Producer(relayed, { windowMax: 100 });
      await producer.send("other", "warm-up", { partition: 1 }); // learns the partition count
      const sent = relay.sent.length;
      const sends: Promise<PutResult>[] = [];
      // The first batch fills before this client knows whether the broker takes batches: it
      // waits for the answer instead of leaving as plain puts.
      for (let i = 0; i < 100; i++) sends.push(producer.send("other", `h-${i}`, { partition: 1 }));
      const results = await Promise.all(sends);
      const batches = relay.sent.slice(sent).filter((command) => command.verb === "bput");
      expect(batches.map((batch) => batch.count)).toEqual([50, 50]);
      expect(relay.sent.slice(sent).filter((command) => command.verb === "put")).toHaveLength(0);
      const offsets = results.map((result) => result.offset);
      expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    });
  });

  test("full batches and a message left over keep their order while the broker is asked about batches", async () => {
    await withRelayedClient(async (relayed, relay) => {
      const before = (await partitionTexts("other", 0)).length;
      const batcher = new PutBatcher(relayed, { batchRecordsMax: 2 });
      const outcomes: Promise<void>[] = [];
      for (let i = 0; i < 5; i++) {
        outcomes.push(
          new Promise((resolve, reject) =>
            batcher.add(
              "other",
              0,
              { payload: encoder.encode(`o-${i}`) },
              (error) => error ? reject(error) : resolve(),
            )
          ),
        );
      }
      await Promise.all(outcomes);
      expect(relay.sent.map((command) => `${command.verb}:${command.count}`)).toEqual([
        "bput:2",
        "bput:2",
        "put:1",
      ]);
      expect((await partitionTexts("other", 0)).slice(before)).toEqual([
        "o-0",
        "o-1",
        "o-2",
        "o-3",
        "o-4",
      ]);
    });
  });

  test("tiny messages sent in one turn, more than a batch may carry, are all stored", async () => {
    // 20,000 one-byte messages fit in 1 MiB of records (21 bytes each) but not in one batched
    // put: a batch carries at most BATCH_PUT_RECORDS_MAX (16,384) records.
    const producer = new Producer(client, { windowMax: 20_000 });
    await producer.send("other", "warm-up", { partition: 2 });
    const before = (await partitionTexts("other", 2)).length;
    const sends: Promise<PutResult>[] = [];
    for (let i = 0; i < 20_000; i++) {
      sends.push(producer.send("other", String.fromCharCode(97 + (i % 26)), { partition: 2 }));
    }
    const settled = await Promise.allSettled(sends);
    expect(settled.filter((outcome) => outcome.status === "rejected")).toHaveLength(0);
    const stored = (await partitionTexts("other", 2)).slice(before);
    expect(stored).toHaveLength(20_000);
    expect(stored.slice(0, 3)).toEqual(["a", "b", "c"]);
    expect(stored[19_999]).toBe(String.fromCharCode(97 + (19_999 % 26)));
  });

  test("a batch with a record the broker refuses fails every message of it, storing none", async () => {
    const producer = new Producer(client, { windowMax: 64 });
    await producer.send("orders", "warm-up", { partition: 2 });
    const before = await partitionTexts("orders", 2);
    // Over the broker's maxMessageSize (64 KiB here), well within a batch's size.
    const big = "x".repeat(running.broker.config.system.maxMessageSize + 1);
    const sends = ["small-1", big, "small-2"].map((payload) =>
      producer.send("orders", payload, { partition: 2 }).then(() => "stored", (e) => e.message)
    );
    const outcomes = await Promise.all(sends);
    for (const outcome of outcomes) expect(outcome).toContain("exceeds maxMessageSize");
    expect(await partitionTexts("orders", 2)).toEqual(before);
  });
});

test("failed puts are classified: not written, unknown, or refused", () => {
  const result = (code: number, text: string) =>
    Object.assign(BrokerError.verbatim("internal", text), { status: code });
  expect(failureOutcome(new TimeoutError("no reply"))).toBe("unknown");
  expect(failureOutcome(new ConnectionError("closed"))).toBe("unknown");
  expect(failureOutcome(new ConnectionError("closed", { unsent: true }))).toBe("notWritten");
  expect(failureOutcome(result(503, "Cannot enqueue request: queue is full"))).toBe("notWritten");
  expect(failureOutcome(result(403, "partition closed"))).toBe("notWritten");
  expect(
    failureOutcome(
      result(500, "Put message ... failed.Detail:Checksum failure,message may be corrupted"),
    ),
  )
    .toBe("notWritten");
  expect(
    failureOutcome(result(500, "Put message ... failed.Detail:The server do not accept topic x")),
  )
    .toBe("refused");
  expect(failureOutcome(result(500, "Put message ... failed.Detail:wrong partition 9"))).toBe(
    "refused",
  );
  expect(failureOutcome(result(500, "Put message ... failed.Detail:Cannot write: storage failed")))
    .toBe("unknown");
  expect(failureOutcome(result(400, "Cannot accept message: too large"))).toBe("refused");
});

test("a put that never left the client fails as unsent, which a producer may send again", async () => {
  // A port nothing listens on: the put cannot be written anywhere.
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const nowhere = new MetaqClient({
    brokers: [`127.0.0.1:${port}`],
    reconnectAttemptsMax: 1,
    routeToLeaders: false,
  });
  try {
    const error = await nowhere.put("orders", 0, { payload: new Uint8Array([1]) }).then(
      () => undefined,
      (failure) => failure,
    );
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).unsent).toBe(true);
    expect(failureOutcome(error)).toBe("notWritten");
  } finally {
    nowhere.close();
  }
  // On a connection that has closed, a request is refused before it is written: unsent too.
  const own = new MetaqClient({ brokers: [`127.0.0.1:${running.port}`] });
  const connection = await own.connection();
  own.close();
  const refused = await connection.request(new Uint8Array([0x76]), 1).catch((failure) => failure);
  expect([refused instanceof ConnectionError, refused.unsent]).toEqual([true, true]);
});

test("a heartbeat that gets no answer closes the connection; the next request reconnects", async () => {
  const sockets: net.Socket[] = [];
  const received: string[] = [];
  let closedByClient = 0;
  const silent = net.createServer((socket) => {
    const index = sockets.push(socket) - 1;
    received[index] = "";
    socket.on("data", (chunk) => (received[index] += chunk)); // read, never answer
    socket.on("end", () => closedByClient++);
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const port = (silent.address() as net.AddressInfo).port;
  const quiet = new MetaqClient({
    brokers: [`127.0.0.1:${port}`],
    heartbeatIdleMs: 100,
    heartbeatTimeoutMs: 150,
    requestTimeoutMs: 200,
  });
  try {
    await quiet.connect();
    await waitFor("the client to give up on the silent connection", () => closedByClient === 1, {
      timeoutMs: 5000,
    });
    // One unanswered heartbeat was enough (MetaQ), not three.
    expect(received[0].match(/^version -?\d+\r\n$/gm)?.length).toBe(1);
    await expect(quiet.version()).rejects.toBeInstanceOf(TimeoutError);
    expect(sockets.length).toBe(2);
  } finally {
    quiet.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
});

/** What a failed request's error says of it, when it is a ConnectionError (else undefined). */
function connectionFailure(error: unknown) {
  if (!(error instanceof ConnectionError)) return undefined;
  return { unsent: error.unsent, outcome: failureOutcome(error) };
}

/** A client whose one broker is a decoding relay in front of `port`, and its connection. */
async function throughRelay(port: number) {
  const relay = await decodingRelay(port);
  const client = new MetaqClient({ brokers: [`127.0.0.1:${relay.port}`], routeToLeaders: false });
  return { relay, client, connection: await client.connection() };
}

/** A plain `put` of `text` to orders-0 on `connection`: the broker's answer, as it came. */
function plainPut(connection: BrokerConnection, text: string) {
  const body = new TextEncoder().encode(text);
  const opaque = connection.nextOpaque();
  const request = { topic: "orders", partition: 0, flag: 0, opaque, body };
  return connection.request(encodePut({ ...request, checksum: metaqChecksum(body) }), opaque);
}

describe("a broker that shuts down", () => {
  test("a put written after its shutting-down 503 fails as unsent when the connection closes; one written before stays unknown", async () => {
    await using own = tempDir();
    const broker = await assemble({
      config: buildConfig({
        fileText: `[system]\nnumPartitions=1\ndataPath=${own.path}\n[topic=orders]\n`,
        overrides: { serverPort: "0", httpEnabled: "false" },
      }),
      logger: silentLogger,
    });
    const { relay, client: relayed, connection } = await throughRelay(broker.port);
    try {
      const put = (text: string) => plainPut(connection, text);
      const first = await put("before");
      expect(first.kind === "result" ? first.code : 0).toBe(200);
      const closing = broker.close();
      // The drain starts once the parts before the server have stopped: puts are served until
      // then, and refused with the shutting-down 503 from then on.
      let refused: { code: number; body: Uint8Array } | undefined;
      for (let attempt = 0; attempt < 200 && !refused; attempt++) {
        const reply = await put(`during ${attempt}`);
        if (reply.kind === "result" && reply.code === 503) refused = reply;
      }
      expect(new TextDecoder().decode(refused!.body)).toBe(SHUTTING_DOWN_REASON);
      relay.hold(); // the next put is written but never reaches the broker
      const after = await put("after").then(() => undefined, (error) => error);
      await closing;
      expect(connectionFailure(after)).toEqual({ unsent: true, outcome: "notWritten" });
    } finally {
      relayed.close();
      relay.close();
      await broker.close();
    }

    // Control: a put written with no shutdown announced, cut off before its answer, may have
    // been stored for all the client knows.
    const cut = await throughRelay(running.port);
    const { relay: cutRelay, client: cutClient, connection: cutConnection } = cut;
    try {
      cutRelay.hold();
      const pending = plainPut(cutConnection, "cut").then(() => undefined, (error) => error);
      await new Promise((resolve) => setImmediate(resolve)); // written to the relay
      cutRelay.cut();
      const error = await pending;
      expect(connectionFailure(error)).toEqual({ unsent: false, outcome: "unknown" });
    } finally {
      cutClient.close();
      cutRelay.close();
    }
  });
});

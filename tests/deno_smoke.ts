/**
 * @module Deno smoke test (`npm run test:deno`): the same sources run on Deno. Starts a broker
 * in-process on real files and a real port, produces and consumes through the TypeScript client,
 * uses the HTTP API (served by the portable node:http listener) including a live event stream
 * that is still open at shutdown, and runs the CLI entry point. Exits non-zero on any mismatch,
 * or when something keeps the process alive after shutdown.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { MetaqClient } from "../lib/client/client.ts";
import { Producer } from "../lib/client/producer.ts";
import { TransactionalProducer } from "../lib/client/transaction.ts";
import { buildConfig } from "../lib/config/config.ts";
import { silentLogger } from "../lib/log.ts";
import { assemble } from "../lib/app/assemble.ts";
import { Consumer } from "../lib/client/consumer.ts";
import { GroupClient } from "../lib/client/group_client.ts";
import { decodeRecords } from "../lib/protocol/record.ts";
import * as https from "node:https";
import * as net from "node:net";
import { PeerTransport } from "../lib/cluster/peer_transport.ts";
import { selfSignedCertificate } from "../lib/security/cert.ts";
import { ZkClient } from "../lib/zk/client.ts";
import { readText } from "../lib/zk/nodes.ts";
import { parseOriginAttribute } from "../lib/protocol/uplink_origin.ts";
import { parseScheduledAttribute } from "../lib/protocol/delayed.ts";
import { splitAttribute } from "../lib/protocol/record.ts";
import { startZooKeeper } from "./support/zookeeper.ts";

function check(condition: unknown, message: string): void {
  if (!condition) {
    console.error(`deno smoke test failed: ${message}`);
    process.exit(1);
  }
}

// Anything left running after shutdown (a socket, a stream, a timer) would keep Deno alive.
const watchdog = setTimeout(() => {
  console.error("deno smoke test failed: the process did not finish in 60 s");
  process.exit(1);
}, 60_000);

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-deno-"));
try {
  const config = buildConfig({
    overrides: { serverPort: "0", dataPath: dataDir, numPartitions: "2", dashboardHttpPort: "0" },
  });
  const broker = await assemble({
    config,
    logger: silentLogger,
  });
  const client = new MetaqClient({ brokers: [`127.0.0.1:${broker.port}`] });
  const producer = new Producer(client, { windowMax: 64 });
  const sent = Array.from({ length: 500 }, (_, i) => `deno-${i}`);
  await Promise.all(sent.map((text) => producer.send("smoke", text, { partition: 0 })));
  const reply = await client.get({
    topic: "smoke",
    group: "g",
    partition: 0,
    offset: 0,
    maxSize: 1 << 20,
  });
  check(reply.kind === "records", `get returned ${reply.kind}`);
  const received = decodeRecords((reply as { bytes: Uint8Array }).bytes).map((record) =>
    new TextDecoder().decode(record.data)
  );
  check(
    JSON.stringify(received) === JSON.stringify(sent),
    "records read back differ from those sent",
  );
  check((await client.stats()).includes("cmd_put 500"), "stats do not count the puts");
  const transactional = new TransactionalProducer(client);
  await transactional.transaction(async (tx) => {
    for (const text of ["tx-a", "tx-b"]) await tx.send("smoke", text, { partition: 1 });
  });
  const committed = await client.get({
    topic: "smoke",
    group: "g",
    partition: 1,
    offset: 0,
    maxSize: 1 << 20,
  });
  check(
    committed.kind === "records" &&
      decodeRecords(committed.bytes).map((record) => new TextDecoder().decode(record.data))
          .join(",") === "tx-a,tx-b",
    "a committed transaction's messages are not in the partition",
  );
  await smokeDelayed(client);
  client.close();
  await checkHttp(`http://127.0.0.1:${broker.httpPort}`, broker.close);
  await smokeGroups();
  await smokeSecurity();
  await smokeZooKeeper();
  await smokeUplink();

  const deno = process.execPath;
  const help = spawnSync(deno, ["run", "-A", "main.ts", "--help"], { encoding: "utf8" });
  check(
    help.status === 0 && help.stdout.includes("produce"),
    `deno run main.ts --help failed: ${help.stderr}`,
  );
  console.log(
    "deno smoke test passed: broker, transactions, delayed messages, consumer groups, client, " +
      "HTTP API, authentication, TLS, peer links, ZooKeeper registration, edge uplink and CLI " +
      "run on Deno",
  );
} finally {
  fs.rmSync(dataDir, { recursive: true, force: true });
  clearTimeout(watchdog);
}

/** The HTTP API on Deno: produce, fetch, a live stream, metrics; then shutdown with it open. */
async function checkHttp(base: string, close: () => Promise<void>): Promise<void> {
  const produced = await fetch(`${base}/v1/topics/smokehttp/messages`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ payload: "over http", partition: 1 }] }),
  });
  check(produced.status === 200, `HTTP produce answered ${produced.status}`);
  await produced.body?.cancel();
  const fetched = await (await fetch(`${base}/v1/topics/smokehttp/partitions/1/messages`)).json();
  check(fetched.messages[0]?.payload === "over http", "HTTP fetch did not return the message");
  const stream = await fetch(`${base}/v1/topics/smokehttp/stream?partition=1&from=beginning`);
  const reader = stream.body!.getReader();
  let text = "";
  for (let reads = 0; reads < 20 && !text.includes("over http"); reads++) {
    text += new TextDecoder().decode((await reader.read()).value);
  }
  check(text.includes('"payload":"over http"'), "the HTTP stream did not deliver the message");
  const metrics = await (await fetch(`${base}/metrics`)).text();
  // 500 plain puts, 2 transactional ones and the one over HTTP.
  check(metrics.includes("metaq_put_requests_total 503"), "metrics do not count the puts");
  await close();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ended = await Promise.race([
    reader.read().then(() => true, () => true),
    new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), 5000)),
  ]);
  clearTimeout(timer);
  check(ended, "the open event stream did not end at shutdown");
}

/** A consumer group on Deno: join, consume every message, commit, leave. */
async function smokeGroups(): Promise<void> {
  const groupsDir = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-deno-groups-"));
  try {
    const config = buildConfig({
      overrides: { serverPort: "0", dataPath: groupsDir, numPartitions: "3", httpEnabled: "false" },
    });
    const broker = await assemble({ config, logger: silentLogger });
    const client = new MetaqClient({ brokers: [`127.0.0.1:${broker.port}`] });
    const producer = new Producer(client);
    await Promise.all(Array.from({ length: 90 }, (_, i) => producer.send("grouped", `g-${i}`)));
    const seen = new Set<string>();
    const consumer = new Consumer(client, {
      group: "deno",
      maxDelayFetchMs: 100,
      recoverDir: path.join(groupsDir, "recover"),
    }).subscribe("grouped", (message) => void seen.add(new TextDecoder().decode(message.payload)));
    await consumer.start();
    for (let i = 0; i < 200 && seen.size < 90; i++) await new Promise((r) => setTimeout(r, 25));
    await consumer.close();
    check(seen.size === 90, `the group consumer saw ${seen.size} of 90 messages`);
    const [report] = await new GroupClient(client).describe("deno");
    check(report.partitions.every((p) => p.lag === 0), "the group did not commit its offsets");
    client.close();
    await broker.close();
  } finally {
    fs.rmSync(groupsDir, { recursive: true, force: true });
  }
}

/**
 * Security on Deno: users and permissions, TLS on the client and HTTP ports (node:tls and the
 * node:https fallback), a certificate made without openssl, and two peer transports that prove
 * a cluster secret over mutual TLS.
 */
async function smokeSecurity(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-deno-security-"));
  try {
    const pair = selfSignedCertificate({ hosts: ["localhost", "127.0.0.1"] });
    fs.writeFileSync(path.join(dir, "cert.pem"), pair.cert);
    fs.writeFileSync(path.join(dir, "key.pem"), pair.key);
    const token = "deno-token-0123456789";
    const config = buildConfig({
      fileText:
        `[system]\n[topic=*]\n[user=deno]\ntoken=${token}\nproduce=secure\nconsume=secure\n`,
      overrides: {
        serverPort: "0",
        dashboardHttpPort: "0",
        dataPath: path.join(dir, "data"),
        tlsCertFile: path.join(dir, "cert.pem"),
        tlsKeyFile: path.join(dir, "key.pem"),
      },
    });
    const broker = await assemble({ config, logger: silentLogger });
    const address = `127.0.0.1:${broker.port}`;
    const client = new MetaqClient({
      brokers: [address],
      auth: { user: "deno", token },
      tls: { ca: pair.cert },
    });
    const put = await client.put("secure", 0, { payload: new TextEncoder().encode("sealed") });
    check(put.offset === 0, "a put over TLS with auth was not stored");
    const denied = await client.put("other", 0, { payload: new Uint8Array(1) }).catch((e) => e);
    check(denied?.status === 403, "a put outside the user's permissions was not refused");
    client.close();
    const stranger = new MetaqClient({
      brokers: [address],
      auth: { user: "deno", token: "wrong-token-000000000" },
      tls: { ca: pair.cert },
      reconnectAttemptsMax: 1,
    });
    const refused = await stranger.version().catch((e) => e);
    check(refused?.status === 401, "a wrong token was not refused with 401");
    stranger.close();
    const status = await new Promise<number>((resolve, reject) => {
      https.get(
        `https://127.0.0.1:${broker.httpPort}/v1/overview`,
        { ca: pair.cert, headers: { authorization: `Bearer ${token}` } },
        (response) => {
          response.resume();
          resolve(response.statusCode ?? 0);
        },
      ).once("error", reject);
    });
    check(status === 200, `HTTPS with a bearer token answered ${status}`);
    await broker.close();
    await smokePeers(pair);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function smokePeers(pair: { cert: string; key: string }): Promise<void> {
  const ports = await Promise.all([0, 1].map(() => freePort()));
  const peers = ports.map((port, i) => ({ id: i + 1, host: "127.0.0.1", port }));
  const received: string[] = [];
  const transports = peers.map((peer) =>
    new PeerTransport({
      nodeId: peer.id,
      host: "127.0.0.1",
      port: peer.port,
      peers,
      logger: silentLogger,
      secret: "deno-cluster-secret-0123",
      tls: { ...pair, ca: pair.cert },
      onFrame: (from, payload) => received.push(`${from}:${new TextDecoder().decode(payload)}`),
    })
  );
  await Promise.all(transports.map((t) => t.listen()));
  for (let i = 0; i < 200 && !(transports[0].isConnected(2) && transports[1].isConnected(1)); i++) {
    await new Promise((r) => setTimeout(r, 25));
  }
  transports[0].send(2, new TextEncoder().encode("hello"));
  for (let i = 0; i < 200 && received.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 25));
  }
  check(received.join() === "1:hello", `peer frames over mutual TLS: ${received.join()}`);
  await Promise.all(transports.map((t) => t.close()));
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** A broker registers in a real ZooKeeper (Debian's, as a child process) and leaves at shutdown. */
async function smokeZooKeeper(): Promise<void> {
  const zk = await startZooKeeper();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-deno-zk-"));
  try {
    const broker = await assemble({
      config: buildConfig({
        fileText: `[system]\nbrokerId=3\nserverPort=0\nhttpEnabled=false\ndataPath=${dir}\n` +
          `[zookeeper]\nzk.zkConnect=${zk.connect}\n[topic=orders]\n`,
      }),
      logger: silentLogger,
    });
    const reader = await ZkClient.open({
      connect: zk.connect,
      sessionTimeoutMs: 10_000,
      connectionTimeoutMs: 10_000,
    });
    const master = await readText(reader, "/meta/brokers/ids/3/master");
    check(master === `meta://127.0.0.1:${broker.port}`, `ZooKeeper master node: ${master}`);
    const json = await readText(reader, "/meta/brokers/topics-pub/orders/3-m");
    check(json === '{"numParts":1,"broker":"3-m"}', `ZooKeeper topic node: ${json}`);
    await broker.close();
    check(
      (await reader.exists("/meta/brokers/ids/3/master")) === undefined,
      "the master node is still there after shutdown",
    );
    await reader.close();
  } finally {
    await zk[Symbol.asyncDispose]();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** An edge uplinked to a hub, both in this Deno process: what the edge took reaches the hub once. */
async function smokeUplink(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-deno-uplink-"));
  try {
    const hub = await assemble({
      config: buildConfig({
        overrides: { serverPort: "0", httpEnabled: "false", dataPath: path.join(dir, "hub") },
      }),
      logger: silentLogger,
    });
    const edge = await assemble({
      config: buildConfig({
        fileText: `[uplink]\nhubs=127.0.0.1:${hub.port}\nsite=deno-edge\nprefix=edge.\n`,
        overrides: { serverPort: "0", httpEnabled: "false", dataPath: path.join(dir, "edge") },
      }),
      logger: silentLogger,
    });
    const client = new MetaqClient({ brokers: [`127.0.0.1:${edge.port}`] });
    for (const text of ["up-1", "up-2", "up-3"]) {
      await client.put("edgy", 0, { payload: new TextEncoder().encode(text) });
    }
    client.close();
    const hubRecords = () => {
      const log = hub.logs.get("edge.edgy", 0);
      const bytes = new Uint8Array(log?.endOffset ?? 0);
      if (log) log.readInto(bytes, 0, 0, bytes.length);
      return decodeRecords(bytes);
    };
    const deadline = Date.now() + 15_000;
    // Polls until the hub has three messages (they may come in more than one batch), bounded by
    // the deadline; one sent twice shows in the check below.
    while (Date.now() < deadline && hubRecords().length < 3) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const messages = hubRecords().map((record) => splitAttribute(record.flag, record.data));
    check(
      messages.map((m) => new TextDecoder().decode(m.payload)).join(",") === "up-1,up-2,up-3",
      "the edge's messages did not reach the hub once, in order",
    );
    check(
      parseOriginAttribute(messages[0].attribute ?? "")?.origin.site === "deno-edge",
      "a forwarded message does not carry its origin",
    );
    await edge.close();
    await hub.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A delayed message on Deno: held, then appended at its time with its id; a cancel holds. */
async function smokeDelayed(client: MetaqClient): Promise<void> {
  const payload = new TextEncoder().encode("later");
  const sent = await client.putDelayed("smoke-later", 0, { payload }, { delayMs: 300 });
  const cancelled = await client.putDelayed("smoke-later", 0, { payload }, { delayMs: 60_000 });
  await client.cancelDelayed(cancelled.id);
  const deadline = Date.now() + 15_000;
  let records: ReturnType<typeof decodeRecords> = [];
  // Polls until the message is there; bounded by the deadline.
  while (Date.now() < deadline && records.length === 0) {
    const reply = await client.get({
      topic: "smoke-later",
      group: "g",
      partition: 0,
      offset: 0,
      maxSize: 1 << 20,
    });
    if (reply.kind === "records") records = decodeRecords(reply.bytes);
    else await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const readAt = Date.now();
  check(
    records.length === 1 && records[0].id === sent.id,
    "the delayed message did not arrive once",
  );
  const { attribute } = splitAttribute(records[0].flag, records[0].data);
  const scheduled = parseScheduledAttribute(attribute ?? "")?.scheduled;
  check(
    scheduled?.scheduledAtMs === sent.deliverAtMs && readAt >= sent.deliverAtMs,
    "the delayed message does not carry its time, or came early",
  );
}

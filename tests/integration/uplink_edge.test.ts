/**
 * An edge broker and its hub in this process, over real TCP through a LinkProxy the test cuts:
 * the edge keeps taking writes while the link is down and forwards them once it is back, with
 * prefixed names and each message's origin; retention deletes nothing the hub has not
 * acknowledged; the backlog cap drops the oldest messages, exactly as many as it counts; a hub
 * topic with too few partitions is reported and not forwarded; TLS and a token reach a hub that
 * asks for them, and a wrong token is reported; an edge uplinked to itself does not loop; an edge
 * whose log lost what the hub has forwards its new messages, not mistaking them for the old.
 */
import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import { type App, assemble } from "../../lib/app/assemble.ts";
import { MetaqClient } from "../../lib/client/client.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { silentLogger } from "../../lib/log.ts";
import { decodeRecords, splitAttribute } from "../../lib/protocol/record.ts";
import { parseOriginAttribute } from "../../lib/protocol/uplink_origin.ts";
import { selfSignedCertificate } from "../../lib/security/cert.ts";
import { cut, LinkProxy, pass } from "../cluster/link_proxy.ts";
import { Random } from "../cluster/random.ts";
import { freePorts } from "../support/free_port.ts";
import { tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startHub(dir: string, partitions = 2, extra = ""): Promise<App> {
  const hub = await assemble({
    config: buildConfig({
      fileText: `[system]\ndataPath=${dir}\nnumPartitions=${partitions}\n${extra}`,
      overrides: { serverPort: "0", httpEnabled: "false" },
    }),
    logger: silentLogger,
  });
  cleanups.push(() => hub.close());
  return hub;
}

async function startEdge(
  dir: string,
  hubAddress: string,
  uplink: string,
  http = false,
): Promise<App> {
  const edge = await assemble({
    config: buildConfig({
      fileText: `[system]
dataPath=${dir}
numPartitions=1
maxSegmentSize=4096
deletePolicy=delete,0s
[topic=wide]
numPartitions=4
[topic=*]
[uplink]
hubs=${hubAddress}
site=edge-7
retryMinMs=20
retryMaxMs=200
requestTimeoutMs=2000
${uplink}
`,
      overrides: { serverPort: "0", httpEnabled: String(http), dashboardHttpPort: "0" },
    }),
    logger: silentLogger,
    httpEngine: "node",
  });
  cleanups.push(() => edge.close());
  return edge;
}

async function linkTo(hub: App): Promise<LinkProxy> {
  const proxy = await LinkProxy.listen({
    name: "edge->hub",
    port: 0,
    targetPort: hub.port,
    random: new Random(16),
  });
  cleanups.push(() => proxy.close());
  return proxy;
}

async function produce(edge: App, topic: string, payloads: string[], partition = 0) {
  const client = new MetaqClient({ brokers: [`127.0.0.1:${edge.port}`] });
  try {
    // Pipelined 50 at a time: puts to one partition are acknowledged in order.
    for (let start = 0; start < payloads.length; start += 50) {
      await Promise.all(
        payloads.slice(start, start + 50).map((payload) =>
          client.put(topic, partition, { payload: new TextEncoder().encode(payload) })
        ),
      );
    }
  } finally {
    client.close();
  }
}

/** The messages of `topic`-`partition` at `app`, with their attributes. */
function messagesAt(app: App, topic: string, partition: number) {
  const log = app.logs.get(topic, partition);
  if (!log) return [];
  const bytes = new Uint8Array(log.endOffset - log.startOffset);
  log.readInto(bytes, 0, log.startOffset, bytes.length);
  return decodeRecords(bytes, log.startOffset).map((record) => {
    const { attribute, payload } = splitAttribute(record.flag, record.data);
    return { attribute, payload: new TextDecoder().decode(payload) };
  });
}

function pumpOf(edge: App, topic: string, partition: number) {
  return edge.uplink!.status().partitions.find((p) =>
    p.topic === topic && p.partition === partition
  );
}

test("an edge keeps writes while its hub is away and forwards them once, in order", async () => {
  await using temp = tempDir("metaq-uplink-edge-");
  const hub = await startHub(`${temp.path}/hub`);
  const link = await linkTo(hub);
  link.setMode("both", cut());
  const edge = await startEdge(
    `${temp.path}/edge`,
    `127.0.0.1:${link.port}`,
    "prefix=site-7.",
    true,
  );
  const metrics = async () =>
    await (await fetch(`http://127.0.0.1:${edge.httpPort}/metrics`)).text();
  const payloads = Array.from({ length: 300 }, (_, index) => `message-${index}-${"x".repeat(40)}`);
  await produce(edge, "orders", payloads);
  expect(edge.uplink!.status().state).toBe("connecting");
  expect(pumpOf(edge, "orders", 0)?.state).toBe("waiting");
  const log = edge.logs.get("orders", 0)!;
  expect(log.facts().segments).toBeGreaterThan(3);
  // Everything is past its retention age, and none of it is at the hub: nothing may go.
  await edge.maintenance.runRetention();
  expect(log.startOffset).toBe(0);
  const partitionLabels = '{topic="orders",partition="0"}';
  await waitFor("the whole backlog counted", () => pumpOf(edge, "orders", 0)?.lagMessages === 300);
  // The proxy accepts and resets each connection: the link backs off, it does not spin.
  expect(edge.uplink!.status().connects).toBeLessThan(30);
  const waiting = await metrics();
  expect(waiting).toContain("\nmetaq_uplink_connected 0\n");
  expect(waiting).toContain(`\nmetaq_uplink_lag_messages${partitionLabels} 300\n`);
  expect(waiting).toContain(`\nmetaq_uplink_lag_bytes${partitionLabels} ${log.endOffset}\n`);
  expect(waiting).toContain(
    `\nmetaq_uplink_partition_state{topic="orders",partition="0",state="waiting"} 1\n`,
  );

  link.setMode("both", pass());
  await waitFor(
    "all 300 messages at the hub",
    () => messagesAt(hub, "site-7.orders", 0).length >= 300,
    { timeoutMs: 15_000 },
  );
  const atHub = messagesAt(hub, "site-7.orders", 0);
  expect(atHub.map((message) => message.payload)).toEqual(payloads);
  let offset = 0;
  for (const message of atHub) {
    const parsed = parseOriginAttribute(message.attribute!)!;
    expect(parsed.origin).toMatchObject({ site: "edge-7", topic: "orders", partition: 0, offset });
    expect(parsed.attribute).toBeUndefined();
    offset += 20 + message.payload.length;
  }
  // Once the hub's acknowledgement is saved, retention deletes what the hub has.
  await waitFor(
    "the saved position at the end",
    () => pumpOf(edge, "orders", 0)?.savedPosition === log.endOffset,
  );
  await edge.maintenance.runRetention();
  expect(log.startOffset).toBeGreaterThan(0);
  expect(pumpOf(edge, "orders", 0)).toMatchObject({
    state: "caught-up",
    lagBytes: 0,
    lagMessages: 0,
    forwardedMessages: 300,
    droppedMessages: 0,
  });
  const forwarded = await metrics();
  expect(forwarded).toContain("\nmetaq_uplink_connected 1\n");
  expect(forwarded).toContain(`\nmetaq_uplink_lag_messages${partitionLabels} 0\n`);
  expect(forwarded).toContain(`\nmetaq_uplink_forwarded_messages_total${partitionLabels} 300\n`);
  expect(forwarded).toContain(`\nmetaq_uplink_dropped_messages_total${partitionLabels} 0\n`);
  const status = await (await fetch(`http://127.0.0.1:${edge.httpPort}/v1/uplink`)).json();
  expect(status).toMatchObject({ site: "edge-7", state: "up", partitions: [{ topic: "orders" }] });
});

test("a hub topic with fewer partitions is reported and its messages stay at the edge", async () => {
  await using temp = tempDir("metaq-uplink-wide-");
  const hub = await startHub(`${temp.path}/hub`, 2);
  const edge = await startEdge(`${temp.path}/edge`, `127.0.0.1:${hub.port}`, "");
  await produce(edge, "wide", ["kept"], 3);
  await waitFor("the mismatch reported", () => pumpOf(edge, "wide", 3)?.state === "blocked");
  expect(pumpOf(edge, "wide", 3)?.reason).toContain(
    "the hub's wide has 2 partitions, the edge's has 4",
  );
  expect(hub.logs.get("wide", 3)).toBeUndefined();
  await edge.maintenance.runRetention();
  expect(messagesAt(edge, "wide", 3).map((message) => message.payload)).toEqual(["kept"]);
});

test("the backlog cap drops the oldest messages and counts exactly those", async () => {
  await using temp = tempDir("metaq-uplink-cap-");
  const hub = await startHub(`${temp.path}/hub`);
  const link = await linkTo(hub);
  link.setMode("both", cut());
  const edge = await startEdge(
    `${temp.path}/edge`,
    `127.0.0.1:${link.port}`,
    "maxBacklogBytes=8192\nkeepPartition=false",
  );
  const payloads = Array.from({ length: 1200 }, (_, index) => `m${String(index).padStart(4, "0")}`);
  await produce(edge, "capped", payloads);
  await waitFor("the cap enforced", () => {
    const pump = pumpOf(edge, "capped", 0);
    return (pump?.droppedMessages ?? 0) > 0 && pump!.lagBytes <= 8192 &&
      edge.logs.get("capped", 0)!.startOffset > 0; // and the dropped segments deleted
  }, { timeoutMs: 10_000 });
  const dropped = pumpOf(edge, "capped", 0)!;
  expect(dropped.droppedBytes).toBe(dropped.position);
  expect(edge.logs.get("capped", 0)!.startOffset).toBeLessThanOrEqual(dropped.position);

  link.setMode("both", pass());
  const kept = payloads.length - dropped.droppedMessages;
  const hubPartition = await waitForHubPartition(edge, "capped");
  await waitFor(
    "the rest at the hub",
    () => messagesAt(hub, "capped", hubPartition).length >= kept,
    { timeoutMs: 15_000 },
  );
  expect(messagesAt(hub, "capped", hubPartition).map((message) => message.payload)).toEqual(
    payloads.slice(dropped.droppedMessages),
  );
  expect(pumpOf(edge, "capped", 0)?.droppedBytes).toBe(dropped.droppedBytes);
});

async function waitForHubPartition(edge: App, topic: string): Promise<number> {
  await waitFor(
    "the hub partition chosen",
    () => pumpOf(edge, topic, 0)?.hubPartition !== undefined,
  );
  return pumpOf(edge, topic, 0)!.hubPartition!;
}

test("an edge reaches a hub over TLS with its token; a wrong token is reported", async () => {
  await using temp = tempDir("metaq-uplink-tls-");
  const pair = selfSignedCertificate({ hosts: ["localhost", "127.0.0.1"] });
  fs.writeFileSync(`${temp.path}/cert.pem`, pair.cert);
  fs.writeFileSync(`${temp.path}/key.pem`, pair.key);
  fs.writeFileSync(`${temp.path}/edge.token`, "edge-token-0123456789abcdef\n");
  const hub = await startHub(
    `${temp.path}/hub`,
    2,
    `tlsCertFile=${temp.path}/cert.pem\ntlsKeyFile=${temp.path}/key.pem\n[topic=*]\n` +
      "[user=edge]\ntoken=edge-token-0123456789abcdef\nproduce=site-9.*\n",
  );
  const trust = `tls=true\ntlsCaFile=${temp.path}/cert.pem\nprefix=site-9.\nuser=edge\n`;
  const edge = await startEdge(
    `${temp.path}/edge`,
    `127.0.0.1:${hub.port}`,
    `${trust}tokenFile=${temp.path}/edge.token`,
  );
  const wrong = await startEdge(
    `${temp.path}/wrong`,
    `127.0.0.1:${hub.port}`,
    `${trust}token=not-the-edge-token-at-all`,
  );
  await produce(edge, "orders", ["over tls"]);
  await produce(wrong, "orders", ["never"]);
  await waitFor("the message at the hub", () => messagesAt(hub, "site-9.orders", 0).length === 1);
  expect(messagesAt(hub, "site-9.orders", 0).map((message) => message.payload)).toEqual([
    "over tls",
  ]);
  await waitFor(
    "the refusal reported",
    () => wrong.uplink!.status().lastError?.includes("Cannot authenticate") === true,
  );
  expect(wrong.uplink!.status().state).toBe("connecting");
  expect(pumpOf(wrong, "orders", 0)?.state).toBe("waiting");
  expect(messagesAt(hub, "site-9.orders", 0).length).toBe(1);
});

test("an edge uplinked to itself sends each message once and passes over what comes back", async () => {
  await using temp = tempDir("metaq-uplink-loop-");
  const [port] = await freePorts(1);
  const edge = await assemble({
    config: buildConfig({
      fileText: `[system]\ndataPath=${temp.path}\n[uplink]\nhubs=127.0.0.1:${port}\n` +
        "site=round-trip\nretryMinMs=20\nretryMaxMs=200\n",
      overrides: { serverPort: String(port), httpEnabled: "false" },
    }),
    logger: silentLogger,
  });
  cleanups.push(() => edge.close());
  const payloads = Array.from({ length: 10 }, (_, index) => `loop-${index}`);
  await produce(edge, "loop", payloads);
  await waitFor("the copies passed over", () => pumpOf(edge, "loop", 0)?.loopedMessages === 10);
  const log = edge.logs.get("loop", 0)!;
  await waitFor(
    "caught up",
    () => pumpOf(edge, "loop", 0)?.state === "caught-up" && pumpOf(edge, "loop", 0)?.lagBytes === 0,
  );
  // The ten messages and the ten copies that came back, and nothing more.
  const messages = messagesAt(edge, "loop", 0);
  expect(messages.map((message) => message.payload)).toEqual([...payloads, ...payloads]);
  expect(
    messages.slice(10).every((message) =>
      parseOriginAttribute(message.attribute!)?.origin.site === "round-trip"
    ),
  ).toBe(true);
  expect(log.endOffset).toBe(pumpOf(edge, "loop", 0)!.position);
});

test("an edge whose log lost what the hub has forwards new messages at the old offsets", async () => {
  await using temp = tempDir("metaq-uplink-lost-");
  const hub = await startHub(`${temp.path}/hub`);
  const first = await startEdge(`${temp.path}/edge`, `127.0.0.1:${hub.port}`, "");
  await produce(first, "orders", ["old-0", "old-1", "old-2"]);
  await waitFor("the old messages at the hub", () => messagesAt(hub, "orders", 0).length === 3);
  await waitFor(
    "their position saved",
    () => pumpOf(first, "orders", 0)?.savedPosition === first.logs.get("orders", 0)!.endOffset,
  );
  await first.close();
  // The partition's files are gone (a restored backup, a disk replaced); __uplink-0 is not.
  fs.rmSync(`${temp.path}/edge/orders-0`, { recursive: true, force: true });
  const again = await startEdge(`${temp.path}/edge`, `127.0.0.1:${hub.port}`, "");
  await produce(again, "orders", ["new-0", "new-1", "new-2"]);
  await waitFor("the new messages at the hub", () => messagesAt(hub, "orders", 0).length === 6, {
    timeoutMs: 10_000,
  });
  const atHub = messagesAt(hub, "orders", 0);
  expect(atHub.map((message) => message.payload)).toEqual([
    "old-0",
    "old-1",
    "old-2",
    "new-0",
    "new-1",
    "new-2",
  ]);
  // Same site, topic, partition and offsets as the old ones: told apart by where the hub looked.
  const offsets = atHub.map((message) => parseOriginAttribute(message.attribute!)!.origin.offset);
  expect(offsets.slice(3)).toEqual(offsets.slice(0, 3));
});

import { expect, test } from "bun:test";
import * as net from "node:net";
import { MetaqClient } from "../../lib/client/client.ts";
import { Producer } from "../../lib/client/producer.ts";
import { decodeRecords } from "../../lib/protocol/record.ts";
import { BrokerProcess, runMetaq } from "../support/harness.ts";
import { tempDir } from "../support/temp_dir.ts";

test("metaq serve answers HTTP on its own port: API, MetaQ's plugin, stream, metrics, dashboard", async () => {
  await using temp = tempDir();
  await using broker = await BrokerProcess.start({
    dataDir: temp.path,
    http: true,
    args: ["--partitions", "2"],
  });
  expect(broker.httpPort).toBeGreaterThan(0);
  expect(broker.stdout).toContain(`(http 127.0.0.1:${broker.httpPort})`);
  const base = broker.httpBase;

  // Produced over HTTP, read back over MetaQ's TCP protocol, byte for byte.
  const produced = await fetch(`${base}/v1/topics/web/messages`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ payload: "from http", partition: 0 }] }),
  });
  expect(produced.status).toBe(200);
  const [result] = (await produced.json()).results;
  const client = new MetaqClient({ brokers: [broker.address] });
  try {
    const reply = await client.get({
      topic: "web",
      group: "g",
      partition: 0,
      offset: 0,
      maxSize: 4096,
    });
    expect(reply.kind).toBe("records");
    const [record] = decodeRecords((reply as { bytes: Uint8Array }).bytes);
    expect([record.id.toString(), new TextDecoder().decode(record.data)]).toEqual([
      result.id,
      "from http",
    ]);

    // A live stream sees a message produced over TCP.
    const stream = await fetch(`${base}/v1/topics/web/stream?partition=1`);
    const reader = stream.body!.getReader();
    await reader.read(); // the opening comment: the stream is subscribed
    await new Producer(client).send("web", "from tcp", { partition: 1 });
    let text = "";
    for (let reads = 0; reads < 20 && !text.includes("from tcp"); reads++) {
      text += new TextDecoder().decode((await reader.read()).value);
    }
    expect(text).toContain('"payload":"from tcp"');

    // MetaQ's HTTP plugin paths.
    const put = await fetch(`${base}/put/0?topic=web&partition=0&flag=0&length=6`, {
      method: "POST",
      body: "plugin",
    });
    expect(put.status).toBe(200);
    expect(await put.text()).toMatch(/^\d+ 0 29$/);
    const get = await fetch(`${base}/get/0?topic=web&partition=0&group=g&offset=29&maxsize=100`);
    expect(new TextDecoder().decode(new Uint8Array(await get.arrayBuffer()).subarray(20))).toBe(
      "plugin",
    );

    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain("metaq_put_requests_total 3\n");
    expect(metrics).toContain('metaq_partition_end_offset{topic="web",partition="0"} 55\n');
    expect(metrics).toContain("metaq_http_streams 1\n");
    const page = await fetch(`${base}/`);
    expect(await page.text()).toContain("<title>metaq dashboard</title>");
    expect((await fetch(`${base}/readyz`)).status).toBe(200);

    // SIGTERM with the stream still open: the broker stops cleanly and promptly.
    const exit = await broker.kill("SIGTERM");
    expect(exit).toEqual({ code: 0, signal: null });
    expect(broker.stderr).toContain("Stopped cleanly");
    await reader.cancel().catch(() => {});
  } finally {
    client.close();
  }
});

test("an HTTP port in use is one clear error; --no-http serves no HTTP", async () => {
  await using temp = tempDir();
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
  const port = (blocker.address() as net.AddressInfo).port;
  try {
    const refused = await runMetaq(
      ["serve", "--port", "0", "--http-port", String(port), "--data", temp.path],
      { timeoutMs: 20_000 },
    );
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      `Cannot listen on 127.0.0.1:${port} for HTTP: the address is in use`,
    );
    expect(refused.stderr).not.toContain("    at ");
  } finally {
    blocker.close();
  }
  await using quiet = await BrokerProcess.start({ dataDir: temp.path });
  expect(quiet.httpPort).toBeNull();
});

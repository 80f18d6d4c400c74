/**
 * Delayed messages as clients send them, against a real broker in this process (real files,
 * real TCP and HTTP ports, the system clock): the TypeScript client (`putDelayed`, the
 * producer's `delayMs`/`deliverAt`, `cancelDelayed`), and HTTP produce with `delayMs` and
 * `deliverAt`, `GET /v1/delayed`, `DELETE /v1/delayed/:id`.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type App, assemble } from "../../lib/app/assemble.ts";
import { MetaqClient } from "../../lib/client/client.ts";
import { BrokerError } from "../../lib/client/errors.ts";
import { Producer } from "../../lib/client/producer.ts";
import { systemClock } from "../../lib/clock.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { silentLogger } from "../../lib/log.ts";
import { watchArrivals } from "../support/delayed.ts";
import { TX_CONFIG } from "../support/tx_broker.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

let temp: TempDir;
let running: App;
let client: MetaqClient;
let base: string;

beforeAll(async () => {
  temp = tempDir();
  running = await assemble({
    config: buildConfig({
      fileText: TX_CONFIG(temp.path),
      overrides: { serverPort: "0", httpEnabled: "true", dashboardHttpPort: "0" },
    }),
    logger: silentLogger,
  });
  client = new MetaqClient({ brokers: [`127.0.0.1:${running.port}`] });
  base = `http://127.0.0.1:${running.httpPort}`;
});

afterAll(async () => {
  client.close();
  await running.close();
  temp[Symbol.dispose]();
});

const bytes = (text: string) => new TextEncoder().encode(text);

test("the client's putDelayed and the producer's delayMs/deliverAt deliver at their time", async () => {
  const watch = watchArrivals(await running.logs.open("multi", 2), systemClock);
  const first = await client.putDelayed("multi", 2, { payload: bytes("a") }, { delayMs: 300 });
  expect(first.offset).toBe(-1);
  expect(first.partition).toBe(2);
  const producer = new Producer(client);
  const at = new Date(Date.now() + 500);
  const second = await producer.send("multi", bytes("b"), {
    partition: 2,
    deliverAt: at,
    attribute: "tag",
  });
  const third = await producer.send("multi", bytes("c"), { partition: 2, delayMs: 100 });
  await expect(producer.send("multi", bytes("d"), { delayMs: 1, deliverAt: 1 })).rejects
    .toThrow("not both");
  await waitFor("three messages", () => watch.arrivals.length === 3, { timeoutMs: 10_000 });
  watch.stop();
  const byPayload = new Map(watch.arrivals.map((a) => [a.payload, a]));
  expect([...byPayload.keys()].sort()).toEqual(["a", "b", "c"]);
  expect([byPayload.get("a")!.id, byPayload.get("b")!.id, byPayload.get("c")!.id]).toEqual([
    first.id,
    second.id,
    third.id,
  ]);
  expect(byPayload.get("b")!.scheduled?.scheduledAtMs).toBe(at.getTime());
  expect(byPayload.get("b")!.attribute).toBe("tag");
  const times = watch.arrivals.map((a) => a.scheduled!.scheduledAtMs);
  expect(times).toEqual([...times].sort((a, b) => a - b));
  for (const arrival of watch.arrivals) {
    expect(arrival.readableAtMs).toBeGreaterThanOrEqual(arrival.scheduled!.scheduledAtMs);
  }
});

test("the client cancels a pending message; a second cancel is a 404", async () => {
  const sent = await client.putDelayed("test", 0, { payload: bytes("x") }, { delayMs: 60_000 });
  expect((await client.delayedStatus()).pending).toBe(1);
  await client.cancelDelayed(sent.id);
  expect((await client.delayedStatus()).pending).toBe(0);
  const again = await client.cancelDelayed(sent.id).catch((error) => error);
  expect(again).toBeInstanceOf(BrokerError);
  expect((again as BrokerError).status).toBe(404);
});

test("HTTP produce takes delayMs and deliverAt; /v1/delayed shows and cancels", async () => {
  const watch = watchArrivals(await running.logs.open("test", 1), systemClock);
  const deliverAt = new Date(Date.now() + 400).toISOString();
  const response = await fetch(`${base}/v1/topics/test/messages`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      messages: [
        { payload: "soon", partition: 1, delayMs: 200 },
        { payload: "at", partition: 1, deliverAt },
        { payload: "later", partition: 1, delayMs: "10m" },
        { payload: "now", partition: 1 },
      ],
    }),
  });
  expect(response.status).toBe(200);
  const { results } = await response.json();
  expect(results.map((r: { offset: number }) => r.offset).slice(0, 3)).toEqual([-1, -1, -1]);
  expect(results[1].deliverAt).toBe(Date.parse(deliverAt));
  expect(results[3].offset).toBeGreaterThanOrEqual(0);
  expect(results[3].deliverAt).toBeUndefined();
  const raw = await fetch(`${base}/v1/topics/test/messages?partition=1&delayMs=150`, {
    method: "POST",
    body: "raw",
  });
  expect(raw.status).toBe(200);

  const status = await (await fetch(`${base}/v1/delayed`)).json();
  expect(status.pending).toBeGreaterThanOrEqual(3);
  const cancel = await fetch(`${base}/v1/delayed/${results[2].id}`, { method: "DELETE" });
  expect([cancel.status, (await cancel.json()).cancelled]).toEqual([200, results[2].id]);
  const again = await fetch(`${base}/v1/delayed/${results[2].id}`, { method: "DELETE" });
  expect(again.status).toBe(404);
  await waitFor("four messages", () => watch.arrivals.length === 4, { timeoutMs: 10_000 });
  watch.stop();
  expect(watch.arrivals[0].payload).toBe("now");
  const delayed = watch.arrivals.slice(1);
  expect(delayed.map((a) => a.payload).sort()).toEqual(["at", "raw", "soon"]);
  const times = delayed.map((a) => a.scheduled!.scheduledAtMs);
  expect(times).toEqual([...times].sort((a, b) => a - b));
  expect((await (await fetch(`${base}/v1/delayed`)).json()).pending).toBe(0);

  for (
    const bad of [
      { payload: "x", delayMs: "soon" },
      { payload: "x", delayMs: -5 },
      { payload: "x", deliverAt: "tomorrow" },
      { payload: "x", deliverAt: "2026-12-24T09:00:00" },
      { payload: "x", delayMs: 5, deliverAt: 5 },
    ]
  ) {
    const refused = await fetch(`${base}/v1/topics/test/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(bad),
    });
    expect([refused.status, JSON.stringify(bad)]).toEqual([400, JSON.stringify(bad)]);
  }
  const badId = await fetch(`${base}/v1/delayed/12ab`, { method: "DELETE" });
  expect(badId.status).toBe(400);
});

test("/metrics and the dashboard's snapshot carry the delayed-message figures", async () => {
  await client.putDelayed("test", 0, { payload: bytes("m") }, { delayMs: 3_600_000 });
  const metrics = await (await fetch(`${base}/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(metrics)?.[1]);
  expect(value("metaq_delayed_pending")).toBe(1);
  expect(value("metaq_delayed_writing")).toBe(1);
  expect(value("metaq_delayed_next_due_timestamp_seconds")).toBeGreaterThan(Date.now() / 1000);
  const delivered = value("metaq_delayed_delivered_total");
  expect(delivered).toBe(6); // three from the client, three over HTTP
  expect(value("metaq_delayed_lateness_seconds_count")).toBe(delivered);
  expect(metrics).toContain(`metaq_delayed_lateness_seconds_bucket{le="+Inf"} ${delivered}`);
  expect(metrics).toMatch(/^metaq_delayed_lateness_seconds_bucket\{le="0\.1"\} \d+$/m);
  const overview = await (await fetch(`${base}/v1/overview`)).json();
  expect(overview.delayed).toMatchObject({ pending: 1, writing: true, delivered });
});

test("HTTP /v1/schedules adds, lists, pauses and removes a schedule that publishes every second", async () => {
  const watch = watchArrivals(await running.logs.open("test", 1), systemClock);
  const post = (path: string, body?: unknown) =>
    fetch(`${base}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const added = await post("/v1/schedules", {
    name: "beat",
    cron: "* * * * * ?",
    topic: "test",
    partition: 1,
    payload: "Ym9vbQ==",
    encoding: "base64",
  });
  expect([added.status, await added.json()]).toEqual([200, { name: "beat" }]);
  const listed = await (await fetch(`${base}/v1/schedules`)).json();
  expect(listed).toMatchObject([{ name: "beat", cron: "* * * * * ?", paused: false }]);
  await waitFor("two beats", () => watch.arrivals.length >= 2, { timeoutMs: 10_000 });
  expect(watch.arrivals[0].payload).toBe("boom");
  expect(watch.arrivals[0].scheduled?.schedule).toBe("beat");
  expect((await post("/v1/schedules/beat/pause")).status).toBe(200);
  expect((await (await fetch(`${base}/v1/schedules`)).json())[0].paused).toBe(true);
  expect((await fetch(`${base}/v1/schedules/beat`, { method: "DELETE" })).status).toBe(200);
  expect((await fetch(`${base}/v1/schedules/beat`, { method: "DELETE" })).status).toBe(404);
  watch.stop();
  const bad = await post("/v1/schedules", { name: "x", cron: "nope", topic: "test", payload: "" });
  expect(bad.status).toBe(400);
  expect((await post("/v1/schedules", { cron: "* * * * * ?" })).status).toBe(400);
});

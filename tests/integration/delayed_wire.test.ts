/**
 * Delayed messages through a real broker in this process (real files, a real port): delays of
 * 0-60 s and absolute times, on a wall clock running 20 times faster than real time (the
 * broker takes its clock and timers as parameters), arrive at (never before) their time, in
 * delivery-time order, with their ids and `scheduledAt`; cancel; bad requests; a restart.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type App, assemble } from "../../lib/app/assemble.ts";
import type { Clock } from "../../lib/clock.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { silentLogger } from "../../lib/log.ts";
import type { Timers } from "../../lib/timers.ts";
import { type Arrival, delayLine, fastTime, watchArrivals } from "../support/delayed.ts";
import { ask, connect, TX_CONFIG } from "../support/tx_broker.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const FACTOR = 20;
let temp: TempDir;
let running: App;
let time: { clock: Clock; timers: Timers };

async function start(): Promise<App> {
  return await assemble({
    config: buildConfig({
      fileText: TX_CONFIG(temp.path),
      overrides: { serverPort: "0", httpEnabled: "false" },
    }),
    logger: silentLogger,
    clock: time.clock,
    timers: time.timers,
  });
}

beforeAll(async () => {
  temp = tempDir();
  time = fastTime(FACTOR);
  running = await start();
});

afterAll(async () => {
  await running.close();
  temp[Symbol.dispose]();
});

/** Sends each message; returns its id and delivery time from the reply. */
async function send(
  messages: readonly { body: string; when: string; partition?: number }[],
): Promise<Map<string, { id: bigint; deliverAtMs: number }>> {
  using socket = await connect(running);
  const sent = new Map<string, { id: bigint; deliverAtMs: number }>();
  let opaque = 1;
  for (const message of messages) {
    const reply = await ask(socket, delayLine({ ...message, opaque: opaque++ }));
    expect(reply.header).toStartWith("result 200 ");
    const [id, partition, offset, at] = reply.text.split(" ");
    expect([partition, offset]).toEqual([String(message.partition ?? 0), "-1"]);
    sent.set(message.body, { id: BigInt(id), deliverAtMs: Number(at) });
  }
  return sent;
}

/**
 * Each arrival is the message sent, readable at or after its time; those due after the last
 * was sent (`orderedAfterMs`) arrived in delivery-time order.
 */
function expectOnTimeInOrder(
  arrivals: readonly Arrival[],
  sent: Map<string, { id: bigint; deliverAtMs: number }>,
  orderedAfterMs = 0,
) {
  expect(arrivals.map((a) => a.payload).sort()).toEqual([...sent.keys()].sort());
  for (const arrival of arrivals) {
    const expected = sent.get(arrival.payload)!;
    expect(arrival.id).toBe(expected.id);
    expect(arrival.scheduled?.id).toBe(expected.id);
    expect(arrival.scheduled?.scheduledAtMs).toBe(expected.deliverAtMs);
    expect(arrival.readableAtMs).toBeGreaterThanOrEqual(expected.deliverAtMs);
  }
  const times = arrivals.map((a) => a.scheduled!.scheduledAtMs).filter((at) => at > orderedAfterMs);
  expect(times).toEqual([...times].sort((a, b) => a - b));
}

describe("delayed messages on the wire", () => {
  test("delays of 0-60 s and absolute times arrive at their time, none early, in time order", async () => {
    const log = await running.logs.open("test", 1);
    const watch = watchArrivals(log, time.clock);
    const now = time.clock.wallMs();
    const messages = [{ body: "past", when: String(now - 5000), partition: 1 }];
    // Out of order on purpose: relative and absolute, one in the past (due at once).
    for (let i = 0; i < 30; i++) {
      const delayMs = ((i * 7919) % 61) * 1000 + (i % 3) * 37;
      const when = i % 2 === 0 ? `+${delayMs}` : String(now + delayMs);
      messages.push({ body: `m${i}`, when, partition: 1 });
    }
    const sent = await send(messages);
    const sentAtMs = time.clock.wallMs();
    await waitFor("every delayed message", () => watch.arrivals.length >= sent.size, {
      timeoutMs: (62_000 / FACTOR) + 10_000,
    });
    watch.stop();
    expectOnTimeInOrder(watch.arrivals, sent, sentAtMs);
    expect(watch.arrivals.filter((a) => a.scheduled!.scheduledAtMs > sentAtMs).length)
      .toBeGreaterThan(25);
    const status = running.delayed.status();
    expect(status.pending).toBe(0);
    expect(status.lateness.count).toBeGreaterThanOrEqual(sent.size);
  });

  test("a producer's attribute is kept after the scheduled one", async () => {
    const log = await running.logs.open("test", 0);
    const watch = watchArrivals(log, time.clock);
    using socket = await connect(running);
    const attribute = new TextEncoder().encode("gold");
    const payload = new TextEncoder().encode("with-attr");
    const body = new Uint8Array(4 + attribute.length + payload.length);
    new DataView(body.buffer).setInt32(0, attribute.length);
    body.set(attribute, 4);
    body.set(payload, 4 + attribute.length);
    const head = new TextEncoder().encode(`delay test 0 ${body.length} 1 -1 +100 5\r\n`);
    const reply = await ask(socket, Buffer.concat([head, body]));
    expect(reply.header).toStartWith("result 200 ");
    await waitFor("the message", () => watch.arrivals.length === 1);
    watch.stop();
    expect(watch.arrivals[0].payload).toBe("with-attr");
    expect(watch.arrivals[0].attribute).toBe("gold");
  });

  test("a pending message is cancelled by id, once; a delivered one cannot be", async () => {
    const log = await running.logs.open("test", 0);
    const watch = watchArrivals(log, time.clock);
    const sent = await send([
      { body: "cancel-me", when: "+60000" },
      { body: "keep-me", when: "+61000" },
      { body: "early", when: "+0" },
    ]);
    using socket = await connect(running);
    await waitFor("the first message", () => watch.arrivals.length === 1);
    const early = await ask(socket, `delayed cancel ${sent.get("early")!.id} 1\r\n`);
    // Delivered: 404, or 409 while its delivery is still being recorded.
    expect(early.header).toMatch(/^result (404|409) /);
    const cancel = await ask(socket, `delayed cancel ${sent.get("cancel-me")!.id} 2\r\n`);
    expect([cancel.header.split(" ")[1], cancel.text]).toEqual([
      "200",
      String(sent.get("cancel-me")!.id),
    ]);
    const again = await ask(socket, `delayed cancel ${sent.get("cancel-me")!.id} 3\r\n`);
    expect(again.header).toStartWith("result 404 ");
    await waitFor("the kept message", () => watch.arrivals.length === 2, { timeoutMs: 10_000 });
    watch.stop();
    expect(watch.arrivals.map((a) => a.payload)).toEqual(["early", "keep-me"]);
    // The last delivery is recorded (its `fired`) just after it becomes readable.
    let status: Record<string, unknown> = {};
    await waitFor("the last delivery recorded", async () => {
      status = JSON.parse((await ask(socket, "delayed status - 4\r\n")).text);
      return status.firing === 0;
    });
    expect(status).toMatchObject({ writing: true, pending: 0, firing: 0, nextDueMs: null });
  });

  test("bad requests get clear errors and change nothing", async () => {
    using socket = await connect(running);
    const before = running.delayed.status().accepted;
    const cases: [string, string][] = [
      [delayLine({ topic: "nope", body: "x", when: "+10", opaque: 1 }), "result 500 "],
      [delayLine({ topic: "__tx", body: "x", when: "+10", opaque: 2 }), "result 500 "],
      [delayLine({ partition: 9, body: "x", when: "+10", opaque: 3 }), "result 500 "],
      [delayLine({ body: "x", when: "soon", opaque: 4 }), "result 400 "],
      [delayLine({ body: "x", when: `+${401 * 24 * 3600 * 1000}`, opaque: 5 }), "result 400 "],
      [delayLine({ body: "x".repeat(1001), when: "+10", opaque: 6 }), "result 400 "],
      ["delay test 0 1 0 12345 +10 7\r\nx", "result 500 "],
      ["delayed cancel 12x 8\r\n", "result 400 "],
      ["delayed purge - 9\r\n", "result 400 "],
    ];
    for (const [request, expected] of cases) {
      const reply = await ask(socket, request);
      expect(`${reply.header} ${reply.text}`).toStartWith(expected);
    }
    expect(running.delayed.status().accepted).toBe(before);
  });

  test("pending messages survive a restart and arrive once after it", async () => {
    const sent = await send([{ body: "after-restart", when: "+4000" }]);
    await running.close();
    running = await start();
    expect(running.delayed.state.pendingCount).toBe(1);
    const log = await running.logs.open("test", 0);
    const before = log.endOffset;
    const watch = watchArrivals(log, time.clock);
    await waitFor("the message", () => watch.arrivals.length === 1, { timeoutMs: 10_000 });
    watch.stop();
    expectOnTimeInOrder(watch.arrivals, sent);
    expect(log.endOffset).toBeGreaterThan(before);
  });
});

describe("cron schedules on the wire", () => {
  const spec = (cron: string, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ cron, topic: "multi", partition: 3, payload: btoa("tick"), ...extra });
  const cronLine = (action: string, name: string, body = "", opaque = 1) =>
    `cron ${action} ${name} ${Buffer.byteLength(body)} ${opaque}\r\n${body}`;

  test("a schedule publishes each occurrence once, on time; pause, resume, rm; bad requests", async () => {
    const log = await running.logs.open("multi", 3);
    const watch = watchArrivals(log, time.clock);
    using socket = await connect(running);
    const added = await ask(socket, cronLine("add", "every5s", spec("*/5 * * * * ?")));
    expect([added.header.split(" ")[1], added.text]).toEqual(["200", "every5s"]);
    await waitFor("three occurrences", () => watch.arrivals.length >= 3, { timeoutMs: 10_000 });
    const listed = JSON.parse((await ask(socket, cronLine("list", "-"))).text);
    expect(listed).toMatchObject([{
      name: "every5s",
      topic: "multi",
      partition: 3,
      paused: false,
    }]);
    expect(listed[0].nextAtMs % 5000).toBe(0);

    expect((await ask(socket, cronLine("pause", "every5s"))).header).toStartWith("result 200 ");
    const pausedAt = time.clock.wallMs();
    const countAtPause = watch.arrivals.length;
    // Four periods paused: at most the one occurrence already planned arrives meanwhile.
    await waitFor("four periods", () => time.clock.wallMs() > pausedAt + 20_000);
    expect(watch.arrivals.length - countAtPause).toBeLessThanOrEqual(1);
    expect(JSON.parse((await ask(socket, cronLine("list", "-"))).text)[0].paused).toBe(true);
    const resumedAt = time.clock.wallMs();
    expect((await ask(socket, cronLine("resume", "every5s"))).header).toStartWith("result 200 ");
    const countAtResume = watch.arrivals.length;
    await waitFor("two more", () => watch.arrivals.length >= countAtResume + 2, {
      timeoutMs: 10_000,
    });
    expect((await ask(socket, cronLine("rm", "every5s"))).header).toStartWith("result 200 ");
    watch.stop();

    const times = watch.arrivals.map((a) => a.scheduled!.scheduledAtMs);
    expect(times.every((at) => at % 5000 === 0)).toBe(true);
    expect(new Set(times).size).toBe(times.length); // each occurrence once
    expect(times).toEqual([...times].sort((a, b) => a - b));
    // Nothing missed while paused is published after the resume.
    expect(times.filter((at) => at > pausedAt + 5000 && at < resumedAt)).toEqual([]);
    for (const arrival of watch.arrivals) {
      expect(arrival.scheduled!.schedule).toBe("every5s");
      expect(arrival.payload).toBe("tick");
      expect(arrival.readableAtMs).toBeGreaterThanOrEqual(arrival.scheduled!.scheduledAtMs);
    }
    expect(JSON.parse((await ask(socket, cronLine("list", "-"))).text)).toEqual([]);

    const refusals: [string, string][] = [
      [cronLine("add", "bad", spec("* * *")), "result 400 "],
      [cronLine("add", "bad", spec("0 * * * * ?", { topic: "nope" })), "result 400 "],
      [cronLine("add", "bad", spec("0 * * * * ?", { partition: 9 })), "result 400 "],
      [cronLine("add", "bad", "{not json"), "result 400 "],
      [cronLine("add", "-bad", spec("0 * * * * ?")), "result 400 "],
      [cronLine("pause", "ghost"), "result 404 "],
      [cronLine("rm", "ghost"), "result 404 "],
      [cronLine("frobnicate", "x"), "result 400 "],
    ];
    for (const [request, expected] of refusals) {
      expect(`${(await ask(socket, request)).header}`).toStartWith(expected);
    }
    await ask(socket, cronLine("add", "twice", spec("0 0 * * * ?")));
    expect((await ask(socket, cronLine("add", "twice", spec("0 0 * * * ?")))).header)
      .toStartWith("result 409 ");
    expect((await ask(socket, cronLine("rm", "twice"))).header).toStartWith("result 200 ");
  });

  test("a schedule goes on after a restart without publishing an occurrence twice", async () => {
    const log = await running.logs.open("multi", 3);
    let watch = watchArrivals(log, time.clock);
    {
      using socket = await connect(running);
      await ask(socket, cronLine("add", "survivor", spec("*/5 * * * * ?")));
    }
    await waitFor("two occurrences", () => watch.arrivals.length >= 2, { timeoutMs: 10_000 });
    const before = watch.arrivals.map((a) => a.scheduled!.scheduledAtMs);
    watch.stop();
    await running.close();
    running = await start();
    const reopened = await running.logs.open("multi", 3);
    watch = watchArrivals(reopened, time.clock);
    await waitFor("two more", () => watch.arrivals.length >= 2, { timeoutMs: 10_000 });
    watch.stop();
    const after = watch.arrivals.map((a) => a.scheduled!.scheduledAtMs);
    expect(after[0]).toBeGreaterThan(before.at(-1)!);
    expect(new Set([...before, ...after]).size).toBe(before.length + after.length);
    using socket = await connect(running);
    await ask(socket, cronLine("rm", "survivor"));
  });
});

describe("__delay-0 compaction", () => {
  test("an old pending message is moved forward so the log can be dropped past it; it is still delivered once", async () => {
    using dir = tempDir();
    const open = () =>
      assemble({
        config: buildConfig({
          fileText: TX_CONFIG(dir.path, "metaSegmentSize=4096"),
          overrides: { serverPort: "0", httpEnabled: "false" },
        }),
        logger: silentLogger,
        clock: time.clock,
        timers: time.timers,
      });
    let broker = await open();
    try {
      const target = await broker.logs.open("test", 1);
      const watch = watchArrivals(target, time.clock);
      const delayLog = await broker.logs.open("__delay", 0);
      using socket = await connect(broker);
      const first = await ask(
        socket,
        delayLine({ body: "long", when: "+60000", partition: 1, opaque: 1 }),
      );
      const longId = BigInt(first.text.split(" ")[0]);
      const index = broker.delayed.state.index;
      const originalOffset = index.offsetOf(index.find(longId));
      const body = "x".repeat(100);
      for (let i = 0; i < 200; i++) {
        const reply = await ask(
          socket,
          delayLine({ body, when: `+${i * 10}`, partition: 1, opaque: 2 + i }),
        );
        expect(reply.header).toStartWith("result 200 ");
      }
      await waitFor("the short ones", () => watch.arrivals.length >= 200, { timeoutMs: 10_000 });
      await waitFor(
        "the log dropped past the long one",
        () => delayLog.startOffset > originalOffset,
        {
          timeoutMs: 10_000,
        },
      );
      expect(broker.delayed.state.pendingCount).toBe(1);
      expect(index.offsetOf(index.find(longId))).toBeGreaterThan(originalOffset);
      await waitFor("the long one", () => watch.arrivals.length >= 201, { timeoutMs: 10_000 });
      watch.stop();
      const long = watch.arrivals.filter((a) => a.payload === "long");
      expect(long.map((a) => a.id)).toEqual([longId]);
      expect(long[0].readableAtMs).toBeGreaterThanOrEqual(long[0].scheduled!.scheduledAtMs);
      await waitFor("nothing pending", () => broker.delayed.status().firing === 0);
      const end = target.endOffset;
      await broker.close();
      broker = await open();
      expect(broker.delayed.state.pendingCount).toBe(0);
      expect(broker.delayed.state.firings.size).toBe(0);
      await new Promise((resolve) => setTimeout(resolve, 200)); // ten upkeep rounds at 20x
      expect((await broker.logs.open("test", 1)).endOffset).toBe(end);
    } finally {
      await broker.close();
    }
  });
});

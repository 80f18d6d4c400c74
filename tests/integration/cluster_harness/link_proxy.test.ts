import { expect, test } from "bun:test";
import * as net from "node:net";
import { blackhole, cut, delay, LinkProxy, pass, throttle } from "../../cluster/link_proxy.ts";
import { Random } from "../../cluster/random.ts";

const WAIT_MS_MAX = 10_000;

/** A server that echoes every byte back and records what it received. */
async function echoServer(): Promise<
  { port: number; received: () => number; close: () => Promise<void> }
> {
  let received = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("data", (chunk) => {
      received += chunk.length;
      socket.write(chunk);
    });
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    received: () => received,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

interface Client {
  readonly socket: net.Socket;
  readonly events: string[];
  bytes(): Uint8Array;
  /** Resolves once `count` bytes came back (rejects after WAIT_MS_MAX). */
  waitFor(count: number): Promise<void>;
}

function connect(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    const events: string[] = [];
    let total = 0;
    let waiters: (() => void)[] = [];
    const socket = net.createConnection({ host: "127.0.0.1", port });
    socket.on("data", (chunk: Uint8Array) => {
      chunks.push(chunk);
      total += chunk.length;
      for (const wake of waiters) wake();
    });
    socket.on("error", (error) => events.push(`error ${(error as { code?: string }).code}`));
    socket.on("close", () => {
      events.push("close");
      for (const wake of waiters) wake();
    });
    socket.once("connect", () =>
      resolve({
        socket,
        events,
        bytes: () => Buffer.concat(chunks),
        waitFor: (count) =>
          new Promise<void>((done, fail) => {
            const deadline = setTimeout(
              () => fail(new Error(`got ${total} of ${count} bytes`)),
              WAIT_MS_MAX,
            );
            const check = () => {
              if (total < count && !events.includes("close")) return;
              clearTimeout(deadline);
              waiters = waiters.filter((wake) => wake !== check);
              if (total >= count) done();
              else fail(new Error(`closed after ${total} of ${count} bytes`));
            };
            waiters.push(check);
            check();
          }),
      }));
    socket.once("error", reject);
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function setup(): Promise<
  { proxy: LinkProxy; echo: Awaited<ReturnType<typeof echoServer>> } & AsyncDisposable
> {
  const echo = await echoServer();
  const proxy = await LinkProxy.listen({
    name: "test",
    port: 0,
    targetPort: echo.port,
    random: new Random(7),
  });
  return {
    proxy,
    echo,
    [Symbol.asyncDispose]: async () => {
      await proxy.close();
      await echo.close();
    },
  };
}

test("pass forwards a large stream intact in both directions", async () => {
  await using parts = await setup();
  const client = await connect(parts.proxy.port);
  const payload = new Random(1).bytes(2 * 1024 * 1024);
  client.socket.write(payload);
  await client.waitFor(payload.length);
  expect(Buffer.compare(client.bytes(), payload)).toBe(0);
  expect(parts.proxy.stats()).toMatchObject({
    accepted: 1,
    forwardBytes: payload.length,
    backwardBytes: payload.length,
  });
  client.socket.destroy();
});

test("delay holds every chunk at least the delay and keeps the byte order under jitter", async () => {
  await using parts = await setup();
  parts.proxy.setMode("forward", delay(40, 30));
  const client = await connect(parts.proxy.port);
  const lines = Array.from({ length: 200 }, (_, i) => `line ${i}\n`).join("");
  const started = performance.now();
  for (let i = 0; i < 200; i++) client.socket.write(`line ${i}\n`);
  await client.waitFor(lines.length);
  expect(performance.now() - started).toBeGreaterThanOrEqual(10); // never early: 40 - 30 ms
  expect(new TextDecoder().decode(client.bytes())).toBe(lines);
  client.socket.destroy();
});

test("blackhole keeps the connection open, forwards nothing, and delivers in order once healed", async () => {
  await using parts = await setup();
  const client = await connect(parts.proxy.port);
  parts.proxy.setMode("both", blackhole());
  client.socket.write("before heal;");
  await sleep(150);
  expect(parts.echo.received()).toBe(0);
  expect(client.bytes().length).toBe(0);
  expect(client.events).toEqual([]);
  client.socket.write("still held");
  const late = await connect(parts.proxy.port); // new connections are accepted and held too
  late.socket.write("late");
  await sleep(50);
  expect(parts.echo.received()).toBe(0);
  parts.proxy.setMode("both", pass());
  await client.waitFor("before heal;still held".length);
  await late.waitFor(4);
  expect(new TextDecoder().decode(client.bytes())).toBe("before heal;still held");
  expect(client.events).toEqual([]);
  client.socket.destroy();
  late.socket.destroy();
});

test("a blackholed stream larger than the proxy's queue is paused, then delivered intact", async () => {
  await using parts = await setup();
  const client = await connect(parts.proxy.port);
  parts.proxy.setMode("forward", blackhole());
  const payload = new Random(4).bytes(6 * 1024 * 1024);
  client.socket.write(payload);
  await sleep(200);
  expect(parts.echo.received()).toBe(0);
  parts.proxy.setMode("forward", pass());
  await client.waitFor(payload.length);
  expect(Buffer.compare(client.bytes(), payload)).toBe(0);
  client.socket.destroy();
});

test("a one-way blackhole lets requests reach the server while replies are held", async () => {
  await using parts = await setup();
  const client = await connect(parts.proxy.port);
  parts.proxy.setMode("backward", blackhole());
  client.socket.write("ping");
  const deadline = performance.now() + WAIT_MS_MAX;
  while (parts.echo.received() < 4 && performance.now() < deadline) await sleep(10);
  expect(parts.echo.received()).toBe(4);
  await sleep(100);
  expect(client.bytes().length).toBe(0);
  parts.proxy.setMode("backward", pass());
  await client.waitFor(4);
  client.socket.destroy();
});

test("cut resets open connections and refuses new ones until the link passes again", async () => {
  await using parts = await setup();
  const client = await connect(parts.proxy.port);
  client.socket.write("x");
  await client.waitFor(1);
  parts.proxy.setMode("forward", cut());
  await client.waitFor(2).catch(() => {});
  expect(client.events).toContain("close");
  const refused = await connect(parts.proxy.port);
  await refused.waitFor(1).catch(() => {});
  expect(refused.events.some((event) => event.startsWith("error") || event === "close")).toBe(true);
  expect(parts.proxy.stats().refused).toBe(1);
  parts.proxy.setMode("both", pass());
  const again = await connect(parts.proxy.port);
  again.socket.write("back");
  await again.waitFor(4);
  expect(new TextDecoder().decode(again.bytes())).toBe("back");
  again.socket.destroy();
});

test("throttle delivers everything, no faster than its rate allows beyond one burst", async () => {
  await using parts = await setup();
  parts.proxy.setMode("forward", throttle(200 * 1024));
  const client = await connect(parts.proxy.port);
  const payload = new Random(2).bytes(60 * 1024);
  const started = performance.now();
  client.socket.write(payload);
  await client.waitFor(payload.length);
  // 60 KiB at 200 KiB/s with a 10 KiB burst takes at least 250 ms: a bound below, never above.
  expect(performance.now() - started).toBeGreaterThanOrEqual(200);
  expect(Buffer.compare(client.bytes(), payload)).toBe(0);
  client.socket.destroy();
});

test("a target that refuses connections resets the proxied client", async () => {
  const echo = await echoServer();
  const port = echo.port;
  await echo.close();
  const proxy = await LinkProxy.listen({
    name: "dead",
    port: 0,
    targetPort: port,
    random: new Random(3),
  });
  try {
    const client = await connect(proxy.port);
    await client.waitFor(1).catch(() => {});
    expect(client.events).toContain("close");
  } finally {
    await proxy.close();
  }
});

test("modes are validated", () => {
  expect(() => delay(10, 20)).toThrow(RangeError);
  expect(() => throttle(0)).toThrow(RangeError);
});

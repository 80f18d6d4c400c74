/**
 * The configurable limits through the compiled binary, each at its maximum and one past it:
 * connections in total and per IP, command line length, message size, topics and partitions
 * per broker, the idle timeout and the half-sent-frame (slowloris) timeout.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { BrokerProcess, runMetaq } from "../support/harness.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";

async function startWith(dir: string, system: string): Promise<BrokerProcess> {
  const config = path.join(dir, "server.ini");
  fs.writeFileSync(config, `[system]\n${system}\n[topic=*]\n`);
  return await BrokerProcess.start({ dataDir: path.join(dir, "data"), args: ["--config", config] });
}

/** Whether a fresh connection gets an answer to `version` (false: it was refused). */
async function answers(socket: RawSocket, opaque: number): Promise<boolean> {
  socket.write(`version ${opaque}\r\n`);
  const reply = await socket.read(6, 3000);
  return reply.toString() === "result";
}

test("maxConnections and maxConnectionsPerIp admit the maximum and refuse one more", async () => {
  await using temp = tempDir("metaq-limits-conn-");
  await using broker = await startWith(temp.path, "maxConnections=4\nmaxConnectionsPerIp=3");
  const sockets: RawSocket[] = [];
  try {
    for (let i = 0; i < 3; i++) sockets.push(await RawSocket.connect(broker.port));
    for (const [i, socket] of sockets.entries()) expect(await answers(socket, i)).toBe(true);
    // A fourth from the same address passes maxConnections but not maxConnectionsPerIp.
    const fourth = await RawSocket.connect(broker.port);
    sockets.push(fourth);
    expect(await fourth.waitClosed()).toBe(true);
    // From another loopback address it is the fourth connection overall: admitted.
    const other = await rawFrom(broker.port, "127.0.0.2");
    sockets.push(other);
    expect(await answers(other, 9)).toBe(true);
    // A fifth overall is refused whatever its address.
    const fifth = await rawFrom(broker.port, "127.0.0.3");
    sockets.push(fifth);
    expect(await fifth.waitClosed()).toBe(true);
    // Room again once one closes.
    sockets[0].socket.destroy();
    let again: RawSocket | undefined;
    for (let attempt = 0; attempt < 50 && !again; attempt++) {
      const candidate = await RawSocket.connect(broker.port);
      sockets.push(candidate);
      if (await answers(candidate, 20 + attempt)) again = candidate;
    }
    expect(again).toBeDefined();
  } finally {
    for (const socket of sockets) socket.socket.destroy();
  }
  const stats = await runMetaq(["stats", "security", "--broker", broker.address]);
  expect(stats.stdout).toMatch(/connections_refused [2-9]/);
});

test("maxCommandLineBytes reads a line of the maximum length and closes on one byte more", async () => {
  await using temp = tempDir("metaq-limits-line-");
  await using broker = await startWith(temp.path, "maxCommandLineBytes=600\nmaxMessageSize=1000");
  const line = (bytes: number) => `stats ${"x".repeat(bytes - 10)} 1\r\n`;
  {
    using socket = await RawSocket.connect(broker.port);
    socket.write(line(600));
    expect((await socket.readFrame()).header).toMatch(/^result 200 \d+ 1$/);
    socket.write(line(601));
    expect(await socket.waitClosed()).toBe(true);
  }
  // maxMessageSize: the maximum is stored, one byte more is refused with a reply.
  using socket = await RawSocket.connect(broker.port);
  socket.write(`put t 0 1000 0 2\r\n${"a".repeat(1000)}`);
  expect((await socket.readFrame()).header).toMatch(/^result 200 \d+ 2$/);
  socket.write(`put t 0 1001 0 3\r\n${"a".repeat(1001)}`);
  const refused = await socket.readFrame();
  expect(refused.header).toMatch(/^result 400 \d+ 3$/);
  expect(refused.body.toString()).toContain("exceeds maxMessageSize 1000");
  expect(socket.closed).toBe(false);
});

test("maxTopics and maxPartitions let the broker create the maximum and refuse one more", async () => {
  await using temp = tempDir("metaq-limits-topics-");
  await using broker = await startWith(temp.path, "numPartitions=4\nmaxTopics=2\nmaxPartitions=5");
  using socket = await RawSocket.connect(broker.port);
  const putTo = async (topic: string, partition: number, opaque: number) => {
    socket.write(`put ${topic} ${partition} 1 0 ${opaque}\r\nx`);
    return await socket.readFrame();
  };
  for (let partition = 0; partition < 4; partition++) {
    expect((await putTo("a", partition, partition)).header).toMatch(/^result 200 /);
  }
  expect((await putTo("b", 0, 10)).header).toMatch(/^result 200 /); // 2 topics, 5 partitions
  const partitions = await putTo("b", 1, 11);
  expect(partitions.header).toMatch(/^result 500 /);
  expect(partitions.body.toString()).toContain("maxPartitions is 5");
  const topics = await putTo("c", 0, 12);
  expect(topics.body.toString()).toContain("maxPartitions is 5");
  expect((await putTo("a", 3, 13)).header).toMatch(/^result 200 /); // existing ones still work
  expect(fs.existsSync(path.join(temp.path, "data", "b-1"))).toBe(false);
});

test("maxTopics refuses the topic past the maximum", async () => {
  await using temp = tempDir("metaq-limits-topics2-");
  await using broker = await startWith(temp.path, "maxTopics=2");
  using socket = await RawSocket.connect(broker.port);
  const replies: string[] = [];
  for (const [opaque, topic] of ["a", "b", "c"].entries()) {
    socket.write(`put ${topic} 0 1 0 ${opaque}\r\nx`);
    const reply = await socket.readFrame();
    replies.push(
      `${reply.header.split(" ")[1]} ${reply.body.toString().includes("maxTopics is 2")}`,
    );
  }
  expect(replies).toEqual(["200 false", "200 false", "500 true"]);
});

test("idleTimeoutMs closes a silent connection and keeps a busy one", async () => {
  await using temp = tempDir("metaq-limits-idle-");
  await using broker = await startWith(temp.path, "idleTimeoutMs=1500");
  using silent = await RawSocket.connect(broker.port);
  using busy = await RawSocket.connect(broker.port);
  let opaque = 0;
  const deadline = Date.now() + 20_000;
  while (!silent.closed && Date.now() < deadline) {
    busy.write(`version ${opaque}\r\n`);
    expect((await busy.readFrame()).header).toMatch(new RegExp(` ${opaque}$`));
    opaque += 1;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  expect(silent.closed).toBe(true);
  expect(busy.closed).toBe(false);
});

test("frameTimeoutMs closes a connection that sends a frame too slowly, not a prompt one", async () => {
  await using temp = tempDir("metaq-limits-frame-");
  await using broker = await startWith(temp.path, "frameTimeoutMs=1000");
  // A frame finished within the time is served, even sent in pieces.
  using prompt = await RawSocket.connect(broker.port);
  for (const piece of ["put t 0 5 0 ", "907060870 1\r\nhe", "llo"]) {
    prompt.write(piece);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  expect((await prompt.readFrame()).header).toMatch(/^result 200 \d+ 1$/);
  // A partial line that never ends, and a body dripped one byte at a time, are cut off.
  using stalled = await RawSocket.connect(broker.port);
  stalled.write("put t 0 5 0 9070");
  using dripping = await RawSocket.connect(broker.port);
  dripping.write("put t 0 100 0 2\r\n");
  for (let sent = 0; sent < 100 && !dripping.closed; sent++) {
    dripping.write("x");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  expect(dripping.closed).toBe(true);
  expect(await stalled.waitClosed(5000)).toBe(true);
  expect(prompt.closed).toBe(false);
  const stats = await runMetaq(["stats", "security", "--broker", broker.address]);
  expect(stats.stdout).toMatch(/connections_timed_out [2-9]/);
});

/** A raw connection from `localAddress` (another loopback address). */
function rawFrom(port: number, localAddress: string): Promise<RawSocket> {
  return RawSocket.connectFrom(port, localAddress);
}

/** Resident memory of a process in bytes (Linux /proc). */
function residentBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

test("a client that sends many big gets and never reads cannot make the broker buffer them", async () => {
  await using temp = tempDir("metaq-limits-buffer-");
  await using broker = await startWith(
    temp.path,
    `maxConnectionBufferBytes=${1024 * 1024}\nmaxPendingRequests=64`,
  );
  {
    using writer = await RawSocket.connect(broker.port);
    const body = "b".repeat(1000);
    for (let i = 0; i < 300; i++) writer.write(`put big 0 1000 0 ${i}\r\n${body}`);
    for (let i = 0; i < 300; i++) expect((await writer.readFrame()).header).toMatch(/^result 200/);
  }
  const pid = broker.child!.pid!;
  const before = residentBytes(pid);
  // 2000 gets of ~300 KB each: 600 MB of replies if the broker buffered them all.
  const socket = net.createConnection({ port: broker.port, host: "127.0.0.1" });
  await new Promise((resolve) => socket.once("connect", resolve));
  socket.pause();
  const requests = 2000;
  let lines = "";
  for (let i = 0; i < requests; i++) lines += `get big g 0 0 1048576 ${i}\r\n`;
  socket.write(lines);
  let peak = before;
  for (let sample = 0; sample < 20; sample++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    peak = Math.max(peak, residentBytes(pid));
  }
  expect(peak - before).toBeLessThan(150 * 1024 * 1024);
  // Every reply still arrives once the client reads.
  let received = 0;
  socket.on("data", (chunk: Uint8Array) => (received += chunk.length));
  socket.resume();
  const deadline = Date.now() + 60_000;
  while (received < requests * 300_000 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  expect(received).toBeGreaterThanOrEqual(requests * 300_000);
  socket.destroy();
});

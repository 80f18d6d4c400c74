/**
 * @module A `get` of a message larger than one pooled buffer (1 MiB) is written piece by piece as
 * the socket takes it (lib/broker/frame_pool.ts, `Connection.#pump`), never read whole into one
 * array. Through the compiled binary: every answer comes back byte for byte and in the order of
 * its request, to a client that reads slowly (so pieces wait in the socket while later ones are
 * read into reused buffers), a `quit` right behind a large `get` ends the connection only once
 * the whole frame was written, and the CLI gets such a message whole over TLS.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { metaqChecksum } from "../../lib/crc32.ts";
import { decodeRecords, RECORD_HEADER_BYTES } from "../../lib/protocol/record.ts";
import { BrokerProcess, runMetaq } from "../support/harness.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { splitReplyFrames } from "../support/reply_frames.ts";
import { tempDir } from "../support/temp_dir.ts";

const MESSAGE_MAX = 8 * 1024 * 1024;

/** Bytes that differ at every position and between messages. */
function payload(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let index = 0; index < size; index++) {
    bytes[index] = (index * 7 + seed * 13 + (index >> 12)) & 0xff;
  }
  return bytes;
}

async function startBroker(dir: string, args: string[] = []): Promise<BrokerProcess> {
  const config = path.join(dir, "server.ini");
  fs.writeFileSync(
    config,
    `[system]\nmaxMessageSize=${MESSAGE_MAX}\nmaxTransferSize=${MESSAGE_MAX + 1024}\n`,
  );
  return await BrokerProcess.start({
    dataDir: path.join(dir, "data"),
    args: ["--config", config, ...args],
  });
}

/** Puts each payload to `topic` partition 0; returns each record's offset. */
async function putAll(port: number, topic: string, payloads: Uint8Array[]): Promise<number[]> {
  using socket = await RawSocket.connect(port);
  const offsets: number[] = [];
  for (const [index, body] of payloads.entries()) {
    socket.write(`put ${topic} 0 ${body.length} 0 ${metaqChecksum(body)} ${index}\r\n`);
    socket.write(body);
    const reply = await socket.readFrame(30_000);
    expect(reply.header).toStartWith("result 200 ");
    offsets.push(Number(reply.body.toString().split(" ")[2]));
  }
  return offsets;
}

test(
  "large gets answer whole and in order to a slow reader, with the replies around them",
  async () => {
    await using temp = tempDir("metaq-get-large-");
    await using broker = await startBroker(temp.path);
    const payloads = [
      payload(3 * 1024 * 1024 + 17, 1),
      payload(MESSAGE_MAX, 2),
      payload(100, 3),
      payload(1024 * 1024 + 5, 4),
    ];
    const offsets = await putAll(broker.port, "large", payloads);
    const end = offsets[3] + RECORD_HEADER_BYTES + payloads[3].length;

    const socket = net.connect(broker.port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    // Every request at once, each asking for exactly its record (the small one for more). The
    // 8 MiB message five times over: ~56 MiB of answers, more than the kernel's socket buffers
    // hold here (up to ~36 MiB), so pieces wait in the broker's socket while it reads the next.
    const order = [0, -1, 1, 1, 1, 1, 1, 2, 3];
    let requests = "";
    for (const [position, index] of order.entries()) {
      if (index < 0) {
        requests += `version ${position}\r\n`;
        continue;
      }
      const want = index === 2 ? 1024 * 1024 : RECORD_HEADER_BYTES + payloads[index].length;
      requests += `get large g 0 ${offsets[index]} ${want} ${position}\r\n`;
    }
    requests += `get large g 0 ${end} 1048576 30\r\n`;
    socket.write(requests);

    // A slow reader: at most ~64 KiB per 2 ms (~32 MB/s), so once the kernel's buffers are full
    // the broker's socket stays full. Bounded by bytes and by time.
    const expected = order.reduce(
      (sum, index) => sum + (index < 0 ? 0 : payloads[index].length + RECORD_HEADER_BYTES),
      0,
    );
    const chunks: Buffer[] = [];
    let received = 0;
    const deadline = Date.now() + 60_000;
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      socket.pause();
      setTimeout(() => socket.resume(), Math.ceil(chunk.length / (64 * 1024)) * 2);
    });
    const lastReply = (bytes: Buffer) => bytes.includes(" 30\r\n", Math.max(0, bytes.length - 200));
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      if (received > expected && lastReply(Buffer.concat(chunks.slice(-2)))) break;
    }
    socket.destroy();

    const replies = splitReplyFrames(Buffer.concat(chunks, received));
    expect(replies.map((reply) => Number(reply.header.split(" ").at(-1)))).toEqual([
      ...order.keys(),
      30,
    ]);
    expect(replies[1].header).toStartWith("result 200 ");
    expect(replies.at(-1)!.header).toStartWith("result 404 ");
    for (const [position, index] of order.entries()) {
      if (index < 0) continue;
      const reply = replies[position];
      expect(reply.header).toStartWith("value ");
      const [record] = decodeRecords(new Uint8Array(reply.body), offsets[index], MESSAGE_MAX);
      expect(record.data.length).toBe(payloads[index].length);
      // Compared as checksums first (a clear failure), then byte for byte.
      expect(metaqChecksum(record.data)).toBe(metaqChecksum(payloads[index]));
      expect(Buffer.from(record.data).equals(Buffer.from(payloads[index]))).toBe(true);
    }
  },
  120_000,
);

test("a quit right behind a large get closes the connection after the whole frame", async () => {
  await using temp = tempDir("metaq-get-large-quit-");
  await using broker = await startBroker(temp.path);
  const body = payload(5 * 1024 * 1024, 9);
  const [offset] = await putAll(broker.port, "large", [body]);
  using socket = await RawSocket.connect(broker.port);
  socket.write(`get large g 0 ${offset} ${RECORD_HEADER_BYTES + body.length} 1\r\nquit\r\n`);
  const reply = await socket.readFrame(30_000);
  expect(reply.header).toBe(`value ${RECORD_HEADER_BYTES + body.length} 1`);
  const [record] = decodeRecords(new Uint8Array(reply.body), offset, MESSAGE_MAX);
  expect(Buffer.from(record.data).equals(Buffer.from(body))).toBe(true);
  expect(await socket.waitClosed(10_000)).toBe(true);
});

test("over TLS the CLI produces and consumes a message larger than one buffer", async () => {
  await using temp = tempDir("metaq-get-large-tls-");
  const tlsDir = path.join(temp.path, "tls");
  expect((await runMetaq(["cert", "--out", tlsDir, "--host", "127.0.0.1"])).code).toBe(0);
  const ca = path.join(tlsDir, "cert.pem");
  await using broker = await startBroker(temp.path, [
    "--tls-cert",
    ca,
    "--tls-key",
    path.join(tlsDir, "key.pem"),
  ]);
  // Text, so the CLI's output compares as a string: 3 MiB of letters that differ along the way.
  const letters = Array.from(
    { length: 3 * 1024 * 1024 + 3 },
    (_, index) => String.fromCharCode(97 + ((index * 7 + (index >> 14)) % 26)),
  ).join("");
  const file = path.join(temp.path, "big.txt");
  fs.writeFileSync(file, letters);
  const secure = ["--broker", broker.address, "--ca", ca];
  const produced = await runMetaq(["produce", "large", "--whole-file", "--file", file, ...secure]);
  expect(produced.code).toBe(0);
  const consumed = await runMetaq(
    ["consume", "large", "--from-beginning", "--max", "1", ...secure],
    { timeoutMs: 60_000 },
  );
  expect(consumed.code).toBe(0);
  expect(consumed.stdout.length).toBe(letters.length + 1);
  expect(consumed.stdout === `${letters}\n`).toBe(true);
});

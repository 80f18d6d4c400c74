/**
 * @module A `get` whose body is large enough goes from the segment file straight into the
 * client's socket (sendfile, lib/runtime/file_to_socket.ts) instead of being read into a buffer
 * first. In process on Bun over real TCP and real files; the storage is the real one, with its
 * `sendTo` counted so the test knows which path served. Every reply must come back byte for
 * byte and in the order asked, to a reader that keeps up and to one that stalls (the socket
 * fills, and the rest of a frame goes out read into buffers behind what the kernel holds).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as net from "node:net";
import { type App, assemble } from "../../lib/app/assemble.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { metaqChecksum } from "../../lib/crc32.ts";
import { silentLogger } from "../../lib/log.ts";
import { RECORD_HEADER_BYTES } from "../../lib/protocol/record.ts";
import { fileToSocket } from "../../lib/runtime/file_to_socket.ts";
import { FileStorage } from "../../lib/store/storage_file.ts";
import { patterned } from "../support/bytes.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { splitReplyFrames } from "../support/reply_frames.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { wrapFile, wrapStorage } from "../support/wrap_storage.ts";

const MESSAGE_BYTES = 200 * 1024;
const MESSAGES = 30;

let temp: TempDir;
let app: App;
/** What the segment files sent straight into sockets: calls and bytes taken. */
const sent = { calls: 0, bytes: 0, refused: 0 };
/** Each record's offset and its bytes as stored (header and payload). */
const records: { offset: number; payload: Uint8Array }[] = [];

beforeAll(async () => {
  temp = tempDir("metaq-get-from-file-");
  const inner = new FileStorage();
  const storage = wrapStorage(inner, {
    open: (path, options) => {
      const file = inner.open(path, options);
      return wrapFile(file, {
        sendTo: (socketFd, length, position) => {
          const taken = file.sendTo!(socketFd, length, position);
          sent.calls += 1;
          sent.bytes += taken;
          if (taken === 0) sent.refused += 1;
          return taken;
        },
      });
    },
  });
  app = await assemble({
    config: buildConfig({
      fileText: `[system]\nnumPartitions=1\ndataPath=${temp.path}\nmaxMessageSize=${
        MESSAGE_BYTES + 1024
      }\n[topic=big]\n`,
      filePath: "server.ini",
      overrides: { serverPort: "0", httpEnabled: "false" },
    }),
    logger: silentLogger,
    storage,
  });
  using socket = await RawSocket.connect(app.port);
  for (let index = 0; index < MESSAGES; index++) {
    const body = patterned(MESSAGE_BYTES - index * 1000, index);
    socket.write(`put big 0 ${body.length} 0 ${metaqChecksum(body)} ${index}\r\n`);
    socket.write(body);
    const reply = await socket.readFrame(10_000);
    expect(reply.header).toStartWith("result 200 ");
    records.push({ offset: Number(reply.body.toString().split(" ")[2]), payload: body });
  }
});

afterAll(async () => {
  await app.close();
  temp[Symbol.dispose]();
});

/** The payloads a `value` body holds, record after record. */
function payloadsOf(body: Uint8Array): Uint8Array[] {
  const found: Uint8Array[] = [];
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let at = 0;
  while (at + RECORD_HEADER_BYTES <= body.length) {
    const length = view.getInt32(at);
    if (at + RECORD_HEADER_BYTES + length > body.length) break;
    found.push(body.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + length));
    at += RECORD_HEADER_BYTES + length;
  }
  return found;
}

/**
 * Sends every request in one write: for each record a `get` of it and the one after (a body of
 * ~400 KiB), with a `version` between, and reads until the last reply, slowly when asked.
 * Checks each reply against the records.
 */
async function getAll(slow: boolean): Promise<void> {
  const socket = net.connect(app.port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  let requests = "";
  let expected = 0;
  for (let index = 0; index < MESSAGES; index++) {
    const wanted = Math.min(2, MESSAGES - index);
    const bytes = records.slice(index, index + wanted)
      .reduce((sum, record) => sum + RECORD_HEADER_BYTES + record.payload.length, 0);
    requests += `get big g 0 ${records[index].offset} ${bytes} ${2 * index}\r\n`;
    requests += `version ${2 * index + 1}\r\n`;
    expected += bytes;
  }
  socket.write(requests);
  const chunks: Buffer[] = [];
  let received = 0;
  const finished = Promise.withResolvers<void>();
  socket.on("data", (chunk: Buffer) => {
    chunks.push(chunk);
    received += chunk.length;
    if (chunk.includes(` ${2 * MESSAGES - 1}\r\n`) && received > expected) finished.resolve();
    if (!slow) return;
    // At most ~64 KiB per 5 ms: the broker's socket stays full while this reads.
    socket.pause();
    setTimeout(() => socket.resume(), Math.ceil(chunk.length / (64 * 1024)) * 5);
  });
  const timeout = setTimeout(() => finished.reject(new Error("replies did not all come")), 60_000);
  await finished.promise;
  clearTimeout(timeout);
  socket.destroy();

  const replies = splitReplyFrames(Buffer.concat(chunks, received));
  expect(replies.map((reply) => Number(reply.header.split(" ").at(-1)))).toEqual(
    [...Array(2 * MESSAGES).keys()],
  );
  for (let index = 0; index < MESSAGES; index++) {
    const get = replies[2 * index];
    expect(get.header).toStartWith("value ");
    const payloads = payloadsOf(get.body);
    const wanted = records.slice(index, index + 2);
    expect(payloads.length).toBe(wanted.length);
    for (const [at, record] of wanted.entries()) {
      expect(Buffer.compare(payloads[at], record.payload)).toBe(0);
    }
    expect(replies[2 * index + 1].header).toStartWith("result 200 ");
  }
}

test("this runtime sends file bytes into sockets (the path under test exists here)", () => {
  // On Linux under Bun the adapter must load; without it every test below passes through the
  // portable path and proves nothing about sendfile.
  expect(fileToSocket).toBeDefined();
});

test("gets asked one at a time are sent straight from the segment file", async () => {
  const before = { ...sent };
  using socket = await RawSocket.connect(app.port);
  let bodies = 0;
  for (const [index, record] of records.entries()) {
    const bytes = RECORD_HEADER_BYTES + record.payload.length;
    socket.write(`get big g 0 ${record.offset} ${bytes} ${index}\r\n`);
    const reply = await socket.readFrame(10_000);
    expect(reply.header).toBe(`value ${bytes} ${index}`);
    expect(Buffer.compare(payloadsOf(reply.body)[0], record.payload)).toBe(0);
    bodies += bytes;
  }
  // An idle socket takes a 200 KiB body at once here; allow for a kernel that takes less (the
  // rest then goes through buffers), but most must have gone by sendfile.
  expect(sent.bytes - before.bytes).toBeGreaterThan(bodies / 2);
  expect(sent.bytes - before.bytes).toBeLessThanOrEqual(bodies);
});

test("pipelined gets, with other replies between, come back whole and in order", async () => {
  const before = { ...sent };
  await getAll(false);
  expect(sent.bytes - before.bytes).toBeGreaterThan(0);
});

test("to a reader that stalls, the socket fills and the rest goes out through buffers, in order", async () => {
  const before = { ...sent };
  await getAll(true);
  // Some bytes went straight from the file, and the full socket refused some, which then went
  // out read into buffers; the reply check above holds for both.
  expect(sent.bytes - before.bytes).toBeGreaterThan(0);
  expect(sent.refused - before.refused).toBeGreaterThan(0);
});

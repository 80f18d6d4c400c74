/**
 * @module A `get` answer left in its segment file (sent later by sendfile, or read then) holds
 * that file: retention deleting the segment while the answer waits behind other replies must not
 * cut it, and the file must close once the answer is sent or its connection is gone. In process
 * on Bun over real TCP and real files: a reader that does not read yet keeps the broker's socket
 * full, so the answer waits; retention then deletes its segment; the reader reads on.
 */
import { afterEach, beforeEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as net from "node:net";
import { type App, assemble } from "../../lib/app/assemble.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { metaqChecksum } from "../../lib/crc32.ts";
import { silentLogger } from "../../lib/log.ts";
import { RECORD_HEADER_BYTES } from "../../lib/protocol/record.ts";
import { fileToSocket } from "../../lib/runtime/file_to_socket.ts";
import { segmentFileName } from "../../lib/store/segment.ts";
import { FileStorage } from "../../lib/store/storage_file.ts";
import { patterned } from "../support/bytes.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { splitReplyFrames } from "../support/reply_frames.ts";
import { type TempDir, tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";
import { wrapFile, wrapStorage } from "../support/wrap_storage.ts";

const BLOCKER_BYTES = 1000 * 1024;
const OLD_BYTES = 100 * 1024;
const OLD_RECORDS = 4;
const MiB = 1024 * 1024;

/**
 * Blocker replies queued ahead of the answer under test: more than the kernel can hold for a
 * reader that does not read (the sender's largest send buffer and the reader's largest receive
 * buffer), so the answer is still in the broker when retention runs.
 */
const BLOCKERS = Math.ceil((tcpBufferMax("tcp_wmem") + tcpBufferMax("tcp_rmem")) / MiB) + 4;

function tcpBufferMax(name: string): number {
  const text = fs.readFileSync(`/proc/sys/net/ipv4/${name}`, "utf8").trim().split(/\s+/);
  return Number(text[2]);
}

let temp: TempDir;
let app: App;
/** Bytes each segment file gave to a socket or a read since the last reset, by file name. */
const touched = new Map<string, number>();
const old: { offset: number; payload: Uint8Array }[] = [];
let blocker: { offset: number; bytes: number };

beforeEach(async () => {
  temp = tempDir("metaq-get-held-");
  touched.clear();
  old.length = 0;
  const inner = new FileStorage();
  const count = (path: string, bytes: number) => {
    const name = path.slice(path.lastIndexOf("/") + 1);
    touched.set(name, (touched.get(name) ?? 0) + bytes);
  };
  const storage = wrapStorage(inner, {
    open: (path, options) => {
      const file = inner.open(path, options);
      return wrapFile(file, {
        read: (target, targetOffset, length, position) => {
          const read = file.read(target, targetOffset, length, position);
          if (path.includes("/old-0/")) count(path, read);
          return read;
        },
        sendTo: (socketFd, length, position) => {
          const taken = file.sendTo!(socketFd, length, position);
          if (path.includes("/old-0/")) count(path, taken);
          return taken;
        },
      });
    },
  });
  app = await assemble({
    config: buildConfig({
      fileText: `[system]
numPartitions=1
dataPath=${temp.path}
maxMessageSize=${BLOCKER_BYTES}
maxSegmentSize=${64 * 1024}
maxConnectionBufferBytes=${(BLOCKERS + 8) * MiB}
deletePolicy=delete,0s
[topic=old]
[topic=blocker]
`,
      filePath: "server.ini",
      overrides: { serverPort: "0", httpEnabled: "false" },
    }),
    logger: silentLogger,
    storage,
  });
  using socket = await RawSocket.connect(app.port);
  const put = async (topic: string, body: Uint8Array, opaque: number) => {
    socket.write(`put ${topic} 0 ${body.length} 0 ${metaqChecksum(body)} ${opaque}\r\n`);
    socket.write(body);
    const reply = await socket.readFrame(10_000);
    expect(reply.header).toStartWith("result 200 ");
    return Number(reply.body.toString().split(" ")[2]);
  };
  blocker = {
    offset: await put("blocker", patterned(BLOCKER_BYTES, 99), 1),
    bytes: RECORD_HEADER_BYTES + BLOCKER_BYTES,
  };
  for (let index = 0; index < OLD_RECORDS; index++) {
    const body = patterned(OLD_BYTES, index);
    old.push({ offset: await put("old", body, 10 + index), payload: body });
  }
});

afterEach(async () => {
  await app.close();
  temp[Symbol.dispose]();
});

/** Paths of deleted files under the test's directory that this process still holds open. */
function deletedFilesOpen(): string[] {
  const open: string[] = [];
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    try {
      const target = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(temp.path) && target.endsWith(" (deleted)")) open.push(target);
    } catch {
      // the descriptor closed while listing (the listing's own, say)
    }
  }
  return open;
}

/**
 * Connects a reader that does not read, asks for the blockers and then the first old record,
 * and waits until the broker has answered that last `get` (its reply holds the file) while its
 * bytes are still in the broker. Then retention deletes every sealed segment of `old`.
 */
async function answerWaitingWhileRetentionDeletes(): Promise<net.Socket> {
  expect(fileToSocket).toBeDefined(); // file frames only exist where the adapter loads
  const socket = net.connect(app.port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  socket.pause();
  let requests = "";
  for (let index = 0; index < BLOCKERS; index++) {
    requests += `get blocker g 0 ${blocker.offset} ${blocker.bytes} ${index}\r\n`;
  }
  const first = RECORD_HEADER_BYTES + OLD_BYTES;
  requests += `get old g 0 ${old[0].offset} ${first} ${BLOCKERS}\r\n`;
  socket.write(requests);
  await waitFor(
    "the old record's get answered",
    () => (app.broker.stats.servedBytes.get("old-0") ?? 0) >= first,
    { timeoutMs: 10_000 },
  );
  // The answer is made but none of its bytes left the file yet: the scenario holds.
  expect(touched.get(segmentFileName(old[0].offset)) ?? 0).toBe(0);

  const dir = `${temp.path}/old-0`;
  const sealed = app.logs.get("old", 0)!.facts().segments - 1;
  expect(sealed).toBeGreaterThanOrEqual(OLD_RECORDS - 1);
  const hourAgo = new Date(Date.now() - 3_600_000);
  for (const name of fs.readdirSync(dir)) fs.utimesSync(`${dir}/${name}`, hourAgo, hourAgo);
  await app.maintenance.runRetention();
  expect(fs.existsSync(`${dir}/${segmentFileName(old[0].offset)}`)).toBe(false);
  expect(app.logs.get("old", 0)!.startOffset).toBeGreaterThan(old[0].offset);
  expect(deletedFilesOpen()).toHaveLength(1); // the held segment, and only it
  return socket;
}

test("an answer waiting in a full socket is sent whole after retention deletes its segment", async () => {
  const socket = await answerWaitingWhileRetentionDeletes();
  let expected = `value ${RECORD_HEADER_BYTES + OLD_BYTES} ${BLOCKERS}\r\n`.length +
    RECORD_HEADER_BYTES + OLD_BYTES;
  for (let index = 0; index < BLOCKERS; index++) {
    expected += `value ${blocker.bytes} ${index}\r\n`.length + blocker.bytes;
  }
  const chunks: Buffer[] = [];
  let received = 0;
  const finished = Promise.withResolvers<void>();
  socket.on("data", (chunk: Buffer) => {
    chunks.push(chunk);
    received += chunk.length;
    if (received >= expected) finished.resolve();
  });
  socket.once("close", () => finished.reject(new Error(`closed after ${received} bytes`)));
  const timeout = setTimeout(() => finished.reject(new Error("replies did not all come")), 60_000);
  socket.resume();
  try {
    await finished.promise;
  } finally {
    clearTimeout(timeout);
    socket.destroy();
  }
  const replies = splitReplyFrames(Buffer.concat(chunks, received));
  expect(replies).toHaveLength(BLOCKERS + 1);
  const last = replies[BLOCKERS];
  expect(last.header).toBe(`value ${RECORD_HEADER_BYTES + OLD_BYTES} ${BLOCKERS}`);
  expect(last.body.subarray(RECORD_HEADER_BYTES)).toEqual(Buffer.from(old[0].payload));
  // Sent from the deleted file, which closed with its last byte.
  expect(touched.get(segmentFileName(old[0].offset))).toBe(RECORD_HEADER_BYTES + OLD_BYTES);
  expect(deletedFilesOpen()).toEqual([]);
});

test("the deleted segment's file closes when the reader goes away before its answer", async () => {
  const socket = await answerWaitingWhileRetentionDeletes();
  socket.destroy();
  await waitFor("the held file closed", () => deletedFilesOpen().length === 0, {
    timeoutMs: 10_000,
  });
  expect(touched.get(segmentFileName(old[0].offset)) ?? 0).toBe(0);
});

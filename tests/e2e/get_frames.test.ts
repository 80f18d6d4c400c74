/**
 * @module `get` answers come from reused buffers (lib/broker/frame_pool.ts): a buffer goes back to
 * the pool only once the kernel took all of it. Pipelined 1 MiB gets to a client that does not
 * read fill the socket, so some answers wait in the socket's own buffer while later gets are
 * served: every answer must still carry the records of its own offset, byte for byte.
 */
import { expect, test } from "bun:test";
import * as net from "node:net";
import { MetaqClient } from "../../lib/client/client.ts";
import { Producer } from "../../lib/client/producer.ts";
import { decodeRecords } from "../../lib/protocol/record.ts";
import { BrokerProcess } from "../support/harness.ts";
import { tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

// 48 MiB answered to a client that does not read: more than the kernel's socket buffers take
// (up to 32 MiB received and 4 MiB sent here), so the last answers wait in the broker's socket.
const MESSAGES = 50_000; // every get below finds a full 1 MiB
const SIZE = 1000;
const RECORD_BYTES = 20 + SIZE; // MetaQ's record header, then the data
const GETS = 48;
const GET_BYTES = 1024 * 1024;

function payload(index: number): Uint8Array {
  const bytes = new Uint8Array(SIZE);
  new DataView(bytes.buffer).setUint32(0, index);
  for (let i = 4; i < SIZE; i++) bytes[i] = (index * 31 + i) & 0xff;
  return bytes;
}

test(
  "pipelined 1 MiB gets to a client that does not read each answer their own records",
  async () => {
    await using temp = tempDir();
    await using broker = await BrokerProcess.start({ dataDir: temp.path });
    const client = new MetaqClient({ brokers: [broker.address] });
    try {
      const producer = new Producer(client);
      const sends = [];
      for (let index = 0; index < MESSAGES; index++) {
        sends.push(producer.send("frames", payload(index), { partition: 0 }));
      }
      await Promise.all(sends);
    } finally {
      client.close();
    }
    // Each get starts on a record boundary, 1000 records after the last one.
    const offsets = Array.from({ length: GETS }, (_, i) => i * 1000 * RECORD_BYTES);
    const socket = net.connect(broker.port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    socket.pause();
    // One get at a time, each sent once the last was answered, so each answer is built after the
    // earlier ones were written (a reused buffer would be one of theirs). Not reading: the kernel's
    // buffers fill, then answers wait in the broker's socket; it stops reading at its output bound,
    // seen here as a get left unanswered (cmd_get standing still for half a second).
    const stats = new MetaqClient({ brokers: [broker.address] });
    let sent = 0;
    try {
      const answered = async () => Number(/cmd_get (\d+)/.exec(await stats.stats())?.[1] ?? 0);
      let stalled = false;
      while (sent < GETS && !stalled) {
        socket.write(`get frames g 0 ${offsets[sent]} ${GET_BYTES} ${sent + 1}\r\n`);
        sent += 1;
        let last = -1;
        let still = 0;
        await waitFor(`get ${sent} answered or held`, async () => {
          const count = await answered();
          still = count === last ? still + 1 : 0;
          last = count;
          stalled = still >= 25;
          return count >= sent || stalled;
        }, { timeoutMs: 30_000, everyMs: 20 });
      }
    } finally {
      stats.close();
    }
    // Enough answers to have filled the kernel's buffers, so some waited in the broker's socket.
    expect(sent).toBeGreaterThan(16);
    const chunks: Uint8Array[] = [];
    socket.on("data", (chunk: Uint8Array) => chunks.push(chunk));
    socket.resume();
    let all = Buffer.alloc(0);
    await waitFor("every answer read", () => {
      all = Buffer.concat([all, ...chunks.splice(0)]);
      return completeFrames(all) >= sent;
    }, { timeoutMs: 60_000, everyMs: 50 });
    socket.destroy();
    let at = 0;
    for (let i = 0; i < sent; i++) {
      const lineEnd = all.indexOf("\r\n", at);
      const [kind, length, opaque] = all.subarray(at, lineEnd).toString().split(" ");
      expect([kind, Number(opaque)]).toEqual(["value", i + 1]);
      const body = all.subarray(lineEnd + 2, lineEnd + 2 + Number(length));
      at = lineEnd + 2 + Number(length);
      const records = decodeRecords(body, offsets[i]);
      expect(records.length).toBe(Math.floor(GET_BYTES / RECORD_BYTES));
      records.forEach((record, k) => {
        expect(record.offset).toBe(offsets[i] + k * RECORD_BYTES);
        expect(record.data).toEqual(payload(i * 1000 + k));
      });
    }
    expect(at).toBe(all.length);
  },
  120_000,
);

/** How many whole `value` frames `bytes` holds from its start. */
function completeFrames(bytes: Buffer): number {
  let count = 0;
  let at = 0;
  while (true) {
    const lineEnd = bytes.indexOf("\r\n", at);
    if (lineEnd < 0) return count;
    const length = Number(bytes.subarray(at, lineEnd).toString().split(" ")[1]);
    if (lineEnd + 2 + length > bytes.length) return count;
    at = lineEnd + 2 + length;
    count += 1;
  }
}

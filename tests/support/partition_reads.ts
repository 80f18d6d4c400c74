/** @module Reading a whole partition with raw `get`s, for tests that check what a node serves. */
import { decodeRecords } from "../../lib/protocol/record.ts";
import type { RawSocket } from "./raw_socket.ts";

/** Every message of `topic`-`partition` as served through `socket` (gets from 0 to the end). */
export async function messagesThrough(
  socket: RawSocket,
  topic: string,
  partition: number,
): Promise<string[]> {
  const found: string[] = [];
  let offset = 0;
  // Each round reads at least one record or stops, bounded besides.
  for (let round = 0; round < 100; round++) {
    socket.write(`get ${topic} g ${partition} ${offset} 1048576 7\r\n`);
    const reply = await socket.readFrame(10_000);
    if (!reply.header.startsWith("value")) break;
    const records = decodeRecords(new Uint8Array(reply.body), offset);
    if (records.length === 0) break;
    found.push(...records.map((record) => new TextDecoder().decode(record.data)));
    const last = records[records.length - 1];
    offset = last.offset + 20 + last.length;
  }
  return found;
}

/**
 * @module Writes a one-entry .zip archive of a file, streaming through raw deflate, as MetaQ's
 * `archive,<age>,true` policy does with java.util.zip. No Zip64: files of 4 GiB or more are
 * refused (the caller falls back to a plain `.arc` rename).
 */
import * as zlib from "node:zlib";
import { assert } from "../assert.ts";
import { crc32Continue } from "../crc32.ts";
import type { Storage } from "./storage.ts";

const ZIP_BYTES_MAX = 0xffffffff;
const READ_BYTES = 1024 * 1024;

/** Archives `source` into `target` (a new file); returns false when the file is too large. */
export async function zipFile(
  storage: Storage,
  source: string,
  target: string,
  entryName: string,
): Promise<boolean> {
  const stat = storage.stat(source);
  assert(stat !== undefined, `zip source ${source} missing`);
  if (stat.size >= ZIP_BYTES_MAX) return false;
  const input = storage.open(source, { create: false });
  const output = storage.open(target, { create: true });
  try {
    output.truncate(0);
    const name = new TextEncoder().encode(entryName);
    const { time, date } = dosDateTime(new Date(stat.mtimeMs));
    let written = 0;
    const emit = (bytes: Uint8Array) => {
      output.write([bytes], written);
      written += bytes.length;
    };
    emit(localHeader(name, time, date));
    const { crc, compressedBytes } = await deflateInto(input, stat.size, emit);
    if (compressedBytes >= ZIP_BYTES_MAX) return false;
    emit(dataDescriptor(crc, compressedBytes, stat.size));
    const centralStart = written;
    emit(centralHeader({ name, time, date, crc, compressedBytes, size: stat.size }));
    emit(endOfCentralDirectory(written - centralStart, centralStart));
    await output.sync();
    return true;
  } finally {
    input.close();
    output.close();
  }
}

async function deflateInto(
  input: { read(target: Uint8Array, at: number, length: number, position: number): number },
  size: number,
  emit: (bytes: Uint8Array) => void,
): Promise<{ crc: number; compressedBytes: number }> {
  const deflate = zlib.createDeflateRaw();
  let compressedBytes = 0;
  const finished = new Promise<void>((resolve, reject) => {
    deflate.on("data", (chunk: Uint8Array) => {
      compressedBytes += chunk.length;
      emit(chunk);
    });
    deflate.on("end", resolve);
    deflate.on("error", reject);
  });
  let crc = 0;
  for (let position = 0; position < size; position += READ_BYTES) {
    const chunk = new Uint8Array(Math.min(READ_BYTES, size - position));
    const count = input.read(chunk, 0, chunk.length, position);
    assert(count === chunk.length);
    crc = crc32Continue(chunk, crc);
    if (!deflate.write(chunk)) await new Promise((resolve) => deflate.once("drain", resolve));
  }
  deflate.end();
  await finished;
  return { crc, compressedBytes };
}

function localHeader(name: Uint8Array, time: number, date: number): Uint8Array {
  const bytes = new Uint8Array(30 + name.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 0x04034b50, true);
  view.setUint16(4, 20, true); // version needed
  view.setUint16(6, 0x0008, true); // sizes and CRC follow in a data descriptor
  view.setUint16(8, 8, true); // deflate
  view.setUint16(10, time, true);
  view.setUint16(12, date, true);
  view.setUint16(26, name.length, true);
  bytes.set(name, 30);
  return bytes;
}

function dataDescriptor(crc: number, compressedBytes: number, size: number): Uint8Array {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 0x08074b50, true);
  view.setUint32(4, crc, true);
  view.setUint32(8, compressedBytes, true);
  view.setUint32(12, size, true);
  return bytes;
}

function centralHeader(entry: {
  name: Uint8Array;
  time: number;
  date: number;
  crc: number;
  compressedBytes: number;
  size: number;
}): Uint8Array {
  const bytes = new Uint8Array(46 + entry.name.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 0x02014b50, true);
  view.setUint16(4, 20, true); // version made by
  view.setUint16(6, 20, true); // version needed
  view.setUint16(8, 0x0008, true);
  view.setUint16(10, 8, true);
  view.setUint16(12, entry.time, true);
  view.setUint16(14, entry.date, true);
  view.setUint32(16, entry.crc, true);
  view.setUint32(20, entry.compressedBytes, true);
  view.setUint32(24, entry.size, true);
  view.setUint16(28, entry.name.length, true);
  view.setUint32(42, 0, true); // local header offset
  bytes.set(entry.name, 46);
  return bytes;
}

function endOfCentralDirectory(centralBytes: number, centralStart: number): Uint8Array {
  const bytes = new Uint8Array(22);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 0x06054b50, true);
  view.setUint16(8, 1, true);
  view.setUint16(10, 1, true);
  view.setUint32(12, centralBytes, true);
  view.setUint32(16, centralStart, true);
  return bytes;
}

function dosDateTime(date: Date): { time: number; date: number } {
  const year = Math.max(1980, date.getFullYear());
  return {
    time: (date.getHours() << 11) | (date.getMinutes() << 5) | Math.floor(date.getSeconds() / 2),
    date: ((year - 1980) << 9) | ((date.getMonth() + 1) << 5) | date.getDate(),
  };
}

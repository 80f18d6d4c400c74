/**
 * @module Final drains: read a partition from its log start to its end through a broker (what a
 * consumer would get), or straight from a stopped replica's segment files (what the node holds).
 * Both produce a LogView of records with offsets, sizes, checksums, ids and workload values.
 * Reading a replica never trusts it: it walks the records with MetaQ's layout rules and stops at
 * the first bytes that are not a valid record, saying why.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { MetaqClient } from "../../lib/client/client.ts";
import { metaqChecksum } from "../../lib/crc32.ts";
import { MESSAGE_BYTES_LIMIT_MAX, RECORD_HEADER_BYTES } from "../../lib/limits.ts";
import { parseSegmentFileName } from "../../lib/store/segment.ts";
import { decodeRecords, readHeader, splitAttribute } from "../../lib/protocol/record.ts";
import type { LogRecord, LogView } from "./history.ts";

const FETCH_BYTES_START = 256 * 1024;
const FETCH_BYTES_MAX = 8 * 1024 * 1024;
const DRAIN_FETCHES_MAX = 100_000;
const DRAIN_GROUP = "chaos-drain";
const decoder = new TextDecoder();

/** The workload value a payload carries: the text before its first space (all of it if none). */
export function valueOf(flag: number, data: Uint8Array): string {
  let payload = data;
  try {
    payload = splitAttribute(flag, data).payload;
  } catch {
    // a bad attribute block is still data: show it raw, the checker will call it a phantom
  }
  const head = decoder.decode(payload.subarray(0, Math.min(payload.length, 64)));
  const space = head.indexOf(" ");
  return space < 0 ? head : head.slice(0, space);
}

/** Reads `topic`-`partition` through `client` from the log start to the end. */
export async function drainPartition(
  client: MetaqClient,
  parts: { topic: string; partition: number; node: number; deadlineMs: number },
): Promise<LogView> {
  const records: LogRecord[] = [];
  let offset = 0;
  let logStart = 0;
  let maxSize = FETCH_BYTES_START;
  let damage: string | undefined;
  for (let fetches = 0; fetches < DRAIN_FETCHES_MAX; fetches++) {
    if (performance.now() > parts.deadlineMs) {
      throw new Error(
        `Cannot drain ${parts.topic}-${parts.partition} through node ${parts.node}: out of time at offset ${offset}`,
      );
    }
    const reply = await client.get({
      topic: parts.topic,
      group: DRAIN_GROUP,
      partition: parts.partition,
      offset,
      maxSize,
    });
    if (reply.kind === "none") break; // 404: at the end (or nothing there yet)
    if (reply.kind === "moved") {
      if (reply.offset <= offset) break; // moved to the end we are at
      if (records.length === 0) logStart = reply.offset;
      else damage = `asked for ${offset}, told to move to ${reply.offset} in the middle of the log`;
      if (damage) break;
      offset = reply.offset;
      continue;
    }
    let decoded;
    try {
      decoded = decodeRecords(reply.bytes, offset, MESSAGE_BYTES_LIMIT_MAX);
    } catch (error) {
      damage = (error as Error).message;
      break;
    }
    if (decoded.length === 0) {
      if (maxSize >= FETCH_BYTES_MAX) {
        damage = `no complete record at ${offset} within ${maxSize} bytes`;
        break;
      }
      maxSize *= 2;
      continue;
    }
    for (const record of decoded) {
      const size = RECORD_HEADER_BYTES + record.length;
      records.push({
        offset: record.offset,
        size,
        checksum: record.checksum,
        id: record.id.toString(),
        value: valueOf(record.flag, record.data),
      });
      offset = record.offset + size;
    }
  }
  return {
    source: "drain",
    node: parts.node,
    topic: parts.topic,
    partition: parts.partition,
    logStart,
    end: records.length > 0 ? offset : logStart,
    records,
    damage,
  };
}

/**
 * Reads a stopped replica's segment files for `topic`-`partition` (`<data>/<topic>-<p>/*.meta`).
 * Segments must follow each other without gaps; walking stops at the first invalid record.
 */
export function dumpReplica(
  parts: { dataDir: string; topic: string; partition: number; node: number },
): LogView {
  const dir = path.join(parts.dataDir, `${parts.topic}-${parts.partition}`);
  const segments = (fs.existsSync(dir) ? fs.readdirSync(dir) : [])
    .map((name) => ({ name, start: parseSegmentFileName(name) }))
    .filter((segment): segment is { name: string; start: number } => segment.start !== undefined)
    .sort((a, b) => a.start - b.start);
  const records: LogRecord[] = [];
  const logStart = segments[0]?.start ?? 0;
  let end = logStart;
  let damage: string | undefined;
  for (const segment of segments) {
    if (segment.start !== end) {
      damage = `segment ${segment.name} starts at ${segment.start}, previous data ends at ${end}`;
      break;
    }
    const bytes = new Uint8Array(fs.readFileSync(path.join(dir, segment.name)));
    const walked = walkSegment(bytes, segment.start, records);
    end = walked.end;
    if (walked.damage !== undefined) {
      damage = `${segment.name}: ${walked.damage}`;
      break;
    }
  }
  return {
    source: "replica",
    node: parts.node,
    topic: parts.topic,
    partition: parts.partition,
    logStart,
    end,
    records,
    damage,
  };
}

/** Appends the valid records of one segment; returns where valid data ends and why it stopped. */
function walkSegment(
  bytes: Uint8Array,
  start: number,
  into: LogRecord[],
): { end: number; damage?: string } {
  let position = 0;
  while (position < bytes.length) {
    const at = start + position;
    if (bytes.length - position < RECORD_HEADER_BYTES) {
      return { end: at, damage: `${bytes.length - position} stray bytes at ${at}` };
    }
    const header = readHeader(bytes, position);
    if (header.length === 0 && header.checksum === 0 && header.id === 0n && header.flag === 0) {
      return { end: at, damage: `zero-filled header at ${at}` };
    }
    const recordEnd = position + RECORD_HEADER_BYTES + header.length;
    if (header.length < 0 || header.length > MESSAGE_BYTES_LIMIT_MAX || recordEnd > bytes.length) {
      return { end: at, damage: `invalid length ${header.length} at ${at}` };
    }
    const data = bytes.subarray(position + RECORD_HEADER_BYTES, recordEnd);
    if (metaqChecksum(data) !== header.checksum) {
      return { end: at, damage: `checksum mismatch at ${at}` };
    }
    into.push({
      offset: at,
      size: RECORD_HEADER_BYTES + header.length,
      checksum: header.checksum,
      id: header.id.toString(),
      value: valueOf(header.flag, data),
    });
    position = recordEnd;
  }
  return { end: start + position };
}

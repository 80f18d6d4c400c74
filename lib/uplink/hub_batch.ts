/**
 * @module Turns records read from an edge partition into the batch an `uput` carries: each
 * record keeps its flag bits and payload, gains its origin in the attribute (the original
 * attribute follows it) and gets the id the hub stores it under (uplink_origin.ts). Pure: bytes
 * and numbers in, bytes out.
 *
 * A record whose attribute already names this site as an origin came back through the hub (an
 * edge uplinked to itself, or two brokers uplinked to each other): the hub has it from the
 * first trip, so it is passed over rather than sent round the loop again.
 */
import { metaqChecksum } from "../crc32.ts";
import { RECORD_DATA_BYTES_MAX, RECORD_HEADER_BYTES } from "../limits.ts";
import { idTimestampMs } from "../protocol/message_id.ts";
import { FLAG_HAS_ATTRIBUTE, walkRecords } from "../protocol/record.ts";
import { formatOrigin, ORIGIN_PREFIX, OriginIds } from "../protocol/uplink_origin.ts";

export interface SourcePartition {
  readonly site: string;
  readonly topic: string;
  readonly partition: number;
}

export interface HubBatch {
  /** Whole records for `uput`; empty when not even the first record fits `maxBytes`. */
  readonly body: Uint8Array;
  readonly records: number;
  /** Source bytes consumed: the forwarding position moves this far once the hub has it. */
  readonly sourceBytes: number;
  /** Records passed over because they came from this site (counted in `sourceBytes`). */
  readonly looped: number;
}

const encoder = new TextEncoder();
const SEMICOLON = 0x3b;
const ORIGIN_PREFIX_BYTES = encoder.encode(ORIGIN_PREFIX);

/**
 * Builds the batch from the whole records at the start of `source` (which starts at partition
 * offset `baseOffset`), stopping before the first record that would make the body exceed
 * `maxBytes`. Writes each record once, in place: into `into` when given (at least `maxBytes`
 * long; the body is then a view of it), else into a new array.
 */
export function buildHubBatch(
  from: SourcePartition,
  source: Uint8Array,
  baseOffset: number,
  maxBytes: number,
  into?: Uint8Array,
): HubBatch {
  const body = into?.subarray(0, maxBytes) ??
    new Uint8Array(Math.min(maxBytes, 2 * source.length + 64 * 1024));
  let bodyBytes = 0;
  let sourceBytes = 0;
  let records = 0;
  let looped = 0;
  const ids = new OriginIds(from.site, from.topic, from.partition);
  const ownOrigin = encoder.encode(`${ORIGIN_PREFIX}${from.site}/`);
  walkRecords(source, RECORD_DATA_BYTES_MAX, (position, length) => {
    const parts = recordParts(from, ids, source, position, length, baseOffset + position);
    if (parts.original && namesOrigin(parts.original, ownOrigin)) {
      looped += 1;
    } else {
      const bytes = RECORD_HEADER_BYTES + parts.dataBytes;
      if (bodyBytes + bytes > body.length) return false;
      writeForwarded(body, bodyBytes, parts);
      bodyBytes += bytes;
      records += 1;
    }
    sourceBytes = position + RECORD_HEADER_BYTES + length;
  });
  return { body: body.subarray(0, bodyBytes), records, sourceBytes, looped };
}

/** Whether an attribute is an origin chain (`origin;origin;...`) with `marker` in it. */
function namesOrigin(attribute: Uint8Array, marker: Uint8Array): boolean {
  if (!startsWith(attribute, 0, ORIGIN_PREFIX_BYTES)) return false;
  // Each origin of the chain starts the attribute or follows a ';'.
  for (let at = 0; at >= 0; at = attribute.indexOf(SEMICOLON, at) + 1 || -1) {
    if (!startsWith(attribute, at, ORIGIN_PREFIX_BYTES)) return false;
    if (startsWith(attribute, at, marker)) return true;
  }
  return false;
}

function startsWith(bytes: Uint8Array, at: number, prefix: Uint8Array): boolean {
  if (at + prefix.length > bytes.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[at + i] !== prefix[i]) return false;
  return true;
}

/** What a source record becomes: its new attribute (origin, then the original) and payload. */
interface ForwardedParts {
  /** The hub id as signed 32-bit halves, high first. */
  readonly id: [number, number];
  readonly flag: number;
  readonly origin: Uint8Array;
  readonly original: Uint8Array | undefined;
  readonly payload: Uint8Array;
  readonly dataBytes: number;
}

function recordParts(
  from: SourcePartition,
  ids: OriginIds,
  source: Uint8Array,
  position: number,
  length: number,
  offset: number,
): ForwardedParts {
  const view = new DataView(source.buffer, source.byteOffset + position, RECORD_HEADER_BYTES);
  const sourceId = view.getBigInt64(8);
  const flag = view.getInt32(16);
  const start = position + RECORD_HEADER_BYTES;
  const data = source.subarray(start, start + length);
  const origin = encoder.encode(
    formatOrigin({ ...from, offset, id: sourceId }),
  );
  let original: Uint8Array | undefined;
  let payload = data;
  if ((flag & FLAG_HAS_ATTRIBUTE) !== 0 && data.length >= 4) {
    const attributeBytes = new DataView(data.buffer, data.byteOffset, 4).getInt32(0);
    if (attributeBytes >= 0 && 4 + attributeBytes <= data.length) {
      original = data.subarray(4, 4 + attributeBytes);
      payload = data.subarray(4 + attributeBytes);
    }
  }
  const attributeBytes = origin.length + (original ? 1 + original.length : 0);
  return {
    id: ids.halvesAt(offset),
    flag: flag | FLAG_HAS_ATTRIBUTE,
    origin,
    original,
    payload,
    dataBytes: 4 + attributeBytes + payload.length,
  };
}

/** Writes the record of `parts` at `at` of `target`: header, attribute block, payload. */
function writeForwarded(target: Uint8Array, at: number, parts: ForwardedParts): void {
  const { origin, original, payload } = parts;
  const dataStart = at + RECORD_HEADER_BYTES;
  const attributeBytes = parts.dataBytes - 4 - payload.length;
  const view = new DataView(target.buffer, target.byteOffset);
  view.setInt32(dataStart, attributeBytes);
  target.set(origin, dataStart + 4);
  // The original attribute (its bytes as they are) follows the origin after a ';'.
  if (original) {
    target[dataStart + 4 + origin.length] = SEMICOLON;
    target.set(original, dataStart + 5 + origin.length);
  }
  target.set(payload, dataStart + 4 + attributeBytes);
  const data = target.subarray(dataStart, dataStart + parts.dataBytes);
  view.setInt32(at, parts.dataBytes);
  view.setInt32(at + 4, metaqChecksum(data));
  view.setInt32(at + 8, parts.id[0]);
  view.setInt32(at + 12, parts.id[1]);
  view.setInt32(at + 16, parts.flag);
}

/** The wall-clock time in the id of the record at `position` of `bytes`, when it has one. */
export function recordTimeMs(bytes: Uint8Array, position: number): number | undefined {
  const id = new DataView(bytes.buffer, bytes.byteOffset + position + 8, 8).getBigInt64(0);
  return id > 0n ? idTimestampMs(id) : undefined;
}

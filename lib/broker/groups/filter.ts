/**
 * @module The broker's side of group filters: `recordFilter` turns a parsed filter (the language
 * of lib/protocol/filter.ts) into the broker's `RecordFilter` hook, which keeps the accepted
 * complete records of a `get` slice. Works on raw record bytes; parsing lives in protocol.
 */
import { acceptsMessage, type MessageFilter } from "../../protocol/filter.ts";
import {
  readHeader,
  RECORD_HEADER_BYTES,
  splitAttribute,
  walkRecords,
} from "../../protocol/record.ts";
import { MESSAGE_BYTES_LIMIT_MAX } from "../../limits.ts";

/**
 * The broker hook: keeps the complete records of a `get` slice that pass `filter`, copied back
 * to back; `examined` is the bytes of complete records looked at, so an all-rejected slice can
 * answer `301 <offset + examined>` as MetaQ does. A record whose attribute block is malformed is
 * not accepted (MetaQ counts a failing filter as "not accepted").
 */
export function recordFilter(
  filter: MessageFilter,
): (bytes: Uint8Array, baseOffset: number) => { bytes: Uint8Array; examined: number } {
  return (bytes) => {
    const kept: [number, number][] = [];
    let keptBytes = 0;
    const walk = walkRecords(bytes, MESSAGE_BYTES_LIMIT_MAX, (position, length) => {
      const end = position + RECORD_HEADER_BYTES + length;
      const flag = readHeader(bytes, position).flag;
      if (accepts(filter, flag, bytes.subarray(position + RECORD_HEADER_BYTES, end))) {
        kept.push([position, end]);
        keptBytes += end - position;
      }
    });
    const position = walk.bytes;
    const out = new Uint8Array(keptBytes);
    let at = 0;
    for (const [start, end] of kept) {
      out.set(bytes.subarray(start, end), at);
      at += end - start;
    }
    return { bytes: out, examined: position };
  };
}

function accepts(filter: MessageFilter, flag: number, data: Uint8Array): boolean {
  try {
    return acceptsMessage(filter, splitAttribute(flag, data));
  } catch {
    return false;
  }
}

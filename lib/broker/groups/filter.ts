/**
 * @module The broker's side of group filters: `recordFilter` turns a parsed filter (the language
 * of lib/protocol/filter.ts) into the broker's `RecordFilter` hook, which decides what part of a
 * `get` slice a filtered group is served. Works on raw record bytes; parsing lives in protocol.
 *
 * A consumer gives each record of a reply the offset of the reply's start plus the bytes before
 * it (MetaQ's clients do too), so a reply must be bytes exactly as they lie in the log: records
 * cannot be left out of the middle of one. So the slice is cut where acceptance changes:
 *
 * | slice starts with                  | verdict                                                 |
 * | ---------------------------------- | ------------------------------------------------------- |
 * | accepted records                   | serve that run, up to the first rejected record         |
 * | rejected records                   | skip them: `301 <offset + their bytes>`                 |
 * | a record larger than the slice     | serve the slice: the consumer grows its fetch size      |
 * | bytes that are not records         | serve the slice: the consumer finds it invalid and asks |
 * |                                    | `offset` for the segment start, as without a filter     |
 */
import { acceptsMessage, type MessageFilter } from "../../protocol/filter.ts";
import {
  readHeader,
  RECORD_HEADER_BYTES,
  RecordLengthError,
  splitAttribute,
  walkRecords,
} from "../../protocol/record.ts";
import { MESSAGE_BYTES_LIMIT_MAX } from "../../limits.ts";

/** Serve the first `serve` bytes of the slice as they are, or move `skip` bytes past its start. */
export type FilterVerdict = { readonly serve: number } | { readonly skip: number };

/**
 * The broker hook: the verdict on one `get` slice (see the table above). A record whose attribute
 * block is malformed is not accepted (MetaQ counts a failing filter as "not accepted").
 */
export function recordFilter(filter: MessageFilter): (bytes: Uint8Array) => FilterVerdict {
  return (bytes) => {
    let first: boolean | undefined;
    let walked: number;
    try {
      walked = walkRecords(bytes, MESSAGE_BYTES_LIMIT_MAX, (position, length) => {
        const flag = readHeader(bytes, position).flag;
        const data = bytes.subarray(
          position + RECORD_HEADER_BYTES,
          position + RECORD_HEADER_BYTES + length,
        );
        const accepted = accepts(filter, flag, data);
        first ??= accepted;
        return accepted === first;
      }).bytes;
    } catch (error) {
      if (!(error instanceof RecordLengthError)) throw error;
      walked = error.position; // the run ends before the bytes that are not a record
    }
    if (first === undefined) return { serve: bytes.length };
    return first ? { serve: walked } : { skip: walked };
  };
}

function accepts(filter: MessageFilter, flag: number, data: Uint8Array): boolean {
  try {
    return acceptsMessage(filter, splitAttribute(flag, data));
  } catch {
    return false;
  }
}

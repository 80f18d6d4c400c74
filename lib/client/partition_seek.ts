/**
 * @module Position searches (lib/protocol/record_seek.ts) over a client: a partition's bytes and
 * bounds through MetaQ's `get` and `offset`.
 */
import { RECORD_HEADER_BYTES } from "../limits.ts";
import type { Bounds, PartitionBytes } from "../protocol/record_seek.ts";
import type { MetaqClient } from "./client.ts";

/** The group named in the `get`s of position searches (no server-side filter applies). */
const SEEK_GROUP = "metaq-cli";
const LONG_MAX = 9223372036854775807n;

/** One partition's bytes through a client's `get`. */
export function partitionBytes(
  client: MetaqClient,
  topic: string,
  partition: number,
): PartitionBytes {
  return {
    async read(offset, maxSize) {
      const reply = await client.get({ topic, group: SEEK_GROUP, partition, offset, maxSize });
      return reply.kind === "records" ? reply.bytes : new Uint8Array(0);
    },
  };
}

/**
 * A partition's bounds, as MetaQ answers them: `get` at Long.MAX_VALUE is a 301 to the end,
 * `offset 0` the first stored offset; an empty partition is [0, 0).
 */
export async function partitionBounds(
  client: MetaqClient,
  topic: string,
  partition: number,
): Promise<Bounds> {
  const reply = await client.get({
    topic,
    group: SEEK_GROUP,
    partition,
    offset: LONG_MAX,
    maxSize: RECORD_HEADER_BYTES,
  });
  const end = reply.kind === "moved" ? reply.offset : 0;
  if (end === 0) return { start: 0, end: 0 };
  const start = await client.offset({ topic, group: SEEK_GROUP, partition, offset: 0 });
  return { start: Math.min(start, end), end };
}

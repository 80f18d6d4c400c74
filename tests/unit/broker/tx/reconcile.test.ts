import { describe, expect, test } from "bun:test";
import { crc32 } from "../../../../lib/crc32.ts";
import { decodeRecords } from "../../../../lib/protocol/record.ts";
import { encodeBatches } from "../../../../lib/broker/tx/batch.ts";
import { judgeBatch, type LogView } from "../../../../lib/broker/tx/reconcile.ts";
import type { TxMessage } from "../../../../lib/broker/tx/state.ts";

const message = (partition: number, id: number, text: string): TxMessage => ({
  topic: "t",
  partition,
  id: BigInt(id),
  flag: id % 2,
  data: new TextEncoder().encode(text),
});

/** A log holding `bytes` from `start`, read in segments of `segmentBytes`. */
function view(bytes: Uint8Array, start = 0, segmentBytes = Infinity): LogView {
  return {
    startOffset: start,
    endOffset: start + bytes.length,
    read(offset, length) {
      const segmentEnd = start + (Math.floor((offset - start) / segmentBytes) + 1) * segmentBytes;
      const end = Math.min(offset + length, segmentEnd, start + bytes.length);
      return bytes.slice(offset - start, end - start);
    },
  };
}

const concat = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((part) => [...part]));

describe("batches", () => {
  test("one batch per partition, in first-appearance order, of MetaQ records back to back", () => {
    const batches = encodeBatches([message(1, 1, "a"), message(0, 2, "bb"), message(1, 3, "ccc")]);
    expect(batches.map((batch) => [batch.partition, batch.records, batch.bytes.length])).toEqual([
      [1, 2, 20 + 1 + 20 + 3],
      [0, 1, 20 + 2],
    ]);
    const decoded = decodeRecords(batches[0].bytes);
    expect(decoded.map((record) => [record.id, record.flag])).toEqual([[1n, 1], [3n, 1]]);
    expect(batches[0].checksum).toBe(crc32(batches[0].bytes));
  });
});

describe("judging a committed batch against its partition log", () => {
  const [batch] = encodeBatches([message(0, 7, "one"), message(0, 8, "two")]);
  const other = encodeBatches([message(0, 9, "plain-record")])[0].bytes;
  const prefix = encodeBatches([message(0, 1, "earlier")])[0].bytes;
  const at = prefix.length;

  test("the whole batch at its offset is present, even with records after it", () => {
    expect(judgeBatch(batch.bytes, at, view(concat(prefix, batch.bytes)))).toBe("present");
    expect(judgeBatch(batch.bytes, at, view(concat(prefix, batch.bytes, other)))).toBe("present");
  });

  test("a log ending exactly at the offset gets the batch appended there", () => {
    expect(judgeBatch(batch.bytes, at, view(prefix))).toBe("appendHere");
  });

  test("a log ending inside the batch after any prefix of it is a torn append", () => {
    for (let cut = 1; cut < batch.bytes.length; cut++) {
      const log = view(concat(prefix, batch.bytes.subarray(0, cut)));
      expect(judgeBatch(batch.bytes, at, log), `cut=${cut}`).toBe("tornHere");
    }
  });

  test("other records at the offset, or a log ending before it, mean the batch must go to the end", () => {
    expect(judgeBatch(batch.bytes, at, view(concat(prefix, other)))).toBe("relocate");
    expect(judgeBatch(batch.bytes, at, view(concat(prefix, other.subarray(0, 10))))).toBe(
      "relocate",
    );
    expect(judgeBatch(batch.bytes, at + 50, view(prefix))).toBe("relocate");
    const damaged = concat(prefix, batch.bytes);
    damaged[damaged.length - 1] ^= 1;
    expect(judgeBatch(batch.bytes, at, view(damaged))).toBe("relocate");
  });

  test("a batch can never span segments, so bytes across a segment end are not the batch", () => {
    const log = view(concat(prefix, batch.bytes), 0, at + 10);
    expect(judgeBatch(batch.bytes, at, log)).toBe("relocate");
  });

  test("an offset below the log start (retention removed it) is taken as present", () => {
    expect(judgeBatch(batch.bytes, 0, view(other, 4096))).toBe("belowStart");
  });
});

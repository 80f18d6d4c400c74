import { expect, test } from "bun:test";
import {
  decodeRecordChunks,
  decodeRecords,
  encodeRecord,
  walkRecordChunks,
  walkRecords,
} from "../../../lib/protocol/record.ts";
import { concatBytes } from "../../../lib/bytes.ts";
import { ascii, text } from "../../support/bytes.ts";

test("walkRecords counts complete records and stops at a partial one, at every cut", () => {
  const records = ["hello", "", "a longer payload"].map((text, index) =>
    encodeRecord({ id: BigInt(index + 1), flag: 0, data: ascii(text) })
  );
  const body = concatBytes(records);
  const ends = [0, 25, 45, 81];
  for (let cut = 0; cut <= body.length; cut++) {
    const walk = walkRecords(body.subarray(0, cut), 1024);
    const complete = ends.filter((end) => end > 0 && end <= cut).length;
    expect(walk, `cut=${cut}`).toEqual({ records: complete, bytes: ends[complete] });
  }
});

test("walkRecords hands each record's position and data length to the visitor, without copying", () => {
  const body = concatBytes([
    encodeRecord({ id: 7n, flag: 0, data: ascii("abc") }),
    encodeRecord({ id: 8n, flag: 0, data: ascii("de") }),
  ]);
  const seen: [number, number][] = [];
  walkRecords(body, 1024, (position, length) => seen.push([position, length]));
  expect(seen).toEqual([[0, 3], [23, 2]]);
});

test("walkRecords refuses a length above the limit, as MetaQ's iterator does", () => {
  const body = encodeRecord({ id: 1n, flag: 0, data: new Uint8Array(100) });
  expect(() => walkRecords(body, 99)).toThrow("invalid length 100");
});

/** `bytes` cut at `cuts` (ascending) into pieces, some of them empty. */
function cutAt(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const edges = [0, ...cuts, bytes.length];
  return edges.slice(1).map((end, index) => bytes.subarray(edges[index], end));
}

test("walking records kept in pieces finds what walking them joined finds, at every pair of cuts", () => {
  const records = ["hello", "", "a longer payload", "x"].map((text, index) =>
    encodeRecord({ id: BigInt(index + 1), flag: index, data: ascii(text) })
  );
  const whole = concatBytes(records);
  const expected = decodeRecords(whole, 1000);
  // Every body a reply can end with: the whole records and a partial last one.
  for (const end of [whole.length, whole.length - 1, 30]) {
    const body = whole.subarray(0, end);
    const wanted = expected.filter((record) => record.offset - 1000 + 20 + record.length <= end);
    for (let first = 0; first <= end; first++) {
      for (let second = first; second <= end; second += 3) {
        const pieces = cutAt(body, [first, second]);
        const walk = walkRecordChunks(pieces, 1024);
        expect(walk, `end=${end} cuts=${first},${second}`).toEqual(walkRecords(body, 1024));
        const decoded = decodeRecordChunks(pieces, 1000, 1024);
        expect(
          decoded.map((record) => ({ ...record, data: [...record.data] })),
          `end=${end} cuts=${first},${second}`,
        ).toEqual(wanted.map((record) => ({ ...record, data: [...record.data] })));
      }
    }
  }
});

test("a record inside one piece is a view of that piece; only a straddling one is copied", () => {
  const first = encodeRecord({ id: 1n, flag: 0, data: ascii("inside") });
  const second = encodeRecord({ id: 2n, flag: 0, data: ascii("across") });
  const whole = concatBytes([first, second]);
  const pieces = cutAt(whole, [first.length + 10]);
  const [inside, across] = decodeRecordChunks(pieces);
  expect(inside.data.buffer).toBe(pieces[0].buffer);
  expect(text(across.data)).toBe("across");
  expect(across.data.buffer).not.toBe(pieces[0].buffer);
  expect(across.data.buffer).not.toBe(pieces[1].buffer);
});

test("a damaged length is reported at its position in the whole, even when the header straddles", () => {
  const good = encodeRecord({ id: 1n, flag: 0, data: ascii("ok") });
  const bad = encodeRecord({ id: 2n, flag: 0, data: new Uint8Array(100) });
  const pieces = cutAt(concatBytes([good, bad]), [good.length + 2]);
  expect(() => walkRecordChunks(pieces, 99)).toThrow(`at byte ${good.length}: invalid length 100`);
  expect(() => decodeRecordChunks(pieces, 500, 99)).toThrow(
    `record at offset ${500 + good.length}: invalid length 100`,
  );
});

test("a checksum that does not match is refused in a straddling record too", () => {
  const record = encodeRecord({ id: 1n, flag: 0, data: ascii("payload") });
  record[record.length - 1] ^= 1;
  const pieces = cutAt(record, [22]);
  expect(() => decodeRecordChunks(pieces)).toThrow("record at offset 0: checksum mismatch");
});

/**
 * The recovery table of lib/client/record_file.ts on bytes alone: what `scanRecords` keeps, and
 * whether what stops it is a torn tail or damage.
 */
import { describe, expect, test } from "bun:test";
import { scanRecords } from "../../../lib/client/record_file.ts";
import { encodeRecord } from "../../../lib/protocol/record.ts";

const DATA_BYTES_MAX = 1024;
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** Records with ids `firstId`, `firstId + 1`, ... as RecordFile writes them (flag 0). */
function records(bodies: readonly string[], firstId = 1n): Uint8Array[] {
  return bodies.map((body, index) =>
    encodeRecord({ id: firstId + BigInt(index), flag: 0, data: new TextEncoder().encode(body) })
  );
}

function join(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

describe("scanRecords", () => {
  test("reads back every record, and the counter goes on from the last id", () => {
    const bytes = join(...records(["one", "two", "three"], 7n));
    const scan = scanRecords(bytes, DATA_BYTES_MAX);
    expect(scan.bodies.map(text)).toEqual(["one", "two", "three"]);
    expect(scan).toMatchObject({ verdict: "clean", validBytes: bytes.length, lastId: 9n });
  });

  test("an empty file is clean and holds nothing", () => {
    expect(scanRecords(new Uint8Array(0), DATA_BYTES_MAX)).toEqual({
      bodies: [],
      validBytes: 0,
      lastId: 0n,
      verdict: "clean",
    });
  });

  test("a last record cut at any byte is a torn tail: the records before it are kept", () => {
    const [first, second, last] = records(["first", "second", "the last one"]);
    for (let cut = 0; cut < last.length; cut++) {
      const bytes = join(first, second, last.subarray(0, cut));
      const scan = scanRecords(bytes, DATA_BYTES_MAX);
      expect(scan.bodies.map(text), `cut=${cut}`).toEqual(["first", "second"]);
      expect(scan.validBytes, `cut=${cut}`).toBe(first.length + second.length);
      expect(scan.verdict, `cut=${cut}`).toBe(cut === 0 ? "clean" : "torn");
    }
  });

  test("garbage or zeros after the last record are a torn tail", () => {
    const good = join(...records(["a", "b"]));
    const tails = [
      new Uint8Array(4096),
      new Uint8Array(300).fill(0xab),
      new TextEncoder().encode('{"kind":"commit","entries":[["g","t",0,12]]}'),
    ];
    for (const tail of tails) {
      const scan = scanRecords(join(good, tail), DATA_BYTES_MAX);
      expect(scan.verdict).toBe("torn");
      expect(scan.validBytes).toBe(good.length);
      expect(scan.reason).toBeDefined();
    }
  });

  test("a bad byte in a middle record is damage, because valid records follow it", () => {
    const [first, middle, last] = records(["first", "middle", "last"]);
    const bytes = join(first, middle, last);
    bytes[first.length + middle.length - 2] ^= 0xff; // inside the middle record's data
    const scan = scanRecords(bytes, DATA_BYTES_MAX);
    expect(scan).toMatchObject({
      verdict: "damaged",
      validBytes: first.length,
      reason: "bad record checksum",
    });
    expect(scan.bodies.map(text)).toEqual(["first"]);
  });

  test("a record whose id does not grow, or with another flag, was not written here", () => {
    const [first] = records(["first"], 5n);
    const [stale] = records(["stale"], 5n);
    expect(scanRecords(join(first, stale), DATA_BYTES_MAX)).toMatchObject({
      verdict: "torn",
      validBytes: first.length,
      reason: "record id 5 is not above 5",
    });
    const flagged = encodeRecord({ id: 6n, flag: 1, data: new Uint8Array([1, 2, 3]) });
    expect(scanRecords(join(first, flagged), DATA_BYTES_MAX).reason).toBe("record flag 1 is not 0");
  });

  test("a length above the limit is invalid, on read as on write", () => {
    const big = records(["x".repeat(DATA_BYTES_MAX + 1)]);
    expect(scanRecords(join(...big), DATA_BYTES_MAX)).toMatchObject({
      verdict: "torn",
      validBytes: 0,
      reason: `record length ${DATA_BYTES_MAX + 1} outside 1 to ${DATA_BYTES_MAX}`,
    });
    expect(scanRecords(join(...big), DATA_BYTES_MAX + 1).verdict).toBe("clean");
  });
});

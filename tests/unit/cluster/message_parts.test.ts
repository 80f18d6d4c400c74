import { expect, test } from "bun:test";
import { concatBytes } from "../../../lib/bytes.ts";
import { crc32 } from "../../../lib/crc32.ts";
import {
  crc32ContinueParts,
  REMEMBERED_CRC_BYTES_MIN,
} from "../../../lib/cluster/referenced_crc.ts";
import {
  decodeEnvelope,
  encodeEnvelopeAfter,
  encodeEnvelopeParts,
} from "../../../lib/cluster/envelope.ts";
import {
  decodeMessage,
  encodeMessage,
  encodeMessageParts,
  ENTRY_REFERENCED_BYTES_MIN,
  type Message,
} from "../../../lib/cluster/messages.ts";

/** Bytes that differ from position to position (a shifted copy would not compare equal). */
function filled(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let index = 0; index < length; index++) bytes[index] = (index * 31 + seed) & 0xff;
  return bytes;
}

function append(entries: Uint8Array[]): Message {
  return {
    kind: "append",
    from: 1,
    to: 3,
    term: 9,
    prev: { offset: 4096, epoch: 8 },
    entries,
    markers: [{ epoch: 9, startOffset: 4096, voters: [1, 2, 3] }],
    commit: { offset: 4000, epoch: 8 },
    leaderStartOffset: 0,
    reset: false,
  };
}

const LARGE = ENTRY_REFERENCED_BYTES_MIN;
const CASES: [string, Uint8Array[]][] = [
  ["no entries", []],
  ["small entries only", [filled(100, 1), filled(LARGE - 1, 2)]],
  ["one large entry", [filled(LARGE, 3)]],
  ["large entries between small ones", [
    filled(20, 4),
    filled(LARGE + 7, 5),
    filled(33, 6),
    filled(3 * LARGE, 7),
    filled(LARGE, 8),
  ]],
];

for (const [name, entries] of CASES) {
  test(`an append in parts is byte for byte the whole frame: ${name}`, () => {
    const message = append(entries);
    const whole = encodeMessage(0, message);
    const parts = encodeMessageParts(0, message, 11);
    const joined = concatBytes(parts);
    expect(joined.subarray(11)).toEqual(whole);
    // Large entries travel as the caller's buffers, not as copies.
    const large = entries.filter((entry) => entry.length >= LARGE);
    expect(parts.filter((part) => large.includes(part)).length).toBe(large.length);
    const decoded = decodeMessage(joined.subarray(11));
    expect(decoded.ok && decoded.message).toEqual(message);
  });
}

test("an envelope in parts equals the envelope encoded whole, and decodes to the message", () => {
  const message = append([filled(10, 9), filled(2 * LARGE, 10)]);
  const envelope = { kind: "raft" as const, group: "orders-3", message };
  const parts = encodeEnvelopeParts(envelope, 8);
  expect(parts.length).toBe(2); // headers and the small entry, then the large one
  const joined = concatBytes(parts);
  expect(joined).toEqual(encodeEnvelopeAfter(envelope, 8));
  expect(decodeEnvelope(joined.subarray(8))).toEqual(envelope);
});

test("a damaged referenced entry fails the body checksum", () => {
  const large = filled(LARGE, 11);
  const parts = encodeMessageParts(0, append([large]), 0);
  const joined = concatBytes(parts);
  joined[joined.length - 5] ^= 0x40;
  const decoded = decodeMessage(joined);
  expect(decoded.ok).toBe(false);
});

test("a large entry sent to two followers decodes for each; its CRC, remembered, is joined to each frame", () => {
  const large = filled(REMEMBERED_CRC_BYTES_MIN + 5, 12);
  for (const to of [2, 3]) {
    const message = { ...append([filled(7, 13), large]), to };
    const joined = concatBytes(encodeMessageParts(0, message, 0));
    expect(joined).toEqual(encodeMessage(0, message));
    const decoded = decodeMessage(joined);
    expect(decoded.ok && decoded.message).toEqual(message);
  }
  // The remembered CRC over parts agrees with hashing the bytes themselves.
  const prefix = filled(33, 14);
  expect(crc32ContinueParts([large, prefix, large], crc32(prefix))).toBe(
    crc32(concatBytes([prefix, large, prefix, large])),
  );
});

test("an entry changed after its CRC was remembered fails the receiver's check, never passes", () => {
  const large = filled(REMEMBERED_CRC_BYTES_MIN, 15);
  encodeMessageParts(0, append([large]), 0); // remembers the entry's CRC
  large[100] ^= 0x01; // breaks the contract: referenced parts must not change until sent
  const joined = concatBytes(encodeMessageParts(0, append([large]), 0));
  const decoded = decodeMessage(joined);
  expect(decoded.ok || decoded.reason).toBe("body checksum mismatch");
});

test("bodyVerified skips only the body's CRC: a damaged header is still refused", () => {
  const message = append([filled(LARGE, 16)]);
  const joined = concatBytes(encodeMessageParts(0, message, 0));
  const verified = decodeMessage(joined, { bodyVerified: true });
  expect(verified.ok && verified.message).toEqual(message);
  const damagedHeader = joined.slice();
  damagedHeader[20] ^= 0x01; // the sender's id
  const refused = decodeMessage(damagedHeader, { bodyVerified: true });
  expect(refused.ok || refused.reason).toBe("header checksum mismatch");
});

/**
 * Property-based tests (fast-check) of the wire codec and the record codec: what the encoder
 * writes the parser reads back, whatever the values and however the bytes are split; random
 * and mutated bytes never make the parser throw, hang or buffer past its limits; records
 * survive encoding and any damage to them is caught by the checksum. Runs are seeded and
 * bounded (numRuns), so a failure prints a seed that replays it.
 */
import { expect, test } from "bun:test";
import fc from "fast-check";
import { metaqChecksum } from "../../../lib/crc32.ts";
import type { Command } from "../../../lib/protocol/commands.ts";
import {
  encodeExtension,
  encodeGet,
  encodeOffset,
  encodePut,
  encodeResult,
  encodeStats,
  encodeTransaction,
  encodeValue,
  encodeVersion,
} from "../../../lib/protocol/encoder.ts";
import { type ExtensionSpec, Parser } from "../../../lib/protocol/parser.ts";
import { decodeRecords, encodeRecord, RECORD_HEADER_BYTES } from "../../../lib/protocol/record.ts";
import { concatBytes } from "../../../lib/bytes.ts";
import { withoutChunks } from "../../support/commands.ts";

const BODY_BYTES_MAX = 4096;
const LINE_BYTES_MAX = 512;
const extensions = new Map<string, ExtensionSpec>([
  ["auth", { args: 2 }],
  ["blob", { args: 1, bodyLengthArg: 0 }],
]);
const newParser = () =>
  new Parser({ bodyBytesMax: BODY_BYTES_MAX, lineBytesMax: LINE_BYTES_MAX, extensions });
const RUNS = { numRuns: 300 };

const name = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}$/);
const int32 = fc.integer({ min: -2147483648, max: 2147483647 });
const body = fc.uint8Array({ maxLength: 300 });

/** One request and the command the parser must return for it. */
const request: fc.Arbitrary<{ wire: Uint8Array; command: Command }> = fc.oneof(
  fc.record({ topic: name, partition: int32, flag: int32, opaque: int32, body }).map((r) => ({
    wire: encodePut({ ...r, checksum: metaqChecksum(r.body) }),
    command: {
      kind: "put",
      topic: r.topic,
      partition: r.partition,
      flag: r.flag,
      checksum: metaqChecksum(r.body),
      txKey: undefined,
      opaque: r.opaque,
      body: r.body,
    } as Command,
  })),
  fc.record({
    topic: name,
    group: name,
    partition: int32,
    offset: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    maxSize: int32,
    opaque: int32,
  }).map((r) => ({
    wire: encodeGet(r),
    command: { kind: "get", ...r, offsetIsLongMax: false } as Command,
  })),
  fc.record({
    topic: name,
    group: name,
    partition: int32,
    offset: fc.integer({ min: 0, max: 2 ** 40 }),
    opaque: int32,
  }).map((r) => ({ wire: encodeOffset(r), command: { kind: "offset", ...r } as Command })),
  fc.record({ item: name, opaque: int32 }).map((r) => ({
    wire: encodeStats(r.item, r.opaque),
    command: { kind: "stats", item: r.item, opaque: r.opaque } as Command,
  })),
  int32.map((opaque) => ({
    wire: encodeVersion(opaque),
    command: { kind: "version", opaque } as Command,
  })),
  fc.record({ session: name, counter: fc.nat(), opaque: int32 }).map((r) => ({
    wire: encodeTransaction({
      txKey: `TX:${r.session}:${r.counter}`,
      sessionId: r.session,
      type: "BEGIN",
      opaque: r.opaque,
    }),
    command: {
      kind: "transaction",
      txKey: {
        kind: "local",
        sessionId: r.session,
        counter: r.counter,
        text: `TX:${r.session}:${r.counter}`,
      },
      sessionId: r.session,
      type: "BEGIN",
      timeout: 0,
      opaque: r.opaque,
    } as Command,
  })),
  fc.record({ user: name, token: name, opaque: int32 }).map((r) => ({
    wire: encodeExtension("auth", [r.user, r.token], r.opaque),
    command: {
      kind: "extension",
      verb: "auth",
      args: [r.user, r.token],
      opaque: r.opaque,
      body: new Uint8Array(0),
    } as Command,
  })),
  fc.record({ code: fc.constantFrom(200, 301, 401, 403, 404, 500), text: body, opaque: int32 })
    .map((r) => ({
      wire: encodeResult(r.code, r.text, r.opaque),
      command: { kind: "result", code: r.code, opaque: r.opaque, body: r.text } as Command,
    })),
  fc.record({ bytes: body, opaque: int32 }).map((r) => ({
    wire: encodeValue(r.bytes, r.opaque),
    command: { kind: "value", opaque: r.opaque, body: r.bytes } as Command,
  })),
);

/** Feeds `wire` to a fresh parser in pieces cut at `cuts`. */
function parseInPieces(wire: Uint8Array, cuts: number[]) {
  const parser = newParser();
  const commands: Command[] = [];
  let error: Error | undefined;
  let from = 0;
  for (
    const cut of [...cuts.map((c) => c % (wire.length + 1)).sort((a, b) => a - b), wire.length]
  ) {
    const result = parser.push(wire.slice(from, Math.max(from, cut)));
    commands.push(...result.commands);
    error ??= result.error;
    from = Math.max(from, cut);
  }
  return { commands, error, parser };
}

/** Commands with bodies as plain arrays, so equal bytes compare equal whatever their buffer. */
function plain(commands: Command[]) {
  return commands.map(withoutChunks).map((command) =>
    "body" in command ? { ...command, body: [...command.body] } : command
  );
}

test("every encoded request sequence decodes back to the same commands, at any split", () => {
  fc.assert(
    fc.property(
      fc.array(request, { minLength: 1, maxLength: 12 }),
      fc.array(fc.nat(), { maxLength: 6 }),
      (requests, cuts) => {
        const wire = concatBytes(requests.map((r) => r.wire));
        const { commands, error } = parseInPieces(wire, cuts);
        expect(error).toBeUndefined();
        expect(plain(commands)).toEqual(plain(requests.map((r) => r.command)));
      },
    ),
    RUNS,
  );
});

test("random bytes never make the parser throw, and what it holds stays within its limits", () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 700 }), { minLength: 1, maxLength: 8 }),
      (chunks) => {
        const parser = newParser();
        for (const chunk of chunks) {
          const result = parser.push(chunk); // must not throw
          if (result.error) {
            expect(parser.push(new Uint8Array([1])).error).toBe(result.error); // stays failed
            return;
          }
          // A partial line never exceeds the line limit; a partial body never exceeds its limit.
          expect(parser.bufferedBytes).toBeLessThanOrEqual(LINE_BYTES_MAX + BODY_BYTES_MAX + 700);
        }
      },
    ),
    { numRuns: 1000 },
  );
});

test("a mutated valid stream decodes a prefix of the original commands or stops with an error", () => {
  fc.assert(
    fc.property(
      fc.array(request, { minLength: 1, maxLength: 8 }),
      fc.array(fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), {
        minLength: 1,
        maxLength: 4,
      }),
      (requests, mutations) => {
        const wire = concatBytes(requests.map((r) => r.wire));
        const firstMutation = Math.min(...mutations.map((m) => m.at % wire.length));
        for (const { at, byte } of mutations) wire[at % wire.length] = byte;
        const { commands } = parseInPieces(wire, []);
        // Every command that ends before the first changed byte is decoded exactly.
        let end = 0;
        const intact = requests.filter((r) => (end += r.wire.length) <= firstMutation);
        expect(plain(commands.slice(0, intact.length))).toEqual(
          plain(intact.map((r) => r.command)),
        );
      },
    ),
    RUNS,
  );
});

test("a header longer than the line limit is refused, one byte shorter is read", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 3 }), (extra) => {
      const pad = (length: number) => `stats ${"x".repeat(length - 10)} 1\r\n`; // length bytes
      const fits = newParser().push(new TextEncoder().encode(pad(LINE_BYTES_MAX)));
      expect(fits.error).toBeUndefined();
      expect(fits.commands.length).toBe(1);
      const tooLong = newParser().push(new TextEncoder().encode(pad(LINE_BYTES_MAX + extra)));
      expect(tooLong.error?.message).toContain(`longer than ${LINE_BYTES_MAX}`);
    }),
    { numRuns: 3 },
  );
});

test("records survive encoding, and any single changed data byte fails the checksum", () => {
  const record = fc.record({
    id: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    flag: int32,
    data: fc.uint8Array({ maxLength: 512 }),
  });
  fc.assert(
    fc.property(fc.array(record, { minLength: 1, maxLength: 10 }), fc.nat(), (records, at) => {
      const bytes = concatBytes(records.map((r) => encodeRecord(r)));
      const decoded = decodeRecords(bytes, 0);
      expect(decoded.map((r) => ({ id: r.id, flag: r.flag, data: [...r.data] }))).toEqual(
        records.map((r) => ({ id: r.id, flag: r.flag, data: [...r.data] })),
      );
      // Flip one bit of one record's data: decoding must throw, never return other bytes.
      const target = decoded[at % decoded.length];
      if (target.data.length === 0) return;
      const position = target.offset + RECORD_HEADER_BYTES + (at % target.data.length);
      bytes[position] ^= 1 << (at % 8);
      expect(() => decodeRecords(bytes, 0)).toThrow(/checksum mismatch/);
    }),
    RUNS,
  );
});

test("any prefix of encoded records decodes to the complete records it holds", () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 64 }), { minLength: 1, maxLength: 8 }),
      fc.nat(),
      (datas, cutSeed) => {
        const bytes = concatBytes(
          datas.map((data, i) => encodeRecord({ id: BigInt(i), flag: 0, data })),
        );
        const cut = cutSeed % (bytes.length + 1);
        const decoded = decodeRecords(bytes.subarray(0, cut), 0);
        let end = 0;
        const whole = datas.filter((data) => (end += RECORD_HEADER_BYTES + data.length) <= cut);
        expect(decoded.map((r) => [...r.data])).toEqual(whole.map((data) => [...data]));
      },
    ),
    RUNS,
  );
});

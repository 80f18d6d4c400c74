import { expect, test } from "bun:test";
import type { Command } from "../../../lib/protocol/commands.ts";
import {
  encodeExtension,
  encodeGet,
  encodePut,
  encodeResult,
  encodeStats,
  encodeTransaction,
  encodeValue,
} from "../../../lib/protocol/encoder.ts";
import { type ExtensionSpec, Parser } from "../../../lib/protocol/parser.ts";
import { ascii, concat, text } from "../../support/bytes.ts";
import { withoutChunks } from "../../support/commands.ts";

const extensions = new Map<string, ExtensionSpec>([["join", { args: 2 }], ["blob", {
  args: 1,
  bodyLengthArg: 0,
}]]);
const newParser = (bodyBytesMax = 1024) => new Parser({ bodyBytesMax, extensions });

function parseAll(wire: Uint8Array, parser = newParser()) {
  return parser.push(wire);
}

/** Normalises commands so bodies compare as text. */
function plain(commands: Command[]) {
  return commands.map(withoutChunks).map((command) =>
    "body" in command ? { ...command, body: text(command.body) } : command
  );
}

const SAMPLE = concat(
  ascii("put test 0 5 0 907060870 -2147483648\r\nhello"),
  ascii("put test 0 5 0 8\r\nhello"),
  ascii("put test 1 5 0 907060870 TX:10.0.0.5-1362000000000-1:1 10\r\nhello"),
  ascii("get test g1 0 0 1048576 12\r\n"),
  ascii("offset test g1 0 25 13\r\n"),
  ascii("stats  -5\r\n"),
  ascii("stats offsets 6\r\n"),
  ascii("stats\r\n"),
  ascii("version\r\n"),
  ascii("version 77\r\n"),
  ascii("transaction TX:10.0.0.5-1362000000000-1:1 10.0.0.5-1362000000000-1 BEGIN 9\r\n"),
  ascii("transaction XID:1:0A0b:cc:q-1 s END 30 q-1 11\r\n"),
  ascii("result 200 14 -2147483648\r\n4194308098 0 0"),
  ascii("value 3 4\r\nabc"),
  ascii("join g1 t1 99\r\n"),
  ascii("blob 4 100\r\nwxyz"),
  ascii("sync test 0 5 0 4194308098 907060870 7\r\nhello"),
  ascii("quit\r\n"),
);

test("parser decodes every MetaQ command form", () => {
  const { commands, error } = parseAll(SAMPLE);
  expect(error).toBeUndefined();
  expect(plain(commands)).toEqual([
    {
      kind: "put",
      topic: "test",
      partition: 0,
      flag: 0,
      checksum: 907060870,
      txKey: undefined,
      opaque: -2147483648,
      body: "hello",
    },
    {
      kind: "put",
      topic: "test",
      partition: 0,
      flag: 0,
      checksum: -1,
      txKey: undefined,
      opaque: 8,
      body: "hello",
    },
    {
      kind: "put",
      topic: "test",
      partition: 1,
      flag: 0,
      checksum: 907060870,
      txKey: {
        kind: "local",
        sessionId: "10.0.0.5-1362000000000-1",
        counter: 1,
        text: "TX:10.0.0.5-1362000000000-1:1",
      },
      opaque: 10,
      body: "hello",
    },
    {
      kind: "get",
      topic: "test",
      group: "g1",
      partition: 0,
      offset: 0,
      offsetIsLongMax: false,
      maxSize: 1048576,
      opaque: 12,
    },
    { kind: "offset", topic: "test", group: "g1", partition: 0, offset: 25, opaque: 13 },
    { kind: "stats", item: "", opaque: -5 },
    { kind: "stats", item: "offsets", opaque: 6 },
    { kind: "stats", item: undefined, opaque: 2147483647 },
    { kind: "version", opaque: 2147483647 },
    { kind: "version", opaque: 77 },
    {
      kind: "transaction",
      txKey: {
        kind: "local",
        sessionId: "10.0.0.5-1362000000000-1",
        counter: 1,
        text: "TX:10.0.0.5-1362000000000-1:1",
      },
      sessionId: "10.0.0.5-1362000000000-1",
      type: "BEGIN",
      timeout: 0,
      opaque: 9,
    },
    {
      kind: "transaction",
      txKey: {
        kind: "xa",
        formatId: 1,
        globalId: "0a0b",
        branchQualifier: "cc",
        uniqueQualifier: "q-1",
        text: "XID:1:0a0b:cc:q-1",
      },
      sessionId: "s",
      type: "END",
      timeout: 30,
      uniqueQualifier: "q-1",
      opaque: 11,
    },
    { kind: "result", code: 200, opaque: -2147483648, body: "4194308098 0 0" },
    { kind: "value", opaque: 4, body: "abc" },
    { kind: "extension", verb: "join", args: ["g1", "t1"], opaque: 99, body: "" },
    { kind: "extension", verb: "blob", args: ["4"], opaque: 100, body: "wxyz" },
    {
      kind: "sync",
      topic: "test",
      partition: 0,
      flag: 0,
      messageId: 4194308098n,
      checksum: 907060870,
      opaque: 7,
      body: "hello",
    },
    { kind: "quit" },
  ]);
});

test("parser survives a split at every byte boundary", () => {
  const expected = plain(parseAll(SAMPLE).commands);
  for (let cut = 0; cut <= SAMPLE.length; cut++) {
    const parser = newParser();
    const first = parser.push(SAMPLE.subarray(0, cut));
    const second = parser.push(SAMPLE.subarray(cut));
    expect(first.error ?? second.error, `cut=${cut}`).toBeUndefined();
    expect(plain([...first.commands, ...second.commands]), `cut=${cut}`).toEqual(expected);
  }
});

test("parser survives byte-at-a-time input", () => {
  const parser = newParser();
  const commands: Command[] = [];
  for (let i = 0; i < SAMPLE.length; i++) {
    commands.push(...parser.push(SAMPLE.subarray(i, i + 1)).commands);
  }
  expect(plain(commands)).toEqual(plain(parseAll(SAMPLE).commands));
  expect(parser.bufferedBytes).toBe(0);
});

test("the 7th put token is a checksum when it starts with a digit or '-', else a transaction key", () => {
  const [withSum] = parseAll(ascii("put t 0 1 0 -1 5\r\nx")).commands;
  expect(withSum).toMatchObject({ checksum: -1, txKey: undefined });
  const [withKey] = parseAll(ascii("put t 0 1 0 XID:7:ab:cd:host 5\r\nx")).commands;
  expect(withKey).toMatchObject({
    checksum: -1,
    txKey: { kind: "xa", formatId: 7, text: "XID:7:ab:cd:host" },
  });
});

test("Long.MAX_VALUE offsets are recognised exactly", () => {
  const [get] = parseAll(ascii("get t g 0 9223372036854775807 100 1\r\n")).commands;
  expect(get).toMatchObject({ offsetIsLongMax: true });
  const [other] = parseAll(ascii("get t g 0 9223372036854775806 100 1\r\n")).commands;
  expect(other).toMatchObject({ offsetIsLongMax: false });
});

test("trailing spaces are dropped but doubled spaces make empty tokens", () => {
  expect(parseAll(ascii("version 5 \r\n")).commands).toEqual([{ kind: "version", opaque: 5 }]);
  expect(parseAll(ascii("get t  0 0 10 1\r\n")).commands).toMatchObject([{
    group: "",
    partition: 0,
    maxSize: 10,
  }]);
  expect(parseAll(ascii("get t  g 0 0 10 1\r\n")).error).toBeDefined(); // the empty token shifts the rest
});

test("dispatch follows MetaQ's first-character table", () => {
  expect(parseAll(ascii("vxyz 3\r\n")).commands).toEqual([{ kind: "version", opaque: 3 }]);
  expect(parseAll(ascii("qwerty\r\n")).commands).toEqual([{ kind: "quit" }]);
  for (
    const bad of [
      "pu t 0 1 0 1\r\nx",
      "gett t g 0 0 1 1\r\n",
      "sink t 0 1 0 1 1\r\nx",
      "hello\r\n",
      "\r\n",
      " get t g 0 0 1 1\r\n",
    ]
  ) {
    expect(parseAll(ascii(bad)).error, bad).toBeDefined();
  }
});

test("malformed numbers, tokens and keys are decode errors", () => {
  for (
    const bad of [
      "put t 0 -1 0 1\r\n",
      "put t 0 1 0\r\nx",
      "put t 0 1 0 1 2 3 4\r\nx",
      "put t x 1 0 1\r\nx",
      "put t 0 1 0 1 2147483648\r\nx",
      "get t g 0 zero 10 1\r\n",
      "get t g 0 99999999999999999999 10 1\r\n",
      "offset t g 0\r\n",
      "transaction TX:a:b:c s BEGIN 1\r\n",
      "transaction TX:s:1 s begin 1\r\n",
      "transaction XID:1:abc:cd:q s BEGIN 1\r\n",
      "transaction XID:1:zz:cd:q s BEGIN 1\r\n",
      "transaction KEY s BEGIN 1\r\n",
      "transaction TX:s:1 s BEGIN 1 2 3 4\r\n",
      "put t 0 1 0 +5 1\r\nx",
      "result 200 -3 1\r\n",
      "join g1 1\r\n",
    ]
  ) {
    expect(parseAll(ascii(bad)).error, bad).toBeDefined();
  }
});

test("after a decode error the parser yields the earlier commands and refuses more input", () => {
  const parser = newParser();
  const result = parser.push(ascii("version 1\r\nbogus\r\nversion 2\r\n"));
  expect(result.commands).toEqual([{ kind: "version", opaque: 1 }]);
  expect(result.error?.message).toContain("unknown command");
  expect(parser.push(ascii("version 3\r\n"))).toMatchObject({ commands: [], error: result.error });
});

test("an oversized put is emitted without its body, which is skipped as it streams", () => {
  const parser = newParser(16);
  const body = new Uint8Array(1000).fill(0x41);
  const wire = concat(ascii("put t 0 1000 0 -1 5\r\n"), body, ascii("version 6\r\n"));
  const commands: Command[] = [];
  for (let at = 0; at < wire.length; at += 37) {
    commands.push(...parser.push(wire.subarray(at, at + 37)).commands);
  }
  expect(commands).toEqual([
    {
      kind: "put",
      topic: "t",
      partition: 0,
      flag: 0,
      checksum: -1,
      txKey: undefined,
      opaque: 5,
      body: new Uint8Array(0),
      oversizedBytes: 1000,
    },
    { kind: "version", opaque: 6 },
  ]);
  expect(parser.bufferedBytes).toBeLessThan(64);
});

test("a header line without CRLF longer than the limit is an error, not unbounded buffering", () => {
  const parser = new Parser({ bodyBytesMax: 10, lineBytesMax: 100 });
  expect(parser.push(ascii("g".repeat(60))).error).toBeUndefined();
  expect(parser.push(ascii("g".repeat(60))).error?.message).toContain("longer than 100");
});

test("a large put body arriving in many chunks is joined once", () => {
  const parser = newParser(4 * 1024 * 1024);
  const body = new Uint8Array(3 * 1024 * 1024).map((_, i) => i & 0xff);
  const wire = encodePut({ topic: "t", partition: 0, flag: 0, checksum: 1, opaque: 9, body });
  let result: Command[] = [];
  for (let at = 0; at < wire.length; at += 65536) {
    result = result.concat(parser.push(wire.subarray(at, at + 65536)).commands);
  }
  expect(result.length).toBe(1);
  expect((result[0] as { body: Uint8Array }).body).toEqual(body);
});

test("a value body arriving in pieces is handed over as those pieces, not copied", () => {
  const parser = newParser(4 * 1024 * 1024);
  const body = new Uint8Array(200_000).map((_, i) => (i * 7) & 0xff);
  // The last piece also carries the next reply, which must still be decoded.
  const wire = concat(encodeValue(body, 9), encodeResult(200, ascii("ok"), 10));
  const pieces = [0, 65536, 131072, 196608].map((at, index, starts) =>
    wire.slice(at, starts[index + 1] ?? wire.length)
  );
  const commands = pieces.flatMap((piece) => parser.push(piece).commands);
  expect(commands.map((command) => command.kind)).toEqual(["value", "result"]);
  const value = commands[0] as Extract<Command, { kind: "value" }>;
  const header = wire.indexOf(10) + 1; // the body starts after the header's LF
  expect(value.chunks!.map((chunk) => chunk.length)).toEqual([
    65536 - header,
    65536,
    65536,
    body.length + header - 3 * 65536,
  ]);
  value.chunks!.forEach((chunk, index) => expect(chunk.buffer).toBe(pieces[index].buffer));
  expect(value.body).toEqual(body);
  expect(value.body).toBe(value.body); // joined once, on first use
  expect(text((commands[1] as { body: Uint8Array }).body)).toBe("ok");
  expect(parser.bufferedBytes).toBe(0);
});

test("random garbage never throws and never yields a command it cannot describe", () => {
  let seed = 12345;
  const next = () => (seed = (seed * 1664525 + 1013904223) >>> 0);
  const alphabet = ascii("pgtrvsoqu0123456789-: \r\nXIDTX:ab");
  for (let round = 0; round < 2000; round++) {
    const parser = newParser(64);
    const bytes = new Uint8Array(next() % 200).map(
      () => (next() % 4 === 0 ? next() & 0xff : alphabet[next() % alphabet.length]),
    );
    const result = parser.push(bytes);
    for (const command of result.commands) expect(typeof command.kind).toBe("string");
  }
});

test("encoders produce what the parser reads back", () => {
  const wire = concat(
    encodePut({ topic: "t", partition: 2, flag: 1, checksum: 42, opaque: -9, body: ascii("abc") }),
    encodePut({ topic: "t", partition: 2, flag: 0, opaque: 3, body: ascii("x"), legacy: true }),
    encodePut({
      topic: "t",
      partition: 0,
      flag: 0,
      checksum: -1,
      txKey: "TX:s:4",
      opaque: 4,
      body: ascii("y"),
    }),
    encodeGet({
      topic: "t",
      group: "g",
      partition: 1,
      offset: 9223372036854775807n,
      maxSize: 10,
      opaque: 5,
    }),
    encodeStats(undefined, 6),
    encodeTransaction({
      txKey: "XID:1:ab:cd:q",
      sessionId: "s",
      type: "BEGIN",
      timeout: 30,
      uniqueQualifier: "q",
      opaque: 7,
    }),
    encodeTransaction({ txKey: "TX:s:1", sessionId: "s", type: "COMMIT_ONE_PHASE", opaque: 8 }),
    encodeResult(200, "ok", 10),
    encodeResult(404, undefined, 11),
    encodeExtension("blob", [2], 12, ascii("zz")),
  );
  expect(text(wire.subarray(0, 25))).toBe("put t 2 3 1 42 -9\r\nabcput");
  const { commands, error } = parseAll(wire);
  expect(error).toBeUndefined();
  expect(commands.map((c) => c.kind)).toEqual([
    "put",
    "put",
    "put",
    "get",
    "stats",
    "transaction",
    "transaction",
    "result",
    "result",
    "extension",
  ]);
  expect(commands[4]).toEqual({ kind: "stats", item: "", opaque: 6 });
  expect(commands[5]).toMatchObject({ timeout: 30, uniqueQualifier: "q" });
  expect(text(encodeResult(404, undefined, 11))).toBe("result 404 0 11\r\n");
});

test("the fast put path and the general path decode every put line identically", () => {
  let seed = 99;
  const next = () => (seed = (seed * 1664525 + 1013904223) >>> 0);
  const pick = <T>(items: T[]) => items[next() % items.length];
  const numbers = [
    "0",
    "7",
    "-1",
    "+5",
    "007",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "12345678901",
    "1x",
    "",
    "-",
  ];
  for (let round = 0; round < 5000; round++) {
    const tokens = [
      "put",
      pick(["t", "orders", "t.x-1", "tøpic", ""]),
      pick(numbers),
      pick(["0", "3", "1", "-2", "x"]),
      pick(numbers),
    ];
    const extra = next() % 4;
    if (extra >= 1) tokens.push(pick([...numbers, "TX:s:1", "XID:1:ab:cd:q", "abc"]));
    if (extra >= 2) tokens.push(pick(numbers));
    if (extra >= 3) tokens.push(pick(numbers));
    const separator = next() % 20 === 0 ? "  " : " ";
    const wire = concat(
      ascii(tokens.join(separator) + (next() % 15 === 0 ? " " : "") + "\r\n"),
      ascii("abc"),
    );
    const fast = new Parser({ bodyBytesMax: 2, extensions }).push(wire);
    const slow = new Parser({ bodyBytesMax: 2, extensions, fastPaths: false }).push(wire);
    expect(plain(fast.commands), new TextDecoder().decode(wire)).toEqual(plain(slow.commands));
    expect(fast.error === undefined, new TextDecoder().decode(wire)).toBe(slow.error === undefined);
  }
});

test("the fast result path and the general path decode every result line identically", () => {
  let seed = 7;
  const next = () => (seed = (seed * 1664525 + 1013904223) >>> 0);
  const pick = <T>(items: T[]) => items[next() % items.length];
  const numbers = ["0", "200", "-1", "+5", "3", "2147483648", "x", "", "14", "007"];
  for (let round = 0; round < 3000; round++) {
    const tokens = [
      pick(["result", "results", "resul"]),
      pick(numbers),
      pick(numbers),
      pick(numbers),
    ];
    if (next() % 5 === 0) tokens.push(pick(numbers));
    const separator = next() % 20 === 0 ? "  " : " ";
    const wire = concat(ascii(tokens.join(separator) + "\r\n"), ascii("abcdefghijklmn"));
    const fast = new Parser({ bodyBytesMax: 10, extensions }).push(wire);
    const slow = new Parser({ bodyBytesMax: 10, extensions, fastPaths: false }).push(wire);
    expect(plain(fast.commands), new TextDecoder().decode(wire)).toEqual(plain(slow.commands));
    expect(fast.error === undefined, new TextDecoder().decode(wire)).toBe(slow.error === undefined);
  }
});

test("an extension verb may carry its own body limit, above or below the parser's", () => {
  const specs = new Map<string, ExtensionSpec>([
    ["uput", { args: 1, bodyLengthArg: 0, bodyBytesMax: 4096 }],
    ["tiny", { args: 1, bodyLengthArg: 0, bodyBytesMax: 2 }],
  ]);
  const parse = (wire: Uint8Array) =>
    new Parser({ bodyBytesMax: 1024, extensions: specs }).push(wire);
  const body = new Uint8Array(4096).fill(7);
  const taken = parse(encodeExtension("uput", [body.length], 9, body));
  expect(taken.error).toBeUndefined();
  expect(taken.commands).toEqual([{
    kind: "extension",
    verb: "uput",
    args: ["4096"],
    opaque: 9,
    body,
  }]);
  const over = parse(encodeExtension("uput", [4097], 9, new Uint8Array(4097)));
  expect(over.error?.message).toBe("body of 4097 bytes exceeds 4096");
  expect(parse(encodeExtension("tiny", [3], 1, new Uint8Array(3))).error?.message).toBe(
    "body of 3 bytes exceeds 2",
  );
});

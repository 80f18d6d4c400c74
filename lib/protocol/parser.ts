/**
 * @module Incremental decoder: bytes in, commands out, for any split of the input. Decodes as
 * MetaQ's decoder does (MetamorphosisWireFormatType): the header is UTF-8 split on single
 * spaces with trailing empty tokens dropped, dispatch is on the first character of the first
 * token, and any decode failure ends the stream (the caller closes the connection without a
 * reply). Unlike MetaQ, a header longer than COMMAND_LINE_BYTES_MAX is a decode failure, and a
 * body longer than `bodyBytesMax` is skipped as it streams in rather than buffered: the put is
 * still emitted (with `oversizedBytes`) so the broker can refuse it with a reply.
 */
import { COMMAND_LINE_BYTES_MAX } from "../limits.ts";
import {
  type Command,
  DEFAULT_OPAQUE,
  type ExtensionCommand,
  LONG_MAX_TEXT,
  type PutCommand,
  TRANSACTION_TYPES,
  type TransactionType,
  type TxKey,
} from "./commands.ts";
import { concatBytes } from "../bytes.ts";

/** How an extension verb is framed: its argument count and where its body length is. */
export interface ExtensionSpec {
  /** Arguments between the verb and the opaque. */
  readonly args: number;
  /** Index (in args) of the body length, when the command carries a body. */
  readonly bodyLengthArg?: number;
  /** Longest body of this verb, when it differs from the parser's (an uplink's batch). */
  readonly bodyBytesMax?: number;
}

export interface ParserOptions {
  /** Longest body buffered; longer put bodies are skipped, other commands fail. */
  readonly bodyBytesMax: number;
  /** Extension verbs accepted besides MetaQ's (never starting with p g t r v s o q). */
  readonly extensions?: ReadonlyMap<string, ExtensionSpec>;
  /** Longest header line, CRLF included. */
  readonly lineBytesMax?: number;
  /** Decode common puts straight from bytes (default); tests turn it off to compare paths. */
  readonly fastPaths?: boolean;
}

export class DecodeError extends Error {
  override readonly name = "DecodeError";
}

/** What the parser returns: commands, then possibly the reason decoding stopped. */
export interface ParseResult {
  readonly commands: Command[];
  readonly error?: DecodeError;
}

type Pending =
  | {
    readonly kind: "body";
    readonly length: number;
    readonly build: (body: Uint8Array) => Command;
    /** Builds from the pieces the body arrived in, when the command can keep them apart. */
    readonly buildFromChunks?: (chunks: Uint8Array[]) => Command;
  }
  | { readonly kind: "skip"; remaining: number };

const CR = 13;
const LF = 10;
const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder("utf-8");
const RESULT_BYTES = [0x72, 0x65, 0x73, 0x75, 0x6c, 0x74]; // "result"

export class Parser {
  readonly #options: ParserOptions;
  readonly #lineBytesMax: number;
  readonly #fastPaths: boolean;
  #buffer: Uint8Array = EMPTY;
  #pending: Pending | undefined;
  #failed: DecodeError | undefined;
  /** Where to resume looking for CRLF in #buffer, so a long partial line is scanned once. */
  #scanFrom = 0;
  #parts: Uint8Array[] = [];
  #partsBytes = 0;
  /** Token boundaries of the fast put path, reused for every line. */
  readonly #bounds = new Int32Array(12);
  #lastTopicBytes: Uint8Array = EMPTY;
  #lastTopic = "";

  constructor(options: ParserOptions) {
    this.#options = options;
    this.#fastPaths = options.fastPaths ?? true;
    this.#lineBytesMax = options.lineBytesMax ?? COMMAND_LINE_BYTES_MAX;
  }

  /** Bytes held waiting for the rest of a frame. */
  get bufferedBytes(): number {
    return this.#buffer.length + this.#partsBytes;
  }

  /** Whether a frame has begun and not ended (a partial line, body or skipped body). */
  get inFrame(): boolean {
    return this.#pending !== undefined || this.#buffer.length > 0 || this.#partsBytes > 0;
  }

  /** Feeds bytes; returns every command completed by them. After an error, returns it again. */
  push(chunk: Uint8Array): ParseResult {
    if (this.#failed) return { commands: [], error: this.#failed };
    const commands: Command[] = [];
    if (this.#waitingForBody(chunk, commands)) return { commands };
    let position = 0;
    try {
      while (true) {
        if (this.#pending) {
          position = this.#continuePending(position, commands);
          if (this.#pending) break;
          continue;
        }
        const lineEnd = this.#findLineEnd(position);
        if (lineEnd < 0) {
          if (this.#buffer.length - position > this.#lineBytesMax) {
            throw new DecodeError(`command line longer than ${this.#lineBytesMax} bytes`);
          }
          break;
        }
        if (lineEnd + 2 - position > this.#lineBytesMax) {
          throw new DecodeError(`command line longer than ${this.#lineBytesMax} bytes`);
        }
        const lineStart = position;
        position = lineEnd + 2;
        this.#scanFrom = 0;
        if (
          this.#buffer[lineStart] === 0x70 && this.#fastPaths &&
          this.#tryFastPut(lineStart, lineEnd, commands)
        ) {
          continue;
        }
        const command = this.#decodeLine(utf8.decode(this.#buffer.subarray(lineStart, lineEnd)));
        if (command) commands.push(command);
      }
    } catch (error) {
      this.#failed = error instanceof DecodeError ? error : new DecodeError(String(error));
      this.#buffer = EMPTY;
      return { commands, error: this.#failed };
    }
    this.#buffer = position >= this.#buffer.length ? EMPTY : this.#buffer.subarray(position);
    this.#scanFrom = Math.max(0, this.#scanFrom - position);
    return { commands };
  }

  /**
   * While a large body is still incomplete, keeps chunks in a list instead of copying the
   * buffer on every push. When it is complete, a command that takes its body in pieces (a
   * `value`) gets them as they are, and `commands` gets it; any other body is joined once.
   */
  #waitingForBody(chunk: Uint8Array, commands: Command[]): boolean {
    const pending = this.#pending;
    if (pending?.kind === "body") {
      this.#parts.push(chunk);
      this.#partsBytes += chunk.length;
      const held = this.#buffer.length + this.#partsBytes;
      if (held < pending.length) return true;
      if (pending.buildFromChunks) {
        const pieces = this.#buffer.length > 0 ? [this.#buffer, ...this.#parts] : this.#parts;
        // The last piece may hold the start of the next frame: that part stays buffered.
        const last = pieces[pieces.length - 1];
        const beyond = held - pending.length;
        pieces[pieces.length - 1] = last.subarray(0, last.length - beyond);
        this.#pending = undefined;
        this.#parts = [];
        this.#partsBytes = 0;
        this.#buffer = beyond > 0 ? last.subarray(last.length - beyond) : EMPTY;
        commands.push(pending.buildFromChunks(pieces));
        return false;
      }
      this.#buffer = concatBytes([this.#buffer, ...this.#parts]);
      this.#parts = [];
      this.#partsBytes = 0;
      return false;
    }
    this.#buffer = this.#buffer.length === 0 ? chunk : concatBytes([this.#buffer, chunk]);
    return false;
  }

  /** Completes a body or skip in progress; returns the position after what it consumed. */
  #continuePending(position: number, commands: Command[]): number {
    const pending = this.#pending!;
    const available = this.#buffer.length - position;
    if (pending.kind === "skip") {
      const skipped = Math.min(available, pending.remaining);
      pending.remaining -= skipped;
      if (pending.remaining === 0) this.#pending = undefined;
      return position + skipped;
    }
    if (available < pending.length) return position;
    commands.push(pending.build(this.#buffer.subarray(position, position + pending.length)));
    this.#pending = undefined;
    return position + pending.length;
  }

  #findLineEnd(position: number): number {
    const buffer = this.#buffer;
    let from = Math.max(position, this.#scanFrom);
    while (true) {
      const cr = buffer.indexOf(CR, from);
      if (cr < 0 || cr + 1 >= buffer.length) {
        this.#scanFrom = cr < 0 ? buffer.length : cr;
        return -1;
      }
      if (buffer[cr + 1] === LF) return cr;
      from = cr + 1;
    }
  }

  /** Decodes one header line; returns a command, or undefined when a body must follow. */
  #decodeLine(line: string): Command | undefined {
    const tokens = splitTokens(line);
    if (tokens.length === 0 || tokens[0].length === 0) throw new DecodeError("blank command line");
    const verb = tokens[0];
    const extension = this.#options.extensions?.get(verb);
    if (extension) return this.#decodeExtension(tokens, extension);
    switch (verb.charCodeAt(0)) {
      case 0x70: // p
        expectVerb(verb, "put");
        return this.#decodePut(tokens);
      case 0x67: // g
        expectVerb(verb, "get");
        return decodeGet(tokens);
      case 0x74: // t
        expectVerb(verb, "transaction");
        return decodeTransaction(tokens);
      case 0x72: // r
        expectVerb(verb, "result");
        return this.#decodeResult(tokens);
      case 0x76: // v: exactly "value" is a reply; anything else is a version request
        if (verb === "value") return this.#decodeValue(tokens);
        return { kind: "version", opaque: tokens.length >= 2 ? int32(tokens[1]) : DEFAULT_OPAQUE };
      case 0x73: // s
        if (verb === "stats") {
          return {
            kind: "stats",
            item: tokens.length >= 2 ? tokens[1] : undefined,
            opaque: tokens.length >= 3 ? int32(tokens[2]) : DEFAULT_OPAQUE,
          };
        }
        expectVerb(verb, "sync");
        return this.#decodeSync(tokens);
      case 0x6f: // o
        expectVerb(verb, "offset");
        return decodeOffset(tokens);
      case 0x71: // q: anything starting with q
        return { kind: "quit" };
      default:
        throw new DecodeError(`unknown command '${verb.slice(0, 32)}'`);
    }
  }

  /**
   * The common put (`put <topic> <partition> <length> <flag> [<checksum>] <opaque>`, ASCII,
   * single spaces, plain numbers) decoded straight from bytes, without building a string per
   * token. Returns false for anything else, which the general path then decodes (with the
   * same results and the same errors).
   */
  #tryFastPut(start: number, end: number, commands: Command[]): boolean {
    const buffer = this.#buffer;
    if (
      end - start < 4 || buffer[start + 1] !== 0x75 || buffer[start + 2] !== 0x74 ||
      buffer[start + 3] !== 0x20
    ) {
      return false;
    }
    const bounds = this.#bounds;
    let count = 0;
    let tokenStart = start + 4;
    for (let at = tokenStart; at <= end; at++) {
      if (at < end && buffer[at] !== 0x20) {
        if (buffer[at] >= 0x80) return false;
        continue;
      }
      if (at === tokenStart || count === 6) return false; // empty token, or more than 6 after put
      bounds[2 * count] = tokenStart;
      bounds[2 * count + 1] = at;
      count += 1;
      tokenStart = at + 1;
    }
    if (count !== 5 && count !== 6) return false;
    const partition = this.#intAt(bounds[2], bounds[3]);
    const length = this.#intAt(bounds[4], bounds[5]);
    const flag = this.#intAt(bounds[6], bounds[7]);
    const opaque = this.#intAt(bounds[2 * count - 2], bounds[2 * count - 1]);
    let checksum = -1;
    if (count === 6) {
      const first = buffer[bounds[8]];
      if (!((first >= 0x30 && first <= 0x39) || first === 0x2d)) return false; // a transaction key
      checksum = this.#intAt(bounds[8], bounds[9]);
    }
    if (Number.isNaN(partition + length + flag + opaque + checksum)) return false;
    if (length < 0 || length > this.#options.bodyBytesMax) return false;
    const topic = this.#topicAt(bounds[0], bounds[1]);
    const build = (body: Uint8Array): PutCommand => ({
      kind: "put",
      topic,
      partition,
      flag,
      checksum,
      txKey: undefined,
      opaque,
      body,
    });
    const command = this.#bodyOrNow(length, build);
    if (command) commands.push(command);
    return true;
  }

  /**
   * `result <code> <length> <opaque>` (the reply a client reads most) straight from bytes;
   * false for anything else, which the general path then decodes.
   */
  #tryFastResult(start: number, end: number, commands: Command[]): boolean {
    const buffer = this.#buffer;
    if (end - start < 7 || buffer[start + 6] !== 0x20) return false;
    for (let i = 0; i < 6; i++) if (buffer[start + i] !== RESULT_BYTES[i]) return false;
    const bounds = this.#bounds;
    let count = 0;
    let tokenStart = start + 7;
    for (let at = tokenStart; at <= end; at++) {
      if (at < end && buffer[at] !== 0x20) continue;
      if (at === tokenStart || count === 3) return false;
      bounds[2 * count] = tokenStart;
      bounds[2 * count + 1] = at;
      count += 1;
      tokenStart = at + 1;
    }
    if (count !== 3) return false;
    const code = this.#intAt(bounds[0], bounds[1]);
    const length = this.#intAt(bounds[2], bounds[3]);
    const opaque = this.#intAt(bounds[4], bounds[5]);
    if (Number.isNaN(code + length + opaque) || length < 0 || length > this.#options.bodyBytesMax) {
      return false;
    }
    const command = this.#bodyOrNow(length, (body) => ({ kind: "result", code, opaque, body }));
    if (command) commands.push(command);
    return true;
  }

  /** A plain decimal int32 in bytes [start, end), or NaN when it is anything else. */
  #intAt(start: number, end: number): number {
    const buffer = this.#buffer;
    let at = start;
    const negative = buffer[at] === 0x2d;
    if (negative || buffer[at] === 0x2b) at += 1;
    if (at === end || end - at > 10) return NaN;
    let value = 0;
    for (; at < end; at++) {
      const digit = buffer[at] - 0x30;
      if (digit < 0 || digit > 9) return NaN;
      value = value * 10 + digit;
    }
    if (negative) value = -value;
    return value < -2147483648 || value > 2147483647 ? NaN : value;
  }

  /** The topic string for bytes [start, end), reusing the previous one when the bytes match. */
  #topicAt(start: number, end: number): string {
    const buffer = this.#buffer;
    const last = this.#lastTopicBytes;
    let same = last.length === end - start;
    for (let i = 0; same && i < last.length; i++) same = last[i] === buffer[start + i];
    if (!same) {
      this.#lastTopicBytes = buffer.slice(start, end);
      this.#lastTopic = utf8.decode(this.#lastTopicBytes);
    }
    return this.#lastTopic;
  }

  #decodePut(tokens: string[]): Command | undefined {
    const length = int32(token(tokens, 3));
    if (length < 0) throw new DecodeError(`negative body length ${length}`);
    if (tokens.length < 6 || tokens.length > 8) {
      throw new DecodeError(`put with ${tokens.length} tokens`);
    }
    const topic = tokens[1];
    const partition = int32(tokens[2]);
    const flag = int32(tokens[4]);
    let checksum = -1;
    let txKey: TxKey | undefined;
    if (tokens.length === 7) {
      const slot = tokens[5];
      const first = slot.charCodeAt(0);
      if ((first >= 0x30 && first <= 0x39) || first === 0x2d) checksum = int32(slot);
      else txKey = parseTxKey(slot);
    } else if (tokens.length === 8) {
      checksum = int32(tokens[5]);
      txKey = parseTxKey(tokens[6]);
    }
    const opaque = int32(tokens[tokens.length - 1]);
    const build = (body: Uint8Array): PutCommand => ({
      kind: "put",
      topic,
      partition,
      flag,
      checksum,
      txKey,
      opaque,
      body,
    });
    if (length > this.#options.bodyBytesMax) {
      this.#pending = { kind: "skip", remaining: length };
      return { ...build(EMPTY), oversizedBytes: length };
    }
    return this.#bodyOrNow(length, build);
  }

  #decodeSync(tokens: string[]): Command | undefined {
    const length = int32(token(tokens, 3));
    if (length < 0) throw new DecodeError(`negative body length ${length}`);
    if (tokens.length !== 7 && tokens.length !== 8) {
      throw new DecodeError(`sync with ${tokens.length} tokens`);
    }
    this.#checkBodyLength(length);
    const topic = tokens[1];
    const partition = int32(tokens[2]);
    const flag = int32(tokens[4]);
    const messageId = int64Exact(tokens[5]);
    const checksum = tokens.length === 8 ? int32(tokens[6]) : -1;
    const opaque = int32(tokens[tokens.length - 1]);
    return this.#bodyOrNow(
      length,
      (body) => ({ kind: "sync", topic, partition, flag, messageId, checksum, opaque, body }),
    );
  }

  #decodeResult(tokens: string[]): Command | undefined {
    const code = int32(token(tokens, 1));
    const length = int32(token(tokens, 2));
    const opaque = int32(token(tokens, 3));
    if (length < 0) throw new DecodeError(`negative body length ${length}`);
    this.#checkBodyLength(length);
    return this.#bodyOrNow(length, (body) => ({ kind: "result", code, opaque, body }));
  }

  #decodeValue(tokens: string[]): Command | undefined {
    const length = int32(token(tokens, 1));
    const opaque = int32(token(tokens, 2));
    if (length < 0) throw new DecodeError(`negative body length ${length}`);
    this.#checkBodyLength(length);
    return this.#bodyOrNow(
      length,
      (body) => ({ kind: "value", opaque, body }),
      (chunks) => valueFromChunks(opaque, chunks, length),
    );
  }

  #decodeExtension(tokens: string[], spec: ExtensionSpec): Command | undefined {
    if (tokens.length !== spec.args + 2) {
      throw new DecodeError(`${tokens[0]} expects ${spec.args} arguments and an opaque`);
    }
    const args = tokens.slice(1, 1 + spec.args);
    const opaque = int32(tokens[tokens.length - 1]);
    const build = (body: Uint8Array): ExtensionCommand => ({
      kind: "extension",
      verb: tokens[0],
      args,
      opaque,
      body,
    });
    if (spec.bodyLengthArg === undefined) return build(EMPTY);
    const length = int32(args[spec.bodyLengthArg]);
    if (length < 0) throw new DecodeError(`negative body length ${length}`);
    this.#checkBodyLength(length, spec.bodyBytesMax);
    return this.#bodyOrNow(length, build);
  }

  #checkBodyLength(length: number, bodyBytesMax = this.#options.bodyBytesMax): void {
    if (length > bodyBytesMax) {
      throw new DecodeError(`body of ${length} bytes exceeds ${bodyBytesMax}`);
    }
  }

  #bodyOrNow(
    length: number,
    build: (body: Uint8Array) => Command,
    buildFromChunks?: (chunks: Uint8Array[]) => Command,
  ): Command | undefined {
    if (length === 0) return build(EMPTY);
    this.#pending = { kind: "body", length, build, buildFromChunks };
    return undefined;
  }
}

/**
 * A `value` whose body arrived in pieces: a consumer walks `chunks` in place; `body` joins them
 * on first use, for callers that want one array.
 */
function valueFromChunks(opaque: number, chunks: Uint8Array[], length: number): Command {
  let joined: Uint8Array | undefined;
  return {
    kind: "value",
    opaque,
    chunks,
    get body() {
      return joined ??= concatBytes(chunks, length);
    },
  };
}

function decodeGet(tokens: string[]): Command {
  const offset = int64(token(tokens, 4));
  return {
    kind: "get",
    topic: tokens[1],
    group: token(tokens, 2),
    partition: int32(tokens[3]),
    offset: offset.value,
    offsetIsLongMax: offset.isLongMax,
    maxSize: int32(token(tokens, 5)),
    opaque: int32(token(tokens, 6)),
  };
}

function decodeOffset(tokens: string[]): Command {
  return {
    kind: "offset",
    topic: token(tokens, 1),
    group: token(tokens, 2),
    partition: int32(token(tokens, 3)),
    offset: int64(token(tokens, 4)).value,
    opaque: int32(token(tokens, 5)),
  };
}

function decodeTransaction(tokens: string[]): Command {
  const txKey = parseTxKey(token(tokens, 1));
  const sessionId = token(tokens, 2);
  const type = token(tokens, 3);
  if (!(TRANSACTION_TYPES as readonly string[]).includes(type)) {
    throw new DecodeError(`unknown transaction type '${type.slice(0, 32)}'`);
  }
  const base = { kind: "transaction" as const, txKey, sessionId, type: type as TransactionType };
  switch (tokens.length) {
    case 5:
      return { ...base, timeout: 0, opaque: int32(tokens[4]) };
    case 6:
      return /^\d+$/.test(tokens[4])
        ? { ...base, timeout: int32(tokens[4]), opaque: int32(tokens[5]) }
        : { ...base, timeout: 0, uniqueQualifier: tokens[4], opaque: int32(tokens[5]) };
    case 7:
      return {
        ...base,
        timeout: int32(tokens[4]),
        uniqueQualifier: tokens[5],
        opaque: int32(tokens[6]),
      };
    default:
      throw new DecodeError(`transaction with ${tokens.length} tokens`);
  }
}

/** Parses a transaction key as MetaQ's TransactionId.valueOf does, into its canonical text. */
export function parseTxKey(text: string): TxKey {
  if (text === "null") return { kind: "null", text: "null" };
  if (text.startsWith("XID:")) {
    const parts = text.split(":");
    if (parts.length !== 5) {
      throw new DecodeError(`invalid XA transaction key '${text.slice(0, 64)}'`);
    }
    const formatId = int32(parts[1]);
    const globalId = hexBytes(parts[2]);
    const branchQualifier = hexBytes(parts[3]);
    const uniqueQualifier = parts[4];
    return {
      kind: "xa",
      formatId,
      globalId,
      branchQualifier,
      uniqueQualifier,
      text: `XID:${formatId}:${globalId}:${branchQualifier}:${uniqueQualifier}`,
    };
  }
  if (text.startsWith("TX:")) {
    const parts = text.split(":");
    while (parts.length > 0 && parts[parts.length - 1] === "") parts.pop(); // Java drops trailing empties
    if (parts.length !== 3) {
      throw new DecodeError(`invalid local transaction key '${text.slice(0, 64)}'`);
    }
    const counter = int32(parts[2]);
    return { kind: "local", sessionId: parts[1], counter, text: `TX:${parts[1]}:${counter}` };
  }
  throw new DecodeError(`invalid transaction key '${text.slice(0, 64)}'`);
}

/** Java's Pattern.split(" "): single-space separators, trailing empty tokens dropped. */
function splitTokens(line: string): string[] {
  const tokens = line.split(" ");
  let end = tokens.length;
  while (end > 0 && tokens[end - 1] === "") end--;
  return end === tokens.length ? tokens : tokens.slice(0, end);
}

function token(tokens: string[], index: number): string {
  if (index >= tokens.length) throw new DecodeError(`${tokens[0]} with too few tokens`);
  return tokens[index];
}

function expectVerb(actual: string, expected: string): void {
  if (actual !== expected) {
    throw new DecodeError(`expected ${expected}, got '${actual.slice(0, 32)}'`);
  }
}

const INT_PATTERN = /^[+-]?\d+$/;

/** Java's Integer.parseInt: optional sign, decimal digits, 32-bit range. */
export function int32(text: string): number {
  if (!INT_PATTERN.test(text)) throw new DecodeError(`'${text.slice(0, 32)}' is not an integer`);
  const value = Number(text);
  if (value < -2147483648 || value > 2147483647) {
    throw new DecodeError(`'${text.slice(0, 32)}' is outside the 32-bit range`);
  }
  return value;
}

/** Java's Long.parseLong, as a number (exact below 2^53) plus whether it was Long.MAX_VALUE. */
export function int64(text: string): { value: number; isLongMax: boolean } {
  if (!INT_PATTERN.test(text)) throw new DecodeError(`'${text.slice(0, 32)}' is not an integer`);
  const digits = text.replace(/^[+-]/, "").replace(/^0+(?=\d)/, "");
  if (digits.length >= 19) {
    const big = BigInt(text);
    if (big < -9223372036854775808n || big > 9223372036854775807n) {
      throw new DecodeError(`'${text.slice(0, 32)}' is outside the 64-bit range`);
    }
    return { value: Number(big), isLongMax: big === BigInt(LONG_MAX_TEXT) };
  }
  return { value: Number(text), isLongMax: false };
}

/** Java's Long.parseLong as an exact bigint (message ids). */
export function int64Exact(text: string): bigint {
  if (!INT_PATTERN.test(text)) throw new DecodeError(`'${text.slice(0, 32)}' is not an integer`);
  const value = BigInt(text);
  if (value < -9223372036854775808n || value > 9223372036854775807n) {
    throw new DecodeError(`'${text.slice(0, 32)}' is outside the 64-bit range`);
  }
  return value;
}

function hexBytes(text: string): string {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) {
    throw new DecodeError(`'${text.slice(0, 32)}' is not hexadecimal bytes`);
  }
  return text.toLowerCase();
}

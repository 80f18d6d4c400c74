/**
 * @module Big-endian field writers and readers for the binary records metaq owns (the
 * transaction journal in `__tx-0`). `str` is a uint16 byte length and UTF-8; a reader throws
 * when a body is shorter than its fields say, so a damaged record never decodes silently.
 */
import { assert } from "../../assert.ts";

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** Appends big-endian fields to a growing buffer. */
export class FieldWriter {
  #buffer = new Uint8Array(256);
  #view = new DataView(this.#buffer.buffer);
  #length = 0;

  u8(value: number): this {
    this.#room(1).setUint8(this.#advance(1), value);
    return this;
  }
  u16(value: number): this {
    assert(Number.isInteger(value) && value >= 0 && value <= 0xffff);
    this.#room(2).setUint16(this.#advance(2), value);
    return this;
  }
  u32(value: number): this {
    assert(Number.isInteger(value) && value >= 0 && value <= 0xffffffff);
    this.#room(4).setUint32(this.#advance(4), value);
    return this;
  }
  i32(value: number): this {
    this.#room(4).setInt32(this.#advance(4), value);
    return this;
  }
  u64(value: number): this {
    assert(Number.isSafeInteger(value) && value >= 0, `u64 field ${value}`);
    this.#room(8).setBigUint64(this.#advance(8), BigInt(value));
    return this;
  }
  i64(value: bigint): this {
    this.#room(8).setBigInt64(this.#advance(8), value);
    return this;
  }
  str(value: string): this {
    const bytes = utf8Encoder.encode(value);
    return this.u16(bytes.length).bytes(bytes);
  }
  bytes(value: Uint8Array): this {
    this.#room(value.length);
    this.#buffer.set(value, this.#advance(value.length));
    return this;
  }
  finish(): Uint8Array {
    return this.#buffer.slice(0, this.#length);
  }
  #room(bytes: number): DataView {
    if (this.#length + bytes > this.#buffer.length) {
      const grown = new Uint8Array(Math.max(this.#buffer.length * 2, this.#length + bytes));
      grown.set(this.#buffer.subarray(0, this.#length));
      this.#buffer = grown;
      this.#view = new DataView(grown.buffer);
    }
    return this.#view;
  }
  #advance(bytes: number): number {
    const at = this.#length;
    this.#length += bytes;
    return at;
  }
}

/** Reads big-endian fields, throwing when the body is shorter than its fields say. */
export class FieldReader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  #at = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  u8(): number {
    return this.#view.getUint8(this.#take(1));
  }
  u16(): number {
    return this.#view.getUint16(this.#take(2));
  }
  u32(): number {
    return this.#view.getUint32(this.#take(4));
  }
  i32(): number {
    return this.#view.getInt32(this.#take(4));
  }
  u64(): number {
    const value = this.#view.getBigUint64(this.#take(8));
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`u64 ${value} too large`);
    return Number(value);
  }
  i64(): bigint {
    return this.#view.getBigInt64(this.#take(8));
  }
  str(): string {
    return utf8Decoder.decode(this.bytes(this.u16()));
  }
  bytes(length: number): Uint8Array {
    const at = this.#take(length);
    return this.#bytes.slice(at, at + length);
  }
  /** Like `bytes`, without a copy: a view into the record being read. */
  view(length: number): Uint8Array {
    const at = this.#take(length);
    return this.#bytes.subarray(at, at + length);
  }
  expectEnd(): void {
    if (this.#at !== this.#bytes.length) {
      throw new Error(`${this.#bytes.length - this.#at} bytes after the last field`);
    }
  }
  #take(bytes: number): number {
    if (this.#at + bytes > this.#bytes.length) throw new Error("body shorter than its fields");
    const at = this.#at;
    this.#at += bytes;
    return at;
  }
}

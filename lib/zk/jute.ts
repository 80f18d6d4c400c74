/**
 * @module Jute, ZooKeeper's record serialization: big-endian ints and longs, booleans as one
 * byte, strings and buffers as a 4-byte length then the bytes (length -1 for null), vectors as a
 * 4-byte count then the items. Pure: bytes in, values out. Knows no operations (protocol.ts).
 */

/** Grows as it is written; `bytes()` gives what was written. */
export class JuteWriter {
  #buffer = new Uint8Array(256);
  #view = new DataView(this.#buffer.buffer);
  #length = 0;

  int(value: number): this {
    this.#reserve(4).setInt32(this.#length, value);
    this.#length += 4;
    return this;
  }

  /** A long; ids and zxids exceed 2^53, so they travel as bigint. */
  long(value: bigint): this {
    this.#reserve(8).setBigInt64(this.#length, value);
    this.#length += 8;
    return this;
  }

  boolean(value: boolean): this {
    this.#reserve(1).setUint8(this.#length, value ? 1 : 0);
    this.#length += 1;
    return this;
  }

  /** A buffer; null is written as length -1 (what Java writes for a null byte[]). */
  buffer(value: Uint8Array | null): this {
    if (value === null) return this.int(-1);
    this.int(value.length);
    this.#reserve(value.length);
    this.#buffer.set(value, this.#length);
    this.#length += value.length;
    return this;
  }

  string(value: string): this {
    return this.buffer(new TextEncoder().encode(value));
  }

  strings(values: readonly string[]): this {
    this.int(values.length);
    for (const value of values) this.string(value);
    return this;
  }

  bytes(): Uint8Array {
    return this.#buffer.slice(0, this.#length);
  }

  #reserve(count: number): DataView {
    if (this.#length + count > this.#buffer.length) {
      const grown = new Uint8Array(Math.max(this.#buffer.length * 2, this.#length + count));
      grown.set(this.#buffer.subarray(0, this.#length));
      this.#buffer = grown;
      this.#view = new DataView(grown.buffer);
    }
    return this.#view;
  }
}

/** Thrown when a record is shorter than its fields say or a length is out of bounds. */
export class JuteError extends Error {
  override readonly name = "JuteError";
}

/** Reads fields in order from one record; every length is checked against what is left. */
export class JuteReader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  #at = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get remaining(): number {
    return this.#bytes.length - this.#at;
  }

  int(): number {
    this.#need(4);
    const value = this.#view.getInt32(this.#at);
    this.#at += 4;
    return value;
  }

  long(): bigint {
    this.#need(8);
    const value = this.#view.getBigInt64(this.#at);
    this.#at += 8;
    return value;
  }

  boolean(): boolean {
    this.#need(1);
    return this.#view.getUint8(this.#at++) !== 0;
  }

  buffer(): Uint8Array | null {
    const length = this.int();
    if (length === -1) return null;
    if (length < 0) throw new JuteError(`Cannot read buffer: negative length ${length}`);
    this.#need(length);
    const value = this.#bytes.slice(this.#at, this.#at + length);
    this.#at += length;
    return value;
  }

  string(): string {
    const bytes = this.buffer();
    return bytes === null ? "" : new TextDecoder().decode(bytes);
  }

  strings(): string[] {
    const count = this.int();
    if (count === -1) return [];
    // Each string takes at least its 4-byte length: a count beyond that is a damaged record.
    if (count < 0 || count * 4 > this.remaining) {
      throw new JuteError(`Cannot read vector: count ${count} with ${this.remaining} bytes left`);
    }
    const values: string[] = [];
    for (let index = 0; index < count; index++) values.push(this.string());
    return values;
  }

  #need(count: number): void {
    if (this.#at + count > this.#bytes.length) {
      throw new JuteError(
        `Cannot read ${count} bytes at ${this.#at}: record has ${this.#bytes.length}`,
      );
    }
  }
}

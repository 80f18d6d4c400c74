/**
 * @module Seeded randomness for the fault harness: xoshiro128** seeded through splitmix32, so a
 * run is replayed from one 32-bit seed. Never the language's global random. Streams are forked by
 * label, so adding draws to the workload does not shift the fault schedule and the other way round.
 */
import process from "node:process";
import { crc32 } from "../../lib/crc32.ts";

export class Random {
  readonly seed: number;
  #state: Uint32Array;

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new RangeError(`Cannot seed a Random with ${seed}: expected an integer in [0, 2^32)`);
    }
    this.seed = seed;
    let mix = seed >>> 0;
    const next = () => {
      // splitmix32: spreads a small seed over the whole state, never all zeros.
      mix = (mix + 0x9e3779b9) >>> 0;
      let z = mix;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#state = new Uint32Array([next(), next(), next(), next()]);
  }

  /** A fresh seed from the clock and the process id, for runs that were given none. */
  static freshSeed(): number {
    return (Date.now() ^ Math.imul(process.pid, 0x9e3779b1) ^
      Math.floor(performance.now() * 1000)) >>>
      0;
  }

  /** An independent stream whose seed depends on this seed and `label` only. */
  fork(label: string): Random {
    return new Random((crc32(new TextEncoder().encode(`${this.seed}/${label}`)) ^ this.seed) >>> 0);
  }

  /** A uniform 32-bit unsigned integer. */
  uint32(): number {
    const s = this.#state;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** A uniform number in [0, 1). */
  float(): number {
    return this.uint32() / 0x100000000;
  }

  /** A uniform integer in [min, max], both included. */
  int(min: number, max: number): number {
    if (!Number.isInteger(min) || !Number.isInteger(max) || max < min) {
      throw new RangeError(`Cannot draw an integer from [${min}, ${max}]`);
    }
    return min + Math.floor(this.float() * (max - min + 1));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError("Cannot pick from an empty list");
    return items[this.int(0, items.length - 1)];
  }

  /** A shuffled copy (Fisher-Yates). */
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }

  /** `length` random bytes. */
  bytes(length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = this.uint32() & 0xff;
    return out;
  }
}

function rotl(value: number, bits: number): number {
  return ((value << bits) | (value >>> (32 - bits))) >>> 0;
}

/**
 * @module A small seeded pseudo-random generator: xoshiro128** seeded through splitmix32.
 * Deterministic for a given seed on every runtime, so a simulator run can be replayed exactly.
 * For jitter and tests only: it is not a cryptographic generator and never reads entropy.
 */
import { assert } from "./assert.ts";

/** What cores need from a random source (election jitter); the Prng below implements it. */
export interface Random {
  /** A uniform integer in [minInclusive, maxExclusive). */
  int(minInclusive: number, maxExclusive: number): number;
}

const TWO_POW_32 = 0x1_0000_0000;

export class Prng implements Random {
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;

  /** `seed` is any integer; only its low 32 bits matter. */
  constructor(seed: number) {
    assert(Number.isInteger(seed), `PRNG seed must be an integer, got ${seed}`);
    // splitmix32 spreads a small seed over 128 bits of state, so seeds 1, 2, 3 start far apart.
    let mix = seed >>> 0;
    const next = (): number => {
      mix = (mix + 0x9e3779b9) >>> 0;
      let z = mix;
      z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
      z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
      return (z ^ (z >>> 15)) >>> 0;
    };
    this.#s0 = next();
    this.#s1 = next();
    this.#s2 = next();
    this.#s3 = next();
    // xoshiro must never start from the all-zero state: it would stay there forever.
    if ((this.#s0 | this.#s1 | this.#s2 | this.#s3) === 0) this.#s0 = 1;
  }

  /** The next 32 random bits as an unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotateLeft(Math.imul(this.#s1, 5), 7), 9) >>> 0;
    const shifted = this.#s1 << 9;
    this.#s2 ^= this.#s0;
    this.#s3 ^= this.#s1;
    this.#s1 ^= this.#s2;
    this.#s0 ^= this.#s3;
    this.#s2 ^= shifted;
    this.#s3 = rotateLeft(this.#s3, 11);
    return result;
  }

  /** A uniform float in [0, 1) with 32 bits of precision. */
  float(): number {
    return this.nextU32() / TWO_POW_32;
  }

  /** A uniform integer in [minInclusive, maxExclusive), without modulo bias. */
  int(minInclusive: number, maxExclusive: number): number {
    assert(Number.isInteger(minInclusive) && Number.isInteger(maxExclusive));
    const range = maxExclusive - minInclusive;
    assert(range > 0 && range <= TWO_POW_32, `PRNG range [${minInclusive}, ${maxExclusive})`);
    // Reject the top sliver of 2^32 that would make low values more likely.
    const limit = TWO_POW_32 - (TWO_POW_32 % range);
    for (let attempt = 0; attempt < 64; attempt++) {
      const value = this.nextU32();
      if (value < limit) return minInclusive + (value % range);
    }
    // 64 rejections in a row has probability below 2^-64; fall back rather than loop forever.
    return minInclusive + (this.nextU32() % range);
  }

  /** True with probability `probability` (0 gives never, 1 gives always). */
  chance(probability: number): boolean {
    assert(probability >= 0 && probability <= 1, `probability ${probability}`);
    return this.float() < probability;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    assert(items.length > 0, "Cannot pick from an empty array");
    return items[this.int(0, items.length)];
  }

  /** A new generator whose sequence depends only on this one's next draw. */
  fork(): Prng {
    return new Prng(this.nextU32());
  }
}

function rotateLeft(value: number, bits: number): number {
  return ((value << bits) | (value >>> (32 - bits))) >>> 0;
}

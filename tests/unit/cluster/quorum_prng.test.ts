import { describe, expect, test } from "bun:test";
import { hasQuorum, quorumSize, quorumValue } from "../../../lib/cluster/quorum.ts";
import { Prng } from "../../../lib/prng.ts";

describe("quorum", () => {
  test("a quorum is a strict majority", () => {
    expect([1, 2, 3, 4, 5].map(quorumSize)).toEqual([1, 2, 2, 3, 3]);
    expect(hasQuorum(2, 3)).toBe(true);
    expect(hasQuorum(1, 3)).toBe(false);
    expect(hasQuorum(2, 4)).toBe(false);
    expect(() => quorumSize(0)).toThrow();
    expect(() => quorumSize(10)).toThrow();
  });

  test("the quorum value is the highest one a majority has reached", () => {
    const numbers = (a: number, b: number) => a - b;
    expect(quorumValue([5, 9, 7], 3, numbers)).toBe(7);
    expect(quorumValue([5, 9], 3, numbers)).toBe(5);
    expect(quorumValue([9], 3, numbers)).toBeUndefined();
    expect(quorumValue([1, 8, 3, 9, 2], 5, numbers)).toBe(3);
    expect(quorumValue([8, 9], 5, numbers)).toBeUndefined();
  });
});

describe("Prng", () => {
  test("the same seed gives the same sequence; different seeds differ", () => {
    const a = new Prng(42);
    const b = new Prng(42);
    const c = new Prng(43);
    const draws = (prng: Prng) => Array.from({ length: 8 }, () => prng.nextU32());
    const first = draws(a);
    expect(draws(b)).toEqual(first);
    expect(draws(c)).not.toEqual(first);
  });

  test("the sequence is fixed across runtimes and versions", () => {
    // Replays of simulator seeds depend on these exact values.
    const prng = new Prng(1);
    expect(Array.from({ length: 4 }, () => prng.nextU32())).toEqual([
      393288148,
      2174103013,
      3814759091,
      2092745082,
    ]);
  });

  test("integers stay in range and cover it", () => {
    const prng = new Prng(7);
    const seen = new Set<number>();
    for (let draw = 0; draw < 2000; draw++) {
      const value = prng.int(3, 9);
      expect(value).toBeGreaterThanOrEqual(3);
      expect(value).toBeLessThan(9);
      seen.add(value);
    }
    expect(seen.size).toBe(6);
    expect(() => prng.int(5, 5)).toThrow();
  });

  test("floats lie in [0, 1) and chance honours its bounds", () => {
    const prng = new Prng(9);
    for (let draw = 0; draw < 1000; draw++) {
      const value = prng.float();
      expect(value >= 0 && value < 1).toBe(true);
    }
    expect(prng.chance(0)).toBe(false);
    expect(prng.chance(1)).toBe(true);
  });
});

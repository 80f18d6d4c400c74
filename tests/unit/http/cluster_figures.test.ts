import { expect, test } from "bun:test";
import {
  decodeFigures,
  encodeFigures,
  FIGURES_COUNT,
  type PartitionFigures,
} from "../../../lib/http/cluster_figures.ts";

const FIGURES: PartitionFigures = {
  timeMs: 81_250,
  startOffset: 4096,
  endOffset: 70_000,
  messages: 2300,
  bytes: 65_904,
  segments: 3,
  servedBytes: 12_000,
};

test("a leader's figures come back the same from the numbers it shares", () => {
  const shared = encodeFigures(FIGURES);
  expect(shared.length).toBe(FIGURES_COUNT);
  expect(decodeFigures(JSON.parse(JSON.stringify(shared)))).toEqual(FIGURES);
  // A later version may append figures; this one reads the ones it knows.
  expect(decodeFigures([...shared, 7, 8])).toEqual(FIGURES);
});

test("figures that are missing, short, negative or not numbers are ignored", () => {
  const shared = encodeFigures(FIGURES);
  const bad: (readonly unknown[] | undefined)[] = [
    undefined,
    [],
    shared.slice(0, FIGURES_COUNT - 1),
    [...shared.slice(0, 2), -1, ...shared.slice(3)],
    [...shared.slice(0, 2), "70000", ...shared.slice(3)],
    [...shared.slice(0, 2), null, ...shared.slice(3)],
    [...shared.slice(0, 2), Number.POSITIVE_INFINITY, ...shared.slice(3)],
  ];
  for (const values of bad) expect(decodeFigures(values), JSON.stringify(values)).toBeUndefined();
});

import { describe, expect, test } from "bun:test";
import {
  commonPosition,
  comparePositions,
  compareRecency,
  epochThrough,
  holdsPosition,
  type LogShape,
  MemoryRaftLog,
} from "../../../lib/cluster/raft_log.ts";
import { bytesOf, textOf } from "./harness.ts";

/** A log: base (0, 0); epoch 1 from 0 with 10 bytes; epochs 2 and 3 both at 10; 5 bytes of 3. */
function sample(): MemoryRaftLog {
  const log = new MemoryRaftLog();
  log.append({ kind: "marker", offset: 0, epoch: 1 });
  log.append({ kind: "entry", offset: 0, epoch: 1, bytes: bytesOf("aaaa") });
  log.append({ kind: "entry", offset: 4, epoch: 1, bytes: bytesOf("bbbbbb") });
  log.append({ kind: "marker", offset: 10, epoch: 2 });
  log.append({ kind: "marker", offset: 10, epoch: 3 });
  log.append({ kind: "entry", offset: 10, epoch: 3, bytes: bytesOf("ccccc") });
  return log;
}

describe("positions and epoch lists", () => {
  test("positions order by offset, then epoch; recency orders by epoch, then offset", () => {
    expect(comparePositions({ offset: 10, epoch: 2 }, { offset: 10, epoch: 3 })).toBe(-1);
    expect(comparePositions({ offset: 11, epoch: 1 }, { offset: 10, epoch: 3 })).toBe(1);
    expect(compareRecency({ offset: 5, epoch: 3 }, { offset: 500, epoch: 2 })).toBe(1);
    expect(compareRecency({ offset: 5, epoch: 3 }, { offset: 5, epoch: 3 })).toBe(0);
  });

  test("a log holds exactly the positions between its items", () => {
    const log = sample();
    const held = [[0, 0], [0, 1], [4, 1], [10, 1], [10, 2], [10, 3], [15, 3]];
    for (const [offset, epoch] of held) expect(holdsPosition(log, { offset, epoch })).toBe(true);
    const notHeld = [[4, 0], [4, 2], [11, 1], [16, 3], [15, 4], [0, 3]];
    for (const [offset, epoch] of notHeld) {
      expect(holdsPosition(log, { offset, epoch }), `${offset}@${epoch}`).toBe(false);
    }
  });

  test("the epoch through an offset counts the markers at that offset", () => {
    const log = sample();
    expect(epochThrough(log.epochs, 0)).toBe(1);
    expect(epochThrough(log.epochs, 9)).toBe(1);
    expect(epochThrough(log.epochs, 10)).toBe(3);
  });

  test("two logs part at the end of the shorter run of their largest common epoch", () => {
    const mine: LogShape = sample();
    // The other log wrote 20 bytes in epoch 1 and then epoch 4: it shares epoch 1 up to 10.
    const other = {
      epochs: [{ epoch: 0, startOffset: 0 }, { epoch: 1, startOffset: 0 }, {
        epoch: 4,
        startOffset: 20,
      }],
      endOffset: 30,
    };
    expect(commonPosition(mine, other)).toEqual({ offset: 10, epoch: 1 });
    // A shorter log of the same last epoch: common at its end.
    expect(commonPosition(mine, { epochs: mine.epochs, endOffset: 12 })).toEqual({
      offset: 12,
      epoch: 3,
    });
    // Nothing in common but an epoch the other never had: no common position.
    expect(commonPosition(mine, { epochs: [{ epoch: 7, startOffset: 40 }], endOffset: 50 }))
      .toBeUndefined();
  });
});

describe("MemoryRaftLog", () => {
  test("reads whole entries up to a byte budget, at least one", () => {
    const log = sample();
    expect(log.read(0, 4).map(textOf)).toEqual(["aaaa"]);
    expect(log.read(0, 9).map(textOf)).toEqual(["aaaa"]);
    expect(log.read(0, 10).map(textOf)).toEqual(["aaaa", "bbbbbb"]);
    expect(log.read(4, 1).map(textOf)).toEqual(["bbbbbb"]);
    expect(() => log.read(5, 10)).toThrow("not at an entry boundary");
  });

  test("truncation keeps the markers at or before the position", () => {
    const log = sample();
    log.truncate({ offset: 10, epoch: 2 });
    expect(log.endOffset).toBe(10);
    expect(log.epochs.map((pair) => pair.epoch)).toEqual([0, 1, 2]);
    expect(() => log.truncate({ offset: 7, epoch: 1 })).toThrow("inside an entry");
  });

  test("compaction makes the position the new base; reset empties the log", () => {
    const log = sample();
    log.compact({ offset: 4, epoch: 1 });
    expect(log.startOffset).toBe(4);
    expect(log.epochs).toEqual([
      { epoch: 1, startOffset: 4 },
      { epoch: 2, startOffset: 10 },
      { epoch: 3, startOffset: 10 },
    ]);
    expect(log.read(4, 100).map(textOf)).toEqual(["bbbbbb", "ccccc"]);
    log.reset({ offset: 100, epoch: 3 });
    expect([log.startOffset, log.endOffset]).toEqual([100, 100]);
    expect(log.epochs).toEqual([{ epoch: 3, startOffset: 100 }]);
  });

  test("an entry must belong to the current run and start at the end", () => {
    const log = sample();
    expect(() => log.append({ kind: "entry", offset: 15, epoch: 2, bytes: bytesOf("x") }))
      .toThrow("run");
    expect(() => log.append({ kind: "entry", offset: 14, epoch: 3, bytes: bytesOf("x") }))
      .toThrow("append at 14");
    expect(() => log.append({ kind: "marker", offset: 15, epoch: 3 })).toThrow("marker");
  });
});

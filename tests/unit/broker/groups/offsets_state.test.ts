/**
 * The committed-offsets table kept in `__meta-0`, and its snapshots, on records alone: a snapshot never changes what the
 * log means, a node that starts from any record at or below the latest snapshot (a compacted
 * log, or a follower reset to its leader's start) ends with the same table as one that applied
 * everything, and a snapshot that did not land where it was taken is ignored.
 */
import { expect, test } from "bun:test";
import {
  type OffsetsCommand as MetaCommand,
  OffsetsState,
} from "../../../../lib/broker/groups/offsets_state.ts";
import type { OffsetEntry } from "../../../../lib/protocol/group_wire.ts";
import { Prng } from "../../../../lib/prng.ts";

const encode = (command: MetaCommand) => new TextEncoder().encode(JSON.stringify(command));

/** Records laid out back to back, 100 bytes each: record i spans [i*100, i*100+100). */
const RECORD_BYTES = 100;

interface Built {
  readonly commands: MetaCommand[];
  /** Index of the latest snapshot record, or -1. */
  readonly lastSnapshot: number;
}

/** Commits and resets over a few keys, with snapshots taken at their own position. */
function history(seed: number, count: number): Built {
  const random = new Prng(seed);
  const commands: MetaCommand[] = [];
  let lastSnapshot = -1;
  for (let index = 0; index < count; index++) {
    if (index > 3 && random.int(0, 8) === 0) {
      const table = replay(commands, 0).entries();
      commands.push({ op: "snapshot", base: index * RECORD_BYTES, entries: table });
      lastSnapshot = index;
      continue;
    }
    if (random.int(0, 8) === 0) {
      // A deleted group's offsets (metaq groups delete).
      const group = `g${random.int(0, 3)}`;
      const keys = [0, 1, 2].map((partition) => ({ group, topic: "t", partition }));
      commands.push({ op: "remove", entries: keys });
      continue;
    }
    const entries: OffsetEntry[] = [];
    for (let n = random.int(1, 3); n > 0; n--) {
      entries.push({
        group: `g${random.int(0, 3)}`,
        topic: "t",
        partition: random.int(0, 3),
        offset: random.int(0, 50) * 10,
      });
    }
    commands.push({ op: random.int(0, 5) === 0 ? "reset" : "commit", entries });
  }
  return { commands, lastSnapshot };
}

/** Applies `commands` (record i at i*100) from record `fromIndex` on, into `state`. */
function replay(commands: readonly MetaCommand[], fromIndex: number, state?: OffsetsState) {
  const table = state ?? new OffsetsState();
  for (let index = fromIndex; index < commands.length; index++) {
    const offset = index * RECORD_BYTES;
    table.apply(encode(commands[index]), offset, offset + RECORD_BYTES);
  }
  return table;
}

function withoutSnapshots(commands: readonly MetaCommand[]): MetaCommand[] {
  return commands.map((command) =>
    command.op === "snapshot" ? { op: "commit", entries: [] } : command
  );
}

test("a snapshot never changes what the log means", () => {
  for (let seed = 1; seed <= 300; seed++) {
    const { commands } = history(seed, 60);
    const plain = replay(withoutSnapshots(commands), 0).entries();
    expect({ seed, table: replay(commands, 0).entries() }).toEqual({ seed, table: plain });
  }
});

test("starting from any record at or below the latest snapshot gives the same table", () => {
  let checked = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const { commands, lastSnapshot } = history(seed, 60);
    if (lastSnapshot < 0) continue;
    const expected = replay(commands, 0).entries();
    const base = (commands[lastSnapshot] as { base: number }).base / RECORD_BYTES;
    for (let start = 0; start <= base; start++) {
      expect({ seed, start, table: replay(commands, start).entries() })
        .toEqual({ seed, start, table: expected });
      checked++;
    }
  }
  expect(checked).toBeGreaterThan(1000);
});

test("a follower reset to a compacted start forgets what it held and ends like the leader", () => {
  for (let seed = 1; seed <= 200; seed++) {
    const { commands, lastSnapshot } = history(seed, 60);
    if (lastSnapshot < 0) continue;
    const base = (commands[lastSnapshot] as { base: number }).base / RECORD_BYTES;
    // A stale table: an early prefix, plus a key nobody else ever had (from a lost history).
    const stale = replay(commands.slice(0, 3), 0);
    stale.apply(
      encode({ op: "reset", entries: [{ group: "lost", topic: "t", partition: 9, offset: 1 }] }),
      3 * RECORD_BYTES,
      4 * RECORD_BYTES,
    );
    const caughtUp = replay(commands, base, stale);
    expect({ seed, table: caughtUp.entries() }).toEqual({
      seed,
      table: replay(commands, 0).entries(),
    });
  }
});

test("commits never go back, resets do, and the summary digest follows the table", () => {
  const state = new OffsetsState();
  const key = { group: "g", topic: "t", partition: 0 };
  state.apply(encode({ op: "commit", entries: [{ ...key, offset: 500 }] }), 0, 100);
  const before = state.summary();
  state.apply(encode({ op: "commit", entries: [{ ...key, offset: 200 }] }), 100, 200);
  expect(state.get(key)).toBe(500);
  expect(state.summary().digest).toBe(before.digest);
  state.apply(encode({ op: "reset", entries: [{ ...key, offset: 200 }] }), 200, 300);
  expect(state.get(key)).toBe(200);
  expect(state.summary().digest).not.toBe(before.digest);
  expect(state.summary()).toMatchObject({ entries: 1, applied: 300, snapshotBase: 0 });
  expect(state.apply(state.snapshot(300), 300, 400)).toBe(true);
  expect(state.summary()).toMatchObject({ entries: 1, applied: 400, snapshotBase: 300 });
});

test("a removed offset is gone, from snapshots too, and a later commit starts afresh", () => {
  const state = new OffsetsState();
  const key = { group: "g", topic: "t", partition: 0 };
  const other = { group: "h", topic: "t", partition: 0 };
  state.apply(
    encode({ op: "commit", entries: [{ ...key, offset: 500 }, { ...other, offset: 9 }] }),
    0,
    100,
  );
  state.apply(encode({ op: "remove", entries: [key] }), 100, 200);
  expect(state.get(key)).toBeUndefined();
  expect(state.entries()).toEqual([{ ...other, offset: 9 }]);
  const restored = new OffsetsState();
  restored.apply(state.snapshot(200), 200, 300);
  expect(restored.get(key)).toBeUndefined();
  state.apply(encode({ op: "commit", entries: [{ ...key, offset: 100 }] }), 300, 400);
  expect(state.get(key)).toBe(100); // not held back by the removed 500
});

test("a snapshot found anywhere but at its base changes nothing and allows no compaction", () => {
  const state = new OffsetsState();
  const key = { group: "g", topic: "t", partition: 0 };
  state.apply(encode({ op: "commit", entries: [{ ...key, offset: 500 }] }), 0, 100);
  // Taken at 100, but another record got there first: it would undo that record.
  state.apply(encode({ op: "commit", entries: [{ ...key, offset: 700 }] }), 100, 200);
  const late = encode({ op: "snapshot", base: 100, entries: [{ ...key, offset: 500 }] });
  expect(state.apply(late, 200, 300)).toBe(false);
  expect(state.get(key)).toBe(700);
  expect(state.summary().snapshotBase).toBe(0);
});

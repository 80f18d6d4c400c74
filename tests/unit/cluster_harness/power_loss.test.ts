import { expect, test } from "bun:test";
import {
  type FileFacts,
  type JournalOp,
  parseJournal,
  planPowerLoss,
  type PowerLossAction,
  TORN_TAIL_BYTES_MAX,
} from "../../cluster/power_loss.ts";
import { Random } from "../../cluster/random.ts";

const dir = (): FileFacts => ({ size: 0, directory: true });
const file = (size: number): FileFacts => ({ size, directory: false });
const snapshot = (entries: Record<string, FileFacts>) => new Map(Object.entries(entries));

function plan(
  journal: JournalOp[],
  baseline: Record<string, FileFacts>,
  current: Record<string, FileFacts>,
) {
  return planPowerLoss({
    journal,
    baseline: snapshot(baseline),
    current: snapshot(current),
    random: new Random(1),
    tornTails: false,
  });
}

test("a file is cut back to its last synced length", () => {
  const result = plan(
    [
      { op: "create", path: "/d/a" },
      { op: "syncdir", path: "/d" },
      { op: "sync", path: "/d/a", length: 100 },
      { op: "sync", path: "/d/a", length: 120 },
    ],
    { "/d": dir() },
    { "/d": dir(), "/d/a": file(150) },
  );
  expect(result).toEqual({ actions: [{ kind: "truncate", path: "/d/a", length: 120 }], notes: [] });
});

test("a file whose creation was synced but whose data never was ends up empty", () => {
  const result = plan(
    [{ op: "create", path: "/d/a" }, { op: "syncdir", path: "/d" }],
    { "/d": dir() },
    { "/d": dir(), "/d/a": file(64) },
  );
  expect(result.actions).toEqual([{ kind: "truncate", path: "/d/a", length: 0 }]);
});

test("a file created without a sync of its directory vanishes, synced data or not", () => {
  const result = plan(
    [{ op: "create", path: "/d/a" }, { op: "sync", path: "/d/a", length: 64 }],
    { "/d": dir() },
    { "/d": dir(), "/d/a": file(64) },
  );
  expect(result.actions).toEqual([{ kind: "remove", path: "/d/a" }]);
});

test("a rename to a fresh name without a directory sync is reverted", () => {
  const result = plan(
    [
      { op: "create", path: "/d/tmp" },
      { op: "syncdir", path: "/d" },
      { op: "sync", path: "/d/tmp", length: 10 },
      { op: "rename", path: "/d/tmp", to: "/d/state" },
    ],
    { "/d": dir() },
    { "/d": dir(), "/d/state": file(10) },
  );
  expect(result.actions).toEqual([
    { kind: "move", from: "/d/state", to: "/d/state.powerloss-0" },
    { kind: "move", from: "/d/state.powerloss-0", to: "/d/tmp" },
  ]);
});

test("a rename over an existing file without a directory sync is kept and noted", () => {
  const result = plan(
    [
      { op: "create", path: "/d/tmp" },
      { op: "sync", path: "/d/tmp", length: 12 },
      { op: "rename", path: "/d/tmp", to: "/d/state" },
    ],
    { "/d": dir(), "/d/state": file(10) },
    { "/d": dir(), "/d/state": file(12) },
  );
  expect(result.actions).toEqual([]);
  expect(result.notes).toEqual([
    "kept /d/state: the rename or remove over it was not synced, old bytes unknown",
  ]);
});

test("a fully synced atomic replace needs nothing", () => {
  const result = plan(
    [
      { op: "create", path: "/d/tmp" },
      { op: "sync", path: "/d/tmp", length: 12 },
      { op: "rename", path: "/d/tmp", to: "/d/state" },
      { op: "syncdir", path: "/d" },
    ],
    { "/d": dir(), "/d/state": file(10) },
    { "/d": dir(), "/d/state": file(12) },
  );
  expect(result).toEqual({ actions: [], notes: [] });
});

test("a new directory whose parent was not synced vanishes with everything inside", () => {
  const result = plan(
    [
      { op: "create", path: "/d/p" },
      { op: "create", path: "/d/p/seg" },
      { op: "syncdir", path: "/d/p" },
      { op: "sync", path: "/d/p/seg", length: 100 },
    ],
    { "/d": dir() },
    { "/d": dir(), "/d/p": dir(), "/d/p/seg": file(100) },
  );
  expect(result.actions).toEqual([{ kind: "remove", path: "/d/p" }]);
});

test("a removal without a directory sync cannot be undone and is noted", () => {
  const result = plan(
    [{ op: "remove", path: "/d/old" }],
    { "/d": dir(), "/d/old": file(5) },
    { "/d": dir() },
  );
  expect(result.actions).toEqual([]);
  expect(result.notes).toEqual([
    "cannot restore /d/old: removed without a directory sync, bytes gone",
  ]);
});

test("files present at the last start keep that length unless synced further", () => {
  const result = plan(
    [],
    { "/d": dir(), "/d/seg": file(300) },
    { "/d": dir(), "/d/seg": file(900), "/d/.lock": file(5) },
  );
  expect(result.actions).toEqual([{ kind: "truncate", path: "/d/seg", length: 300 }]);
});

test("a sync of a file whose creation was never journaled is reported as a contract problem", () => {
  const result = plan(
    [{ op: "sync", path: "/d/x", length: 10 }],
    { "/d": dir() },
    { "/d": dir(), "/d/x": file(20) },
  );
  expect(result.actions).toEqual([{ kind: "truncate", path: "/d/x", length: 10 }]);
  expect(result.notes[0]).toContain("contract");
});

test("torn tails: about half the files get one, of every kind, never longer than 4 KiB or the unsynced bytes", () => {
  const kinds = new Map<string, number>();
  for (let seed = 0; seed < 400; seed++) {
    const unsynced = seed % 2 === 0 ? 10_000 : 7;
    const result = planPowerLoss({
      journal: [
        { op: "create", path: "/d/a" },
        { op: "syncdir", path: "/d" },
        { op: "sync", path: "/d/a", length: 1000 },
      ],
      baseline: snapshot({ "/d": dir() }),
      current: snapshot({ "/d": dir(), "/d/a": file(1000 + unsynced) }),
      random: new Random(seed),
    });
    const [first, second] = result.actions as PowerLossAction[];
    expect(first.kind).toBe("truncate");
    const cutTo = (first as { length: number }).length;
    expect(cutTo).toBeGreaterThanOrEqual(1000);
    expect(cutTo - 1000).toBeLessThanOrEqual(Math.min(TORN_TAIL_BYTES_MAX, unsynced));
    let kind = cutTo > 1000 ? "stale" : "none";
    if (second) {
      expect(second).toMatchObject({ kind: "append", path: "/d/a" });
      const length = (second as { length: number }).length;
      expect(length).toBeGreaterThanOrEqual(1);
      expect(length).toBeLessThanOrEqual(Math.min(TORN_TAIL_BYTES_MAX, unsynced));
      kind = (second as { fill: string }).fill;
    }
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
  }
  expect([...kinds.keys()].sort()).toEqual(["none", "random", "stale", "zeros"]);
  expect(kinds.get("none")!).toBeGreaterThan(140);
  expect(kinds.get("none")!).toBeLessThan(260);
});

test("the journal parser keeps good lines, reports bad ones and skips a torn last line", () => {
  const text = [
    JSON.stringify({ op: "sync", path: "/d/a", length: 5 }),
    JSON.stringify({ op: "sync", path: "relative", length: 5 }),
    JSON.stringify({ op: "rename", path: "/d/a" }),
    JSON.stringify({ op: "syncdir", path: "/d" }),
    '{"op":"sync","pa',
  ].join("\n");
  const { ops, problems } = parseJournal(text);
  expect(ops).toEqual([{ op: "sync", path: "/d/a", length: 5 }, { op: "syncdir", path: "/d" }]);
  expect(problems.length).toBe(2);
});

import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  applyPowerLoss,
  type JournalOp,
  parseJournal,
  planPowerLoss,
  snapshotFiles,
} from "../../cluster/power_loss.ts";
import { Random } from "../../cluster/random.ts";
import { tempDir } from "../../support/temp_dir.ts";

/** A broker-like writer: appends to a segment, replaces a state file, journals as the contract says. */
function writeLikeABroker(data: string, journal: string): void {
  const log = (op: JournalOp) => fs.appendFileSync(journal, `${JSON.stringify(op)}\n`);
  const partition = path.join(data, "chaos-0");
  fs.mkdirSync(partition);
  log({ op: "create", path: partition });
  log({ op: "syncdir", path: data });
  const segment = path.join(partition, "00000000000000000000.meta");
  fs.writeFileSync(segment, "A".repeat(300));
  log({ op: "create", path: segment });
  log({ op: "syncdir", path: partition });
  log({ op: "sync", path: segment, length: 300 });
  fs.appendFileSync(segment, "B".repeat(200)); // written, never synced
  const state = path.join(partition, "state");
  const temp = `${state}.tmp`;
  fs.writeFileSync(temp, "term=3");
  log({ op: "create", path: temp });
  log({ op: "sync", path: temp, length: 6 });
  fs.renameSync(temp, state);
  log({ op: "rename", path: temp, to: state });
  log({ op: "syncdir", path: partition });
  const next = path.join(partition, "00000000000000000500.meta");
  fs.writeFileSync(next, "C".repeat(50));
  log({ op: "create", path: next }); // its directory is never synced afterwards
  log({ op: "sync", path: next, length: 50 });
  fs.writeFileSync(path.join(data, ".lock"), "1234"); // never journaled: left alone
}

test("a power cut on real files keeps synced bytes and undoes the rest", () => {
  for (let seed = 1; seed <= 20; seed++) {
    using temp = tempDir();
    const data = path.join(temp.path, "data");
    fs.mkdirSync(data);
    const baseline = snapshotFiles(data);
    const journal = path.join(temp.path, "journal.jsonl");
    writeLikeABroker(data, journal);
    const { ops, problems } = parseJournal(fs.readFileSync(journal, "utf8"));
    expect(problems).toEqual([]);
    const plan = planPowerLoss({
      journal: ops,
      baseline,
      current: snapshotFiles(data),
      random: new Random(seed),
    });
    applyPowerLoss(plan);
    const partition = path.join(data, "chaos-0");
    const segment = fs.readFileSync(path.join(partition, "00000000000000000000.meta"));
    expect(segment.subarray(0, 300).toString()).toBe("A".repeat(300));
    expect(segment.length).toBeLessThanOrEqual(300 + 200);
    const tail = segment.subarray(300).toString("latin1");
    if (tail.length > 0 && tail[0] === "B") expect(tail).toBe("B".repeat(tail.length)); // stale prefix
    expect(fs.readFileSync(path.join(partition, "state"), "utf8")).toBe("term=3");
    expect(fs.existsSync(path.join(partition, "00000000000000000500.meta"))).toBe(false);
    expect(fs.existsSync(path.join(partition, "state.tmp"))).toBe(false);
    expect(fs.readFileSync(path.join(data, ".lock"), "utf8")).toBe("1234");
    expect(plan.notes).toEqual([]);
  }
});

test("a state file renamed into place without a directory sync goes back to its temporary name", () => {
  using temp = tempDir();
  const data = path.join(temp.path, "data");
  fs.mkdirSync(data);
  const baseline = snapshotFiles(data);
  const ops: JournalOp[] = [];
  const state = path.join(data, "state");
  fs.writeFileSync(`${state}.tmp`, "vote=2");
  ops.push({ op: "create", path: `${state}.tmp` }, { op: "syncdir", path: data });
  ops.push({ op: "sync", path: `${state}.tmp`, length: 6 });
  fs.renameSync(`${state}.tmp`, state);
  ops.push({ op: "rename", path: `${state}.tmp`, to: state });
  applyPowerLoss(
    planPowerLoss({ journal: ops, baseline, current: snapshotFiles(data), random: new Random(9) }),
  );
  expect(fs.existsSync(state)).toBe(false);
  expect(fs.readFileSync(`${state}.tmp`, "utf8")).toBe("vote=2");
});

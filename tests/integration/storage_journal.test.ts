import { expect, test } from "bun:test";
import * as fs from "node:fs";
import { systemClock } from "../../lib/clock.ts";
import { silentLogger } from "../../lib/log.ts";
import { PartitionLog } from "../../lib/store/partition_log.ts";
import { FileStorage } from "../../lib/store/storage_file.ts";
import { instrumentStorage } from "../../lib/store/storage_journal.ts";
import { tempDir } from "../support/temp_dir.ts";

const open = (storage: ReturnType<typeof instrumentStorage>, dir: string) =>
  PartitionLog.open({
    storage,
    dir,
    name: "j-0",
    segmentBytesMax: 4096,
    recordDataBytesMax: 1 << 20,
    flush: { kind: "group" },
    clock: systemClock,
    logger: silentLogger,
  }, { verifyAll: true, repair: false });

test("the sync journal records every sync before the append it covers is acknowledged", async () => {
  await using temp = tempDir();
  const journal = `${temp.path}/journal.jsonl`;
  const storage = instrumentStorage(new FileStorage(), { syncJournal: journal });
  const log = await open(storage, `${temp.path}/data/j-0`);
  for (let i = 0; i < 300; i++) {
    const ticket = log.appendRecord({
      id: BigInt(i + 1),
      flag: 0,
      data: new Uint8Array(30).fill(i),
    });
    await ticket.done;
    // At acknowledgement time the journal already holds a sync covering this record.
    const entries = fs.readFileSync(journal, "utf8").trim().split("\n").map((line) =>
      JSON.parse(line)
    );
    const synced = entries.filter((entry) => entry.op === "sync").reduce(
      (max, entry) => Math.max(max, entry.length),
      0,
    );
    expect(synced).toBeGreaterThan(0);
  }
  await log.close();
  const ops = fs.readFileSync(journal, "utf8").trim().split("\n").map((line) =>
    JSON.parse(line).op
  );
  expect(ops).toContain("create");
  expect(ops).toContain("syncdir");
  expect(ops.filter((op) => op === "sync").length).toBeGreaterThan(10);
});

test("the fsync control file injects an EIO that fails the append and cuts the log back", async () => {
  await using temp = tempDir();
  const control = `${temp.path}/fsync-control`;
  const storage = instrumentStorage(new FileStorage(), { fsyncControl: control });
  const log = await open(storage, `${temp.path}/data/j-0`);
  await log.appendRecord({ id: 1n, flag: 0, data: new Uint8Array(10) }).done;
  fs.writeFileSync(control, "eio");
  await expect(log.appendRecord({ id: 2n, flag: 0, data: new Uint8Array(10) }).done).rejects
    .toMatchObject({ kind: "storageFailed" });
  expect(log.ackedEnd).toBe(30);
  await log.appendRecord({ id: 3n, flag: 0, data: new Uint8Array(10) }).done;
  expect(log.ackedEnd).toBe(60);
  await log.close();
});

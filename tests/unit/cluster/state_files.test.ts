import { expect, test } from "bun:test";
import {
  readEpochs,
  readHardState,
  StateFileError,
  writeEpochs,
  writeHardState,
} from "../../../lib/cluster/state_files.ts";
import { MemoryStorage } from "../../../lib/store/storage_memory.ts";

test("hard state and epochs round-trip and survive a power cut once written", async () => {
  const storage = new MemoryStorage();
  storage.makeDir("/d");
  await storage.syncDir("/");
  expect(readHardState(storage, "/d")).toBeUndefined();
  await writeHardState(storage, "/d", { term: 7, vote: 2 });
  await writeEpochs(storage, "/d", [{ epoch: 0, startOffset: 0 }, { epoch: 4, startOffset: 100 }, {
    epoch: 7,
    startOffset: 100,
  }]);
  storage.crash();
  expect(readHardState(storage, "/d")).toEqual({ term: 7, vote: 2 });
  expect(readEpochs(storage, "/d")).toEqual([{ epoch: 0, startOffset: 0 }, {
    epoch: 4,
    startOffset: 100,
  }, { epoch: 7, startOffset: 100 }]);
});

test("a damaged or truncated state file is reported, never half-read", async () => {
  const storage = new MemoryStorage();
  storage.makeDir("/d");
  await writeHardState(storage, "/d", { term: 12, vote: 3 });
  const bytes = storage.readFile("/d/raft-state")!;
  for (let cut = 1; cut < bytes.length; cut++) {
    const file = storage.open("/d/raft-state", { create: false });
    file.truncate(0);
    file.write([bytes.subarray(0, cut)], 0);
    file.close();
    expect(() => readHardState(storage, "/d")).toThrow(StateFileError);
  }
  const flipped = bytes.slice();
  flipped[flipped.indexOf(0x32)] = 0x39; // term 12 -> 19
  const file = storage.open("/d/raft-state", { create: false });
  file.truncate(0);
  file.write([flipped], 0);
  file.close();
  expect(() => readHardState(storage, "/d")).toThrow("checksum mismatch");
});

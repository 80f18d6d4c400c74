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
  await writeHardState(storage, "/d", { term: 7, votedFor: 2 });
  await writeEpochs(storage, "/d", [{ epoch: 0, startOffset: 0 }, { epoch: 4, startOffset: 100 }, {
    epoch: 7,
    startOffset: 100,
  }]);
  storage.crash();
  expect(readHardState(storage, "/d")).toMatchObject({ term: 7, votedFor: 2 });
  expect(readEpochs(storage, "/d")).toEqual([{ epoch: 0, startOffset: 0 }, {
    epoch: 4,
    startOffset: 100,
  }, { epoch: 7, startOffset: 100 }]);
});

test("a damaged or truncated state file is reported, never half-read", async () => {
  const storage = new MemoryStorage();
  storage.makeDir("/d");
  await writeHardState(storage, "/d", { term: 12, votedFor: 3 });
  const bytes = storage.readFile("/d/raft-state")!;
  const rewrite = (content: Uint8Array) => {
    const file = storage.open("/d/raft-state", { create: false });
    file.truncate(0);
    file.write([content], 0);
    file.close();
  };
  for (let cut = 0; cut < bytes.length; cut++) {
    rewrite(bytes.subarray(0, cut));
    expect(readHardState(storage, "/d")).toBe("unreadable");
  }
  for (let bit = 0; bit < bytes.length * 8; bit += 7) {
    const flipped = bytes.slice();
    flipped[bit >> 3] ^= 1 << (bit & 7);
    rewrite(flipped);
    expect(readHardState(storage, "/d")).toBe("unreadable");
  }
  await writeEpochs(storage, "/d", [{ epoch: 0, startOffset: 0 }]);
  const epochs = storage.readFile("/d/leader-epochs")!;
  const file = storage.open("/d/leader-epochs", { create: false });
  file.truncate(0);
  file.write([epochs.subarray(0, epochs.length - 3)], 0);
  file.close();
  expect(() => readEpochs(storage, "/d")).toThrow(StateFileError);
});

test("epochs keep the voters their markers name; lines without voters still read", async () => {
  const storage = new MemoryStorage();
  await storage.makeDir("/d");
  const epochs = [
    { epoch: 0, startOffset: 0 },
    { epoch: 4, startOffset: 100, voters: [1, 2, 3] },
    { epoch: 6, startOffset: 300, voters: [1, 2, 3, 4] },
  ];
  await writeEpochs(storage, "/d", epochs);
  expect(readEpochs(storage, "/d")).toEqual(epochs);
  const text = new TextDecoder().decode(storage.readFile("/d/leader-epochs")!);
  expect(text).toContain("\n6 300 1,2,3,4\n");
});

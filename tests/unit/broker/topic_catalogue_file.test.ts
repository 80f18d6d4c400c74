import { describe, expect, test } from "bun:test";
import { CATALOGUE_FILE, TopicCatalogueFile } from "../../../lib/broker/topic_catalogue_file.ts";
import { makeDirDurably } from "../../../lib/store/storage.ts";
import { MemoryStorage } from "../../../lib/store/storage_memory.ts";

async function storageWithDir(): Promise<MemoryStorage> {
  const storage = new MemoryStorage();
  await makeDirDurably(storage, "/data");
  return storage;
}

describe("the topic catalogue file of a broker alone", () => {
  test("every answered change survives a power cut, torn tails of other writes or not", async () => {
    const storage = await storageWithDir();
    const file = TopicCatalogueFile.open(storage, "/data");
    await file.commit({ kind: "topic-create", name: "clicks", partitions: 3 });
    await file.commit({ kind: "topic-create", name: "clicks", partitions: 5 });
    await file.commit({ kind: "topic-delete", name: "orders" });
    const expected = file.catalogue().entries();
    storage.crash((_path, bytes) => new Uint8Array(bytes).fill(0x41));
    expect(TopicCatalogueFile.open(storage, "/data").catalogue().entries()).toEqual(expected);
    expect(expected).toEqual([["clicks", { partitions: 5 }], ["orders", { deleted: true }]]);
  });

  test("a refused change writes nothing; a damaged file stops the open with its path", async () => {
    const storage = await storageWithDir();
    const file = TopicCatalogueFile.open(storage, "/data");
    await file.commit({ kind: "topic-create", name: "clicks", partitions: 3 });
    await expect(file.commit({ kind: "topic-create", name: "clicks", partitions: 2 })).rejects
      .toThrow("Cannot change topic clicks: Cannot shrink topic clicks from 3 to 2");
    expect(file.catalogue().entry("clicks")).toEqual({ partitions: 3 });
    const path = `/data/${CATALOGUE_FILE}`;
    const bytes = new Uint8Array(storage.readFile(path)!);
    bytes[bytes.indexOf(0x33)] = 0x34; // "3" -> "4" in the JSON line
    await storage.writeFileAtomic(path, bytes);
    expect(() => TopicCatalogueFile.open(storage, "/data")).toThrow(
      "/data/topic-catalogue is damaged (its checksum does not match)",
    );
  });
});

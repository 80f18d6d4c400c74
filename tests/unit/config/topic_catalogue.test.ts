import { describe, expect, test } from "bun:test";
import { TopicCatalogue, type TopicRecord } from "../../../lib/config/topic_catalogue.ts";

function catalogueOf(...records: TopicRecord[]): TopicCatalogue {
  const catalogue = new TopicCatalogue();
  for (const record of records) catalogue.apply(record);
  return catalogue;
}

describe("topic catalogue", () => {
  test("create adds a topic, a larger count grows it, the same count changes nothing", () => {
    const catalogue = catalogueOf({ kind: "topic-create", name: "orders", partitions: 3 });
    expect(catalogue.entry("orders")).toEqual({ partitions: 3 });
    const version = catalogue.version;
    expect(catalogue.apply({ kind: "topic-create", name: "orders", partitions: 3 })).toBe(false);
    expect(catalogue.version).toBe(version);
    expect(catalogue.apply({ kind: "topic-create", name: "orders", partitions: 8 })).toBe(true);
    expect(catalogue.entry("orders")).toEqual({ partitions: 8 });
    expect(catalogue.version).toBe(version + 1);
  });

  test("a smaller count is refused with the reason, and applying it changes nothing", () => {
    const catalogue = catalogueOf({ kind: "topic-create", name: "orders", partitions: 4 });
    const shrink: TopicRecord = { kind: "topic-create", name: "orders", partitions: 2 };
    expect(catalogue.problemWith(shrink)).toContain(
      "Cannot shrink topic orders from 4 to 2 partitions: partitions are addressed by number",
    );
    expect(catalogue.apply(shrink)).toBe(false);
    expect(catalogue.entry("orders")).toEqual({ partitions: 4 });
  });

  test("delete leaves a tombstone; create brings the topic back with any count", () => {
    const catalogue = catalogueOf(
      { kind: "topic-create", name: "orders", partitions: 4 },
      { kind: "topic-delete", name: "orders" },
    );
    expect(catalogue.entry("orders")).toEqual({ deleted: true });
    expect(catalogue.problemWith({ kind: "topic-delete", name: "orders" })).toBe(
      "topic orders is deleted already",
    );
    // A configured topic no one created can be deleted too: its tombstone overrides server.ini.
    expect(catalogue.apply({ kind: "topic-delete", name: "configured" })).toBe(true);
    expect(catalogue.apply({ kind: "topic-create", name: "orders", partitions: 1 })).toBe(true);
    expect(catalogue.entry("orders")).toEqual({ partitions: 1 });
  });

  test("bad records are refused: names, internal topics, counts, shapes", () => {
    const catalogue = new TopicCatalogue();
    const problem = (record: unknown) => catalogue.problemWith(record as TopicRecord);
    expect(problem({ kind: "topic-create", name: "a b", partitions: 1 })).toContain(
      "may use only letters",
    );
    expect(problem({ kind: "topic-delete", name: "__meta" })).toContain("broker's own state");
    expect(problem({ kind: "topic-create", name: "t", partitions: 0 })).toBe(
      "partitions must be 1 to 1024, not 0",
    );
    expect(problem({ kind: "topic-create", name: "t", partitions: 1.5 })).toContain("not 1.5");
    expect(problem({ kind: "topic-create", name: "t", partitions: 1025 })).toContain("1 to 1024");
    expect(problem({ kind: "topic-create", name: "t" })).toBe("not a topic record");
    expect(problem({ kind: "topic-rename", name: "t" })).toBe("not a topic record");
    expect(catalogue.entries()).toEqual([]);
  });

  test("JSON round trip keeps every entry; malformed entries are left out", () => {
    const catalogue = catalogueOf(
      { kind: "topic-create", name: "b", partitions: 2 },
      { kind: "topic-delete", name: "a" },
    );
    const copy = new TopicCatalogue();
    copy.restore(JSON.parse(JSON.stringify(catalogue.toJson())));
    expect(copy.entries()).toEqual([["a", { deleted: true }], ["b", { partitions: 2 }]]);
    copy.restore({ c: { partitions: "x" }, d: null, e: { partitions: 3 } });
    expect(copy.entries()).toEqual([["e", { partitions: 3 }]]);
  });
});

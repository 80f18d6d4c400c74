import { expect, test } from "bun:test";
import { recordFilter } from "../../../../lib/broker/groups/filter.ts";
import { parseFilter } from "../../../../lib/protocol/filter.ts";
import { encodeRecord, joinAttribute } from "../../../../lib/protocol/record.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

function filterOf(source: string) {
  const parsed = parseFilter(source);
  if (parsed.kind !== "filter") throw new Error(`not a filter: ${JSON.stringify(parsed)}`);
  return parsed.filter;
}

const record = (id: number, attribute: string | undefined, payload: string) =>
  encodeRecord({
    id: BigInt(id),
    flag: attribute === undefined ? 0 : 1,
    data: attribute === undefined ? bytes(payload) : joinAttribute(attribute, bytes(payload)),
  });

const joined = (...parts: Uint8Array[]) => new Uint8Array(parts.flatMap((part) => [...part]));

test("recordFilter serves the run of accepted records at the slice's start, bytes unchanged", () => {
  const gold = record(1, "gold", "a");
  const tin = record(2, "tin", "b");
  const slice = joined(gold, gold, tin, gold, gold.subarray(0, 9));
  expect(recordFilter(filterOf("attribute=gold"))(slice)).toEqual({ serve: 2 * gold.length });
});

test("recordFilter skips the run of rejected records at the slice's start", () => {
  const gold = record(1, "gold", "a");
  const tin = record(2, "tin", "b");
  const filter = recordFilter(filterOf("attribute=gold"));
  expect(filter(joined(tin, tin, gold))).toEqual({ skip: 2 * tin.length });
  expect(filter(joined(tin, tin, gold.subarray(0, 9)))).toEqual({ skip: 2 * tin.length });
});

test("recordFilter serves a slice it cannot judge, so the consumer grows or resynchronizes", () => {
  const filter = recordFilter(filterOf("attribute=gold"));
  const gold = record(1, "gold", "a");
  // Only part of a record: the consumer grows its fetch size.
  expect(filter(gold.subarray(0, 12))).toEqual({ serve: 12 });
  // Bytes that are not a record (a get at an offset inside one): the consumer asks `offset`.
  const inside = joined(gold.subarray(5), gold);
  expect(filter(inside)).toEqual({ serve: inside.length });
  // A damaged length after an accepted record ends the run there.
  const damaged = joined(gold, new Uint8Array([0xff, 0xff, 0xff, 0xff]), new Uint8Array(30));
  expect(filter(damaged)).toEqual({ serve: gold.length });
});

import { expect, test } from "bun:test";
import { recordFilter } from "../../../../lib/broker/groups/filter.ts";
import { parseFilter } from "../../../../lib/protocol/filter.ts";
import { decodeRecords, encodeRecord, joinAttribute } from "../../../../lib/protocol/record.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

function filterOf(source: string) {
  const parsed = parseFilter(source);
  if (parsed.kind !== "filter") throw new Error(`not a filter: ${JSON.stringify(parsed)}`);
  return parsed.filter;
}

test("recordFilter keeps accepted complete records and reports the bytes it examined", () => {
  const record = (id: number, attribute: string | undefined, payload: string) =>
    encodeRecord({
      id: BigInt(id),
      flag: attribute === undefined ? 0 : 1,
      data: attribute === undefined ? bytes(payload) : joinAttribute(attribute, bytes(payload)),
    });
  const records = [record(1, "gold", "a"), record(2, "tin", "b"), record(3, "gold", "c")];
  const slice = new Uint8Array([
    ...records[0],
    ...records[1],
    ...records[2],
    ...records[0].subarray(0, 9),
  ]);
  const { bytes: kept, examined } = recordFilter(filterOf("attribute=gold"))(slice, 1000);
  expect(decodeRecords(kept).map((r) => Number(r.id))).toEqual([1, 3]);
  expect(examined).toBe(records[0].length + records[1].length + records[2].length);
});

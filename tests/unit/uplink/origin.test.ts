import { expect, test } from "bun:test";
import {
  formatOrigin,
  isOriginId,
  originAttribute,
  originId,
  OriginIds,
  parseOriginAttribute,
} from "../../../lib/protocol/uplink_origin.ts";

const ORIGIN = {
  site: "site-17",
  topic: "orders.eu",
  partition: 3,
  offset: 1_048_576,
  id: -5n,
};

test("an origin attribute reads back with and without the original attribute", () => {
  expect(formatOrigin(ORIGIN)).toBe("metaq-origin:site-17/orders.eu/3/1048576/-5");
  expect(parseOriginAttribute(originAttribute(ORIGIN))).toEqual({ origin: ORIGIN });
  expect(parseOriginAttribute(originAttribute(ORIGIN, ""))).toEqual({
    origin: ORIGIN,
    attribute: "",
  });
  const original = "gold;eu/1 ünïcode\nline";
  expect(parseOriginAttribute(originAttribute(ORIGIN, original))).toEqual({
    origin: ORIGIN,
    attribute: original,
  });
});

test("a message forwarded twice keeps both origins, the nearest first", () => {
  const first = originAttribute({ ...ORIGIN, site: "far" }, "tag");
  const twice = parseOriginAttribute(originAttribute(ORIGIN, first))!;
  expect(twice.origin).toEqual(ORIGIN);
  expect(parseOriginAttribute(twice.attribute!)).toEqual({
    origin: { ...ORIGIN, site: "far" },
    attribute: "tag",
  });
});

test("attributes that are not origins are not read as one", () => {
  for (
    const attribute of [
      "",
      "gold",
      "metaq-origin:",
      "metaq-origin:site/topic/0/1",
      "metaq-origin:site/topic/x/1/2",
      "metaq-origin:si te/topic/0/1/2",
      "metaq-origin:site/topic/0/1/99999999999999999999",
      "xmetaq-origin:site/topic/0/1/2",
    ]
  ) {
    expect(parseOriginAttribute(attribute), attribute).toBeUndefined();
  }
});

test("origin ids are negative, fixed per origin, and differ for neighbouring origins", () => {
  expect(originId("a", "t", 0, 0)).toBe(originId("a", "t", 0, 0));
  expect(originId("a", "t", 0, 0)).not.toBe(originId("a", "t", 0, 1));
  const [high, low] = new OriginIds("a", "t", 7).halvesAt(12345);
  expect(originId("a", "t", 7, 12345)).toBe((BigInt(high) << 32n) | BigInt(low >>> 0));
  // 3 sites x 2 topics x 2 partitions x 50k offsets 37 bytes apart (600k ids): a 63-bit hash
  // collides among them with probability ~2e-8, a weak one (a CRC, a sum) would collide often.
  const ids = new BigInt64Array(600_000);
  let count = 0;
  for (const site of ["edge-1", "edge-2", "edge-10"]) {
    for (const topic of ["orders", "orders2"]) {
      for (const partition of [0, 1]) {
        const origins = new OriginIds(site, topic, partition);
        for (let offset = 0; offset < 50_000 * 37; offset += 37) {
          const [high, low] = origins.halvesAt(offset);
          ids[count++] = (BigInt(high) << 32n) | BigInt(low >>> 0);
        }
      }
    }
  }
  expect(count).toBe(ids.length);
  expect(ids.every(isOriginId)).toBe(true);
  ids.sort();
  let repeats = 0;
  for (let index = 1; index < ids.length; index++) if (ids[index] === ids[index - 1]) repeats++;
  expect(repeats).toBe(0);
});

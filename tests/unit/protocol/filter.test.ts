import { describe, expect, test } from "bun:test";
import { acceptsMessage, parseFilter } from "../../../lib/protocol/filter.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

function filterOf(source: string) {
  const parsed = parseFilter(source);
  if (parsed.kind !== "filter") throw new Error(`not a filter: ${JSON.stringify(parsed)}`);
  return parsed.filter;
}

describe("parseFilter", () => {
  test("a Java class name is recognised, so it can be reported and ignored", () => {
    expect(parseFilter(" com.taobao.metamorphosis.example.VipFilter ")).toEqual({
      kind: "javaClass",
      className: "com.taobao.metamorphosis.example.VipFilter",
    });
  });

  test("clauses, && inside alternatives and || between them", () => {
    expect(parseFilter("attribute=gold && payload*=x || attribute^=eu-")).toEqual({
      kind: "filter",
      filter: {
        source: "attribute=gold && payload*=x || attribute^=eu-",
        alternatives: [
          [{ field: "attribute", op: "=", value: "gold" }, {
            field: "payload",
            op: "*=",
            value: "x",
          }],
          [{ field: "attribute", op: "^=", value: "eu-" }],
        ],
      },
    });
  });

  test("anything else is invalid, with a reason naming the bad part", () => {
    expect(parseFilter("")).toEqual({ kind: "invalid", reason: "the filter is empty" });
    expect(parseFilter("attribute=a || colour=red")).toEqual({
      kind: "invalid",
      reason: "'colour=red' is not <attribute|payload><=|!=|^=|$=|*=><value>",
    });
    expect(parseFilter("attribute~=x").kind).toBe("invalid");
  });
});

describe("acceptsMessage", () => {
  const cases: [string, { attribute?: string; payload: string }, boolean][] = [
    ["attribute=gold", { attribute: "gold", payload: "" }, true],
    ["attribute=gold", { attribute: "golden", payload: "" }, false],
    ["attribute!=gold", { payload: "" }, true],
    ["attribute=", { payload: "no attribute is the empty attribute" }, true],
    ["attribute$=-eu", { attribute: "shop-eu", payload: "" }, true],
    ["payload^=ERR", { payload: "ERROR: disk" }, true],
    ["payload$=disk", { payload: "ERROR: disk" }, true],
    ["payload*=R: d", { payload: "ERROR: disk" }, true],
    ["payload=ERROR", { payload: "ERROR: disk" }, false],
    ["payload!=ERROR", { payload: "ERROR: disk" }, true],
    ["attribute=a && payload*=z", { attribute: "a", payload: "xyz" }, true],
    ["attribute=a && payload*=q", { attribute: "a", payload: "xyz" }, false],
    ["attribute=b || payload*=q", { attribute: "a", payload: "xyz" }, false],
  ];
  for (const [source, message, expected] of cases) {
    test(`${source} on ${JSON.stringify(message)} is ${expected}`, () => {
      expect(acceptsMessage(filterOf(source), { ...message, payload: bytes(message.payload) }))
        .toBe(expected);
    });
  }
});

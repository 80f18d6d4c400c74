import { expect, test } from "bun:test";
import {
  dropRecord,
  positionsRecord,
  siteRecord,
  UplinkState,
} from "../../../lib/uplink/uplink_state.ts";

const position = (topic: string, partition: number, offset: number, since: number) => ({
  topic,
  partition,
  offset,
  hubTopic: `hub.${topic}`,
  hubPartition: partition,
  since,
});

test("the state follows site, position and drop records, and a snapshot replaces it", () => {
  const state = new UplinkState();
  expect(state.apply(siteRecord("edge-1"))).toBe(false);
  state.apply(positionsRecord([position("a", 0, 100, 7), position("a", 1, 50, 9)]));
  state.apply(positionsRecord([position("a", 0, 300, 11)]));
  state.apply(dropRecord({
    topic: "a",
    partition: 1,
    from: 50,
    to: 400,
    messages: 12,
    bytes: 350,
    why: "test",
  }));
  // A drop on a partition the hub never answered for creates its position.
  state.apply(dropRecord({
    topic: "b",
    partition: 0,
    from: 0,
    to: 64,
    messages: 2,
    bytes: 64,
    why: "test",
  }));
  expect(state.site).toBe("edge-1");
  expect(state.position("a", 0)).toEqual(position("a", 0, 300, 11));
  expect(state.position("a", 1)).toEqual({ ...position("a", 1, 400, 9) });
  expect(state.drops("a", 1)).toEqual({ messages: 12, bytes: 350 });
  expect(state.position("b", 0)?.offset).toBe(64);
  expect(state.drops("a", 0)).toEqual({ messages: 0, bytes: 0 });

  const copy = new UplinkState();
  copy.apply(positionsRecord([position("stale", 0, 1, 1)]));
  expect(copy.apply(state.snapshot())).toBe(true);
  expect(copy.site).toBe("edge-1");
  expect(copy.position("stale", 0)).toBeUndefined();
  expect(copy.position("a", 0)).toEqual(state.position("a", 0));
  expect(copy.drops("a", 1)).toEqual({ messages: 12, bytes: 350 });
  expect(copy.drops("b", 0)).toEqual({ messages: 2, bytes: 64 });
});

test("a record of an unknown kind stops the state from being rebuilt wrong", () => {
  expect(() => new UplinkState().apply(new TextEncoder().encode('{"k":"what"}'))).toThrow(
    "Cannot apply uplink state record of kind what",
  );
});

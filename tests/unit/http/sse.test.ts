import { expect, test } from "bun:test";
import { Doorbell, formatEvent, StreamLimit } from "../../../lib/http/sse.ts";
import { parseCursor } from "../../../lib/http/topic_stream.ts";

test("an event's data is split into data lines and cannot forge other fields", () => {
  expect(formatEvent({ id: "0:25", event: "message", data: "a\nb\r\nid: 9" })).toBe(
    "id: 0:25\nevent: message\ndata: a\ndata: b\ndata: id: 9\n\n",
  );
  expect(formatEvent({ id: "1\n\nevent: x", data: "" })).toBe("id: 1event: x\ndata: \n\n");
});

test("a ring with nobody waiting is kept for the next wait, and only one", async () => {
  const bell = new Doorbell();
  const never = new AbortController().signal;
  bell.ring();
  bell.ring();
  await bell.wait(never);
  let woken = false;
  const waiting = bell.wait(never).then(() => (woken = true));
  await Promise.resolve();
  expect(woken).toBe(false);
  bell.ring();
  await waiting;
  expect(woken).toBe(true);
  const aborted = new AbortController();
  const stopped = bell.wait(aborted.signal);
  aborted.abort();
  await stopped;
});

test("the stream limit refuses one more than its maximum and counts releases once", () => {
  const limit = new StreamLimit(2);
  const first = limit.acquire();
  limit.acquire();
  expect(() => limit.acquire()).toThrow("2 event streams are open already");
  first();
  first();
  expect(limit.open).toBe(1);
  limit.acquire();
  expect(limit.open).toBe(2);
});

test("a Last-Event-ID cursor names known partitions and offsets, nothing else", () => {
  expect([...parseCursor("0:25,2:0", [0, 1, 2])]).toEqual([[0, 25], [2, 0]]);
  for (const bad of ["", "0", "0:x", "3:1", "0:-1", "0:1;1:2", `0:${"9".repeat(17)}`]) {
    expect(() => parseCursor(bad, [0, 1, 2]), bad).toThrow("Cannot resume from Last-Event-ID");
  }
});

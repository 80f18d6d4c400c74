import { describe, expect, test } from "bun:test";
import {
  decodeHardState,
  decodeMessage,
  encodeHardState,
  encodeMessage,
  FRAME_HEADER_BYTES,
  frameBytes,
  type HardState,
  type Message,
} from "../../../lib/cluster/messages.ts";
import { crc32 } from "../../../lib/crc32.ts";
import { bytesOf } from "./harness.ts";

const SAMPLES: readonly Message[] = [
  {
    kind: "append",
    from: 1,
    to: 2,
    term: 7,
    prev: { offset: 100, epoch: 5 },
    entries: [bytesOf("first entry"), bytesOf("2nd")],
    markers: [{ epoch: 6, startOffset: 111 }, { epoch: 7, startOffset: 114 }],
    commit: { offset: 90, epoch: 5 },
    leaderStartOffset: 40,
    reset: false,
  },
  {
    kind: "append",
    from: 1,
    to: 3,
    term: 7,
    prev: { offset: 100, epoch: 7 },
    entries: [bytesOf("put"), bytesOf("tx batch"), bytesOf("put"), bytesOf("tx batch 2")],
    atomicEntries: [1, 3],
    markers: [],
    commit: { offset: 100, epoch: 7 },
    leaderStartOffset: 0,
    reset: false,
  },
  {
    kind: "append",
    from: 3,
    to: 1,
    term: 2 ** 40,
    prev: { offset: 2 ** 50, epoch: 2 ** 40 },
    entries: [],
    markers: [],
    commit: { offset: 2 ** 50, epoch: 2 ** 40 },
    leaderStartOffset: 2 ** 50,
    reset: true,
  },
  {
    kind: "appendReply",
    from: 2,
    to: 1,
    term: 7,
    ok: true,
    counted: true,
    match: { offset: 100, epoch: 5 },
    appended: { offset: 114, epoch: 7 },
  },
  {
    kind: "appendReply",
    from: 2,
    to: 1,
    term: 7,
    ok: false,
    counted: false,
    hint: {
      epochs: [{ epoch: 3, startOffset: 0 }, { epoch: 5, startOffset: 80 }],
      endOffset: 95,
      partial: true,
    },
  },
  { kind: "appendReply", from: 2, to: 1, term: 9, ok: false, counted: true },
  {
    kind: "vote",
    from: 4,
    to: 5,
    term: 8,
    pre: true,
    transfer: false,
    last: { offset: 77, epoch: 6 },
  },
  {
    kind: "vote",
    from: 4,
    to: 5,
    term: 8,
    pre: false,
    transfer: true,
    last: { offset: 0, epoch: 0 },
  },
  { kind: "voteReply", from: 5, to: 4, term: 8, pre: true, granted: true },
  { kind: "voteReply", from: 5, to: 4, term: 8, pre: false, granted: false },
  { kind: "timeoutNow", from: 1, to: 3, term: 4 },
  { kind: "termQuery", from: 1, to: 3, term: 4 },
  { kind: "termReply", from: 3, to: 1, term: 6 },
];

describe("message codec", () => {
  test("every message kind survives a round trip", () => {
    for (const message of SAMPLES) {
      const decoded = decodeMessage(encodeMessage(12, message));
      expect(decoded, message.kind).toEqual({ ok: true, groupId: 12, message });
    }
  });

  test("an atomic entry's flag rides on the top bit of its length", () => {
    const frame = encodeMessage(1, SAMPLES[1]);
    const view = new DataView(frame.buffer, frame.byteOffset);
    // After the header: prev, commit (16 each), leader start (8), three counts (4 each).
    let at = FRAME_HEADER_BYTES + 16 + 16 + 8 + 12;
    const words: number[] = [];
    for (const entry of (SAMPLES[1] as { entries: Uint8Array[] }).entries) {
      words.push(view.getUint32(at));
      at += 4 + entry.length;
    }
    expect(words.map((word) => word >>> 31)).toEqual([0, 1, 0, 1]);
    expect(words.map((word) => word & 0x7fff_ffff)).toEqual([3, 8, 3, 10]);
  });

  test("any single flipped bit is detected, in the header or the body", () => {
    for (const message of [SAMPLES[0], SAMPLES[1], SAMPLES[4], SAMPLES[6]]) {
      const frame = encodeMessage(3, message);
      for (let bit = 0; bit < frame.length * 8; bit++) {
        const damaged = frame.slice();
        damaged[bit >> 3] ^= 1 << (bit & 7);
        const decoded = decodeMessage(damaged);
        expect(decoded.ok, `${message.kind} bit ${bit}`).toBe(false);
      }
    }
  });

  test("a stream reader sizes a frame from its header alone", () => {
    const frame = encodeMessage(1, SAMPLES[0]);
    expect(frameBytes(frame.subarray(0, FRAME_HEADER_BYTES))).toBe(frame.length);
    expect(frameBytes(frame.subarray(0, FRAME_HEADER_BYTES - 1))).toBe("header is short");
    const damaged = frame.slice();
    damaged[9] ^= 0x40; // the length field
    expect(frameBytes(damaged)).toBe("header checksum mismatch");
  });

  test("short, long and malformed frames are rejected with a reason", () => {
    const frame = encodeMessage(1, SAMPLES[0]);
    expect(decodeMessage(frame.subarray(0, frame.length - 1))).toEqual({
      ok: false,
      reason: `frame is ${frame.length - 1} of ${frame.length}`,
    });
    const bad: Message = { ...SAMPLES[0], markers: [{ epoch: 6, startOffset: 105 }] } as Message;
    expect(decodeMessage(encodeMessage(1, bad))).toEqual({
      ok: false,
      reason: "marker is not at an entry boundary",
    });
  });
});

describe("hard state codec", () => {
  const states: HardState[] = [
    { term: 0, votedFor: 0 },
    { term: 12, votedFor: 3 },
    { term: 2 ** 45, votedFor: 2, repair: { formerEndOffset: 2 ** 50 } },
    { term: 9, votedFor: 9, repair: {}, votesForgotten: true, voteFloor: 14 },
    { term: 7, votedFor: 0, repair: { base: 3 } },
    { term: 7, votedFor: 2, repair: { formerEndOffset: 40, base: 1023 } },
  ];

  test("hard state survives a round trip", () => {
    for (const state of states) expect(decodeHardState(encodeHardState(state))).toEqual(state);
  });

  test("damaged or short hard state is unreadable, never misread", () => {
    const bytes = encodeHardState(states[3]);
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      const damaged = bytes.slice();
      damaged[bit >> 3] ^= 1 << (bit & 7);
      expect(decodeHardState(damaged), `bit ${bit}`).toBeUndefined();
    }
    expect(decodeHardState(bytes.subarray(1))).toBeUndefined();
    expect(decodeHardState(new Uint8Array(bytes.length))).toBeUndefined();
  });

  test("a repair base travels only with repair mode", () => {
    const withBase = encodeHardState(states[4]);
    expect(encodeHardState({ term: 7, votedFor: 0, repair: {} })).not.toEqual(withBase);
    // A record claiming a base without repair mode (or flag 8 without a base) is not ours.
    const reseal = (bytes: Uint8Array) => {
      new DataView(bytes.buffer).setUint32(0, crc32(bytes.subarray(4)));
      return bytes;
    };
    const noRepair = withBase.slice();
    noRepair[5] &= ~1;
    expect(decodeHardState(reseal(noRepair))).toBeUndefined();
    const noBase = withBase.slice();
    new DataView(noBase.buffer).setUint32(20, 0);
    expect(decodeHardState(reseal(noBase))).toBeUndefined();
  });
});

/**
 * @module Raft messages and hard state: their types and a compact binary codec. Pure: bytes in,
 * values out. Knows nothing about sockets, framing on a stream beyond the length in the header,
 * or what the core does with a message.
 *
 * Frame layout (all integers big-endian; u64 values are below 2^53):
 *
 * | at | size | field                                                           |
 * |----|------|-----------------------------------------------------------------|
 * |  0 |    4 | header checksum: CRC-32 of bytes 4..39                          |
 * |  4 |    4 | body checksum: CRC-32 of the body                               |
 * |  8 |    4 | body length in bytes (at most FRAME_BODY_BYTES_MAX)             |
 * | 12 |    1 | format version (2; 1 had no voters in markers)                  |
 * | 13 |    1 | kind: 1 append, 2 appendReply, 3 vote, 4 voteReply, 5 timeoutNow, |
 * |    |      |       6 termQuery, 7 termReply                                  |
 * | 14 |    2 | flags (per kind, below)                                         |
 * | 16 |    4 | group id: which Raft group (metadata or one partition)          |
 * | 20 |    4 | from node id                                                    |
 * | 24 |    4 | to node id                                                      |
 * | 28 |    8 | term                                                            |
 * | 36 |    4 | reserved, zero                                                  |
 *
 * The header checksum is verified before the length is trusted, so a stream reader can size a
 * frame from 40 bytes; the body checksum is verified before any body field is read. Bodies:
 *
 * - append: prev position, commit position, leader log start (u64), marker count, entry count,
 *   base voter count and voters (u32 each; only with a reset: the voters in force at prev),
 *   markers (epoch u64, start u64, voter count u32, voters u32 each), entries (length u32,
 *   bytes; the length's top bit marks an atomic entry, which a format-2 reader that predates
 *   it refuses as too long). Flag 1: reset; flag 2: quiet (the group goes quiet: see Raft's
 *   quiescence).
 * - appendReply: match and appended positions (zero unless flag 1, ok), hint end offset, hint
 *   epoch count, hint epochs. Flags: 1 ok, 2 counted, 4 has hint, 8 hint is partial.
 * - vote: last position (end offset, last epoch). Flags: 1 pre-vote, 2 leadership transfer.
 * - voteReply: empty. Flags: 1 pre-vote, 2 granted.
 * - timeoutNow: voter count u32 and voters: the configuration the successor writes (0: keep).
 * - termQuery, termReply: empty.
 *
 * A position is (offset u64, epoch u64).
 */
import { assert } from "../assert.ts";
import { crc32 } from "../crc32.ts";
import { crc32ContinueParts } from "./referenced_crc.ts";
import { RAFT_ENTRY_BYTES_MAX, RAFT_MESSAGE_BODY_BYTES_MAX } from "../limits.ts";
import { VOTERS_MAX } from "./quorum.ts";
import type { EpochStart, Position } from "./raft_log.ts";

/** A node's number within the cluster; 0 means "nobody". */
export type NodeId = number;

/** Largest entry (the bytes of one append) the core replicates. */
export const ENTRY_BYTES_MAX = RAFT_ENTRY_BYTES_MAX;
/** Largest frame body; an append carries at least one entry even when it is this large. */
export const FRAME_BODY_BYTES_MAX = RAFT_MESSAGE_BODY_BYTES_MAX;
export const FRAME_HEADER_BYTES = 40;
/** Markers one append may carry; longer runs of empty epochs take several messages. */
export const MARKERS_PER_APPEND_MAX = 256;
/** Entries one append may carry. */
export const ENTRIES_PER_APPEND_MAX = 64 * 1024;
/** Epochs a reject hint may carry; an older divergence takes another round trip. */
export const HINT_EPOCHS_MAX = 64;
export const HARD_STATE_BYTES = 40;
assert(ENTRY_BYTES_MAX < 0x8000_0000, "an entry's length leaves its top bit for the atomic flag");

const FORMAT_VERSION = 2;
/** The top bit of an entry's length: the entry is atomic. Entries are far below 2^31 bytes. */
const ATOMIC_ENTRY_BIT = 0x8000_0000;
/** Hard state keeps its own version: frames changed format, hard state on disk did not. */
const HARD_STATE_VERSION = 1;
const NODE_ID_MAX = 0xffff_ffff;
const TWO_POW_32 = 0x1_0000_0000;

interface MessageBase {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
}

/**
 * Leader to follower: the items after `prev` in the leader's log (entries back to back from
 * `prev.offset`, markers at entry boundaries among them), and the leader's commit position.
 * With no items it is a heartbeat. With `reset`, `prev` is the leader's base and a follower
 * that does not hold it drops its whole log and starts there.
 */
export interface AppendMessage extends MessageBase {
  readonly kind: "append";
  readonly prev: Position;
  readonly entries: readonly Uint8Array[];
  /** Indexes (ascending) of the entries that are atomic (see LogItem); absent: none. */
  readonly atomicEntries?: readonly number[];
  readonly markers: readonly EpochStart[];
  readonly commit: Position;
  readonly leaderStartOffset: number;
  readonly reset: boolean;
  /** With `reset`: the voters in force at `prev` (the leader's base). */
  readonly baseVoters?: readonly NodeId[];
  /**
   * A heartbeat that puts the group to sleep: nothing is in flight and every copy holds the
   * whole log and its commit; until the next message neither side ticks.
   */
  readonly quiet?: boolean;
}

/** A follower's epoch list near a rejected position, so the leader finds where they part. */
export interface RejectHint {
  /** The follower's epochs up to the rejected epoch, newest HINT_EPOCHS_MAX of them. */
  readonly epochs: readonly EpochStart[];
  /** Where the follower's run of the last listed epoch ends. */
  readonly endOffset: number;
  /** True when older epochs were left out. */
  readonly partial: boolean;
}

/**
 * Follower to leader. `ok`: the follower holds the leader's log up to `appended` and has it
 * durably up to `match`. Not ok with a hint: it did not hold the append's prev. Not ok without
 * a hint: the sender's term is higher (the receiver steps down). `counted` is false while the
 * follower is in repair mode or not a voter: its acks must not count toward commit.
 */
export interface AppendReplyMessage extends MessageBase {
  readonly kind: "appendReply";
  readonly ok: boolean;
  readonly counted: boolean;
  readonly match?: Position;
  readonly appended?: Position;
  readonly hint?: RejectHint;
}

/** A (pre-)vote request; `last` is the candidate's (end offset, last epoch). */
export interface VoteMessage extends MessageBase {
  readonly kind: "vote";
  readonly pre: boolean;
  readonly transfer: boolean;
  readonly last: Position;
}

export interface VoteReplyMessage extends MessageBase {
  readonly kind: "voteReply";
  readonly pre: boolean;
  readonly granted: boolean;
}

/**
 * Leader to its chosen successor: campaign now (leadership transfer). With `voters`, the
 * successor writes that configuration in its marker when it wins (a membership change).
 */
export interface TimeoutNowMessage extends MessageBase {
  readonly kind: "timeoutNow";
  readonly voters?: readonly NodeId[];
}

/**
 * From a node that forgot its votes (unreadable hard state) to a peer: "what is your term?".
 * Neither it nor its reply changes anyone's term; the reply's header carries the answer.
 */
export interface TermQueryMessage extends MessageBase {
  readonly kind: "termQuery";
}

export interface TermReplyMessage extends MessageBase {
  readonly kind: "termReply";
}

export type Message =
  | AppendMessage
  | AppendReplyMessage
  | VoteMessage
  | VoteReplyMessage
  | TimeoutNowMessage
  | TermQueryMessage
  | TermReplyMessage;

/** Repair mode (replication.md 5.7): set while a damaged replica catches up. */
export interface RepairState {
  /** The log end before the damage was cut, when the driver knows it. */
  readonly formerEndOffset?: number;
  /**
   * Set by `metaq cluster force-recover`: the operator made this node's copy the group's base.
   * While in repair the replica may vote for it (only) and its acks to it count.
   */
  readonly base?: NodeId;
}

/**
 * What a node must persist (fsync, atomic replace) before sending any message that depends on
 * it. `votedFor` 0 means no vote in `term`.
 */
export interface HardState {
  readonly term: number;
  readonly votedFor: NodeId;
  /** Present while the node is in repair mode. */
  readonly repair?: RepairState;
  /** True while the node does not know whom it voted for (its hard state was unreadable). */
  readonly votesForgotten?: boolean;
  /** The node treats itself as having voted in every term up to this one (0: none). */
  readonly voteFloor?: number;
}

export type DecodeResult =
  | { readonly ok: true; readonly groupId: number; readonly message: Message }
  | { readonly ok: false; readonly reason: string };

const KIND_CODES = {
  append: 1,
  appendReply: 2,
  vote: 3,
  voteReply: 4,
  timeoutNow: 5,
  termQuery: 6,
  termReply: 7,
} as const;
const KINDS = [
  "",
  "append",
  "appendReply",
  "vote",
  "voteReply",
  "timeoutNow",
  "termQuery",
  "termReply",
] as const;

const FLAG_RESET = 1;
const FLAG_QUIET = 2;
const FLAG_OK = 1;
const FLAG_COUNTED = 2;
const FLAG_HINT = 4;
const FLAG_HINT_PARTIAL = 8;
const FLAG_PRE = 1;
const FLAG_TRANSFER = 2;
const FLAG_GRANTED = 2;

/** Encodes one message for `groupId` as a self-checking frame. */
export function encodeMessage(groupId: number, message: Message): Uint8Array {
  const frame = new Uint8Array(encodedMessageBytes(message));
  encodeMessageInto(frame, 0, groupId, message);
  return frame;
}

/** Bytes of `message` encoded as a frame. */
export function encodedMessageBytes(message: Message): number {
  return FRAME_HEADER_BYTES + bodyBytesOf(message);
}

/**
 * Encodes `message` as a frame into `target` at `at` (encodedMessageBytes(message) bytes), so a
 * caller that wraps it (an envelope, a transport frame) writes a large entry only once.
 */
export function encodeMessageInto(
  target: Uint8Array,
  at: number,
  groupId: number,
  message: Message,
): void {
  const bodyBytes = checkedBodyBytes(groupId, message);
  const frame = target.subarray(at, at + FRAME_HEADER_BYTES + bodyBytes);
  assert(frame.length === FRAME_HEADER_BYTES + bodyBytes, "the target is too short");
  const writer = new Writer(frame.subarray(FRAME_HEADER_BYTES));
  const flags = writeBody(writer, message);
  writeHeader(frame, groupId, message, flags, bodyBytes, crc32(writer.bytes));
}

/**
 * Entries at least this long are referenced by encodeMessageParts, not copied: below it a
 * separate part costs more than the copy.
 */
export const ENTRY_REFERENCED_BYTES_MIN = 16 * 1024;

/**
 * The frame of `message` as parts to be sent one after the other, the first starting with
 * `headroom` free bytes (for the envelope and transport headers around it). Entries of at
 * least ENTRY_REFERENCED_BYTES_MIN are parts of their own, the caller's buffers themselves:
 * a batch sent to several followers is not copied once per follower into a new buffer. The
 * entries must not change until the parts are sent.
 */
export function encodeMessageParts(
  groupId: number,
  message: Message,
  headroom: number,
): Uint8Array[] {
  const bodyBytes = checkedBodyBytes(groupId, message);
  let referenced = 0;
  if (message.kind === "append") {
    for (const entry of message.entries) {
      if (entry.length >= ENTRY_REFERENCED_BYTES_MIN) referenced += entry.length;
    }
  }
  const copied = new Uint8Array(headroom + FRAME_HEADER_BYTES + bodyBytes - referenced);
  const bodyStart = headroom + FRAME_HEADER_BYTES;
  const writer = new Writer(copied.subarray(bodyStart), ENTRY_REFERENCED_BYTES_MIN);
  const flags = writeBody(writer, message);
  // The body in order: the copied bytes between references, and the referenced entries.
  const parts: Uint8Array[] = [];
  let from = 0;
  for (const reference of writer.references) {
    parts.push(
      parts.length === 0
        ? copied.subarray(0, bodyStart + reference.at)
        : writer.bytes.subarray(from, reference.at),
      reference.bytes,
    );
    from = reference.at;
  }
  if (parts.length === 0) parts.push(copied);
  else if (from < writer.bytes.length) parts.push(writer.bytes.subarray(from));
  const crc = crc32ContinueParts(parts.slice(1), crc32(parts[0].subarray(bodyStart)));
  writeHeader(copied.subarray(headroom), groupId, message, flags, bodyBytes, crc);
  return parts;
}

function checkedBodyBytes(groupId: number, message: Message): number {
  checkId(groupId, "group id", true);
  checkId(message.from, "from");
  checkId(message.to, "to");
  const bodyBytes = bodyBytesOf(message);
  assert(bodyBytes <= FRAME_BODY_BYTES_MAX, `message body of ${bodyBytes} bytes`);
  return bodyBytes;
}

/** Fills in the FRAME_HEADER_BYTES at the start of `frame`. */
function writeHeader(
  frame: Uint8Array,
  groupId: number,
  message: Message,
  flags: number,
  bodyBytes: number,
  bodyCrc: number,
): void {
  const view = new DataView(frame.buffer, frame.byteOffset, FRAME_HEADER_BYTES);
  view.setUint32(4, bodyCrc);
  view.setUint32(8, bodyBytes);
  view.setUint8(12, FORMAT_VERSION);
  view.setUint8(13, KIND_CODES[message.kind]);
  view.setUint16(14, flags);
  view.setUint32(16, groupId);
  view.setUint32(20, message.from);
  view.setUint32(24, message.to);
  setU64(view, 28, message.term);
  view.setUint32(36, 0);
  view.setUint32(0, crc32(frame.subarray(4, FRAME_HEADER_BYTES)));
}

/**
 * Total frame length announced by a header, once its checksum holds; for stream readers that
 * have at least FRAME_HEADER_BYTES bytes. A string is the reason the header is rejected.
 */
export function frameBytes(header: Uint8Array): number | string {
  if (header.length < FRAME_HEADER_BYTES) return "header is short";
  const view = new DataView(header.buffer, header.byteOffset, FRAME_HEADER_BYTES);
  if (view.getUint32(0) !== crc32(header.subarray(4, FRAME_HEADER_BYTES))) {
    return "header checksum mismatch";
  }
  if (view.getUint8(12) !== FORMAT_VERSION) return `unknown format version ${view.getUint8(12)}`;
  const bodyBytes = view.getUint32(8);
  if (bodyBytes > FRAME_BODY_BYTES_MAX) return `body length ${bodyBytes} is too large`;
  return FRAME_HEADER_BYTES + bodyBytes;
}

/** How decodeMessage may trust its input. */
export interface DecodeOptions {
  /**
   * The bytes already passed a checksum over all of them (a peer frame's CRC-32, checked by
   * PeerTransport): the body's own CRC-32 covers the same bytes and is not computed again (for a
   * 1 MiB append, 77 us per follower). The header's checksum is still checked.
   */
  readonly bodyVerified?: boolean;
}

/** Decodes one whole frame; any damage or malformed field is reported, never thrown. */
export function decodeMessage(frame: Uint8Array, options: DecodeOptions = {}): DecodeResult {
  const size = frameBytes(frame);
  if (typeof size === "string") return { ok: false, reason: size };
  if (frame.length !== size) return { ok: false, reason: `frame is ${frame.length} of ${size}` };
  const view = new DataView(frame.buffer, frame.byteOffset, frame.length);
  const body = frame.subarray(FRAME_HEADER_BYTES);
  if (!options.bodyVerified && view.getUint32(4) !== crc32(body)) {
    return { ok: false, reason: "body checksum mismatch" };
  }
  const kind = KINDS[view.getUint8(13)];
  if (!kind) return { ok: false, reason: `unknown message kind ${view.getUint8(13)}` };
  if (view.getUint32(36) !== 0) return { ok: false, reason: "reserved header bytes are set" };
  if (view.getUint32(28) >= 0x20_0000) return { ok: false, reason: "term exceeds 2^53" };
  const base: MessageBase = {
    from: view.getUint32(20),
    to: view.getUint32(24),
    term: getU64(view, 28),
  };
  const reader = new Reader(body);
  try {
    const message = readBody(reader, kind, view.getUint16(14), base);
    if (!reader.done) return { ok: false, reason: "body has trailing bytes" };
    const shapeError = message.kind === "append" ? appendShapeError(message) : undefined;
    if (shapeError) return { ok: false, reason: shapeError };
    return { ok: true, groupId: view.getUint32(16), message };
  } catch (error) {
    if (error instanceof DecodeError) return { ok: false, reason: error.message };
    throw error;
  }
}

/**
 * Why an append's items are malformed, or undefined when they are well formed: markers must
 * ascend past `prev.epoch` and sit on entry boundaries inside the message.
 */
export function appendShapeError(message: AppendMessage): string | undefined {
  const { prev, markers, entries } = message;
  if (entries.length > ENTRIES_PER_APPEND_MAX) return "too many entries";
  if (markers.length > MARKERS_PER_APPEND_MAX) return "too many markers";
  const boundaries = new Set<number>([prev.offset]);
  let offset = prev.offset;
  for (const entry of entries) {
    if (entry.length === 0) return "empty entry";
    offset += entry.length;
    boundaries.add(offset);
  }
  let epoch = prev.epoch;
  let start = prev.offset;
  for (const marker of markers) {
    if (marker.epoch <= epoch) return "marker epochs do not ascend";
    if (marker.startOffset < start) return "marker offsets descend";
    if (!boundaries.has(marker.startOffset)) return "marker is not at an entry boundary";
    epoch = marker.epoch;
    start = marker.startOffset;
  }
  return undefined;
}

/**
 * Encodes hard state as a fixed-size checksummed record (write it with temp file + rename):
 * CRC-32 of bytes 4..39 (u32), format version (u8), flags (u8: 1 repair, 2 former end known,
 * 4 votes forgotten, 8 repair base set), zero (u16), term (u64), votedFor (u32), repair base
 * (u32, 0 unless flag 8), former end (u64), vote floor (u64).
 */
export function encodeHardState(state: HardState): Uint8Array {
  checkId(state.votedFor, "votedFor", true);
  const bytes = new Uint8Array(HARD_STATE_BYTES);
  const view = new DataView(bytes.buffer);
  const former = state.repair?.formerEndOffset;
  const base = state.repair?.base;
  if (base !== undefined) checkId(base, "repair base", false);
  const flags = (state.repair ? 1 : 0) | (former !== undefined ? 2 : 0) |
    (state.votesForgotten ? 4 : 0) | (base !== undefined ? 8 : 0);
  view.setUint8(4, HARD_STATE_VERSION);
  view.setUint8(5, flags);
  setU64(view, 8, state.term);
  view.setUint32(16, state.votedFor);
  view.setUint32(20, base ?? 0);
  setU64(view, 24, former ?? 0);
  setU64(view, 32, state.voteFloor ?? 0);
  view.setUint32(0, crc32(bytes.subarray(4)));
  return bytes;
}

/** Decodes hard state; undefined means unreadable (the caller applies the forgotten-vote rule). */
export function decodeHardState(bytes: Uint8Array): HardState | undefined {
  if (bytes.length !== HARD_STATE_BYTES) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  if (view.getUint32(0) !== crc32(bytes.subarray(4))) return undefined;
  if (view.getUint8(4) !== HARD_STATE_VERSION) return undefined;
  const flags = view.getUint8(5);
  if ((flags & ~15) !== 0 || view.getUint16(6) !== 0) return undefined;
  const base = view.getUint32(20);
  // A base belongs to repair mode and is a node id; anything else is not our record.
  if ((flags & 8) !== 0 ? base === 0 || (flags & 1) === 0 : base !== 0) return undefined;
  const repair: RepairState | undefined = flags & 1
    ? {
      ...(flags & 2 ? { formerEndOffset: getU64(view, 24) } : {}),
      ...(flags & 8 ? { base } : {}),
    }
    : undefined;
  const voteFloor = getU64(view, 32);
  return {
    term: getU64(view, 8),
    votedFor: view.getUint32(16),
    ...(repair ? { repair } : {}),
    ...(flags & 4 ? { votesForgotten: true } : {}),
    ...(voteFloor > 0 ? { voteFloor } : {}),
  };
}

function bodyBytesOf(message: Message): number {
  switch (message.kind) {
    case "append": {
      let bytes = 16 + 16 + 8 + 4 + 4 + 4 + 4 * (message.baseVoters?.length ?? 0);
      for (const marker of message.markers) bytes += 20 + 4 * (marker.voters?.length ?? 0);
      for (const entry of message.entries) bytes += 4 + entry.length;
      return bytes;
    }
    case "appendReply":
      return 32 + 8 + 4 + 16 * (message.hint?.epochs.length ?? 0);
    case "vote":
      return 16;
    case "timeoutNow":
      return 4 + 4 * (message.voters?.length ?? 0);
    case "voteReply":
    case "termQuery":
    case "termReply":
      return 0;
  }
}

function writeBody(writer: Writer, message: Message): number {
  switch (message.kind) {
    case "append": {
      writer.position(message.prev);
      writer.position(message.commit);
      writer.u64(message.leaderStartOffset);
      writer.u32(message.markers.length);
      writer.u32(message.entries.length);
      writer.ids(message.baseVoters);
      for (const marker of message.markers) {
        writer.u64(marker.epoch);
        writer.u64(marker.startOffset);
        writer.ids(marker.voters);
      }
      // The atomic indexes ascend: one cursor walks them beside the entries (no set per frame).
      const atomic = message.atomicEntries ?? [];
      let next = 0;
      message.entries.forEach((entry, index) => {
        const flagged = atomic[next] === index;
        if (flagged) next++;
        writer.u32(flagged ? (entry.length | ATOMIC_ENTRY_BIT) >>> 0 : entry.length);
        writer.entry(entry);
      });
      return (message.reset ? FLAG_RESET : 0) | (message.quiet ? FLAG_QUIET : 0);
    }
    case "appendReply":
      return writeAppendReply(writer, message);
    case "vote":
      writer.position(message.last);
      return (message.pre ? FLAG_PRE : 0) | (message.transfer ? FLAG_TRANSFER : 0);
    case "voteReply":
      return (message.pre ? FLAG_PRE : 0) | (message.granted ? FLAG_GRANTED : 0);
    case "timeoutNow":
      writer.ids(message.voters);
      return 0;
    case "termQuery":
    case "termReply":
      return 0;
  }
}

function writeAppendReply(writer: Writer, message: AppendReplyMessage): number {
  const zero = { offset: 0, epoch: 0 };
  assert(!message.ok || (message.match && message.appended), "ok reply without positions");
  writer.position(message.ok ? message.match! : zero);
  writer.position(message.ok ? message.appended! : zero);
  const hint = message.hint;
  writer.u64(hint?.endOffset ?? 0);
  writer.u32(hint?.epochs.length ?? 0);
  for (const pair of hint?.epochs ?? []) {
    writer.u64(pair.epoch);
    writer.u64(pair.startOffset);
  }
  return (message.ok ? FLAG_OK : 0) | (message.counted ? FLAG_COUNTED : 0) |
    (hint ? FLAG_HINT : 0) | (hint?.partial ? FLAG_HINT_PARTIAL : 0);
}

function readBody(
  reader: Reader,
  kind: Exclude<(typeof KINDS)[number], "">,
  flags: number,
  base: MessageBase,
): Message {
  switch (kind) {
    case "append":
      return readAppend(reader, flags, base);
    case "appendReply":
      return readAppendReply(reader, flags, base);
    case "vote": {
      const last = reader.position();
      const pre = (flags & FLAG_PRE) !== 0;
      return { kind, ...base, pre, transfer: (flags & FLAG_TRANSFER) !== 0, last };
    }
    case "voteReply":
      return {
        kind,
        ...base,
        pre: (flags & FLAG_PRE) !== 0,
        granted: (flags & FLAG_GRANTED) !== 0,
      };
    case "timeoutNow": {
      const voters = reader.ids();
      return { kind, ...base, ...(voters ? { voters } : {}) };
    }
    case "termQuery":
    case "termReply":
      return { kind, ...base };
  }
}

function readAppend(reader: Reader, flags: number, base: MessageBase): AppendMessage {
  const prev = reader.position();
  const commit = reader.position();
  const leaderStartOffset = reader.u64();
  const markerCount = reader.count(20, MARKERS_PER_APPEND_MAX);
  const entryCount = reader.count(4, ENTRIES_PER_APPEND_MAX);
  const baseVoters = reader.ids();
  const markers: EpochStart[] = [];
  for (let index = 0; index < markerCount; index++) {
    const epoch = reader.u64();
    const startOffset = reader.u64();
    const voters = reader.ids();
    markers.push({ epoch, startOffset, ...(voters ? { voters } : {}) });
  }
  const entries: Uint8Array[] = [];
  const atomicEntries: number[] = [];
  for (let index = 0; index < entryCount; index++) {
    const word = reader.u32();
    if (word & ATOMIC_ENTRY_BIT) atomicEntries.push(index);
    entries.push(reader.raw(word & ~ATOMIC_ENTRY_BIT));
  }
  const reset = (flags & FLAG_RESET) !== 0;
  if (baseVoters && !reset) throw new DecodeError("base voters without a reset");
  return {
    kind: "append",
    ...base,
    prev,
    entries,
    ...(atomicEntries.length > 0 ? { atomicEntries } : {}),
    markers,
    commit,
    leaderStartOffset,
    reset,
    ...(baseVoters ? { baseVoters } : {}),
    ...((flags & FLAG_QUIET) !== 0 ? { quiet: true } : {}),
  };
}

function readAppendReply(reader: Reader, flags: number, base: MessageBase): AppendReplyMessage {
  const match = reader.position();
  const appended = reader.position();
  const endOffset = reader.u64();
  const epochCount = reader.count(16, HINT_EPOCHS_MAX);
  const epochs: EpochStart[] = [];
  for (let index = 0; index < epochCount; index++) {
    epochs.push({ epoch: reader.u64(), startOffset: reader.u64() });
  }
  const ok = (flags & FLAG_OK) !== 0;
  const hint = (flags & FLAG_HINT) !== 0
    ? { epochs, endOffset, partial: (flags & FLAG_HINT_PARTIAL) !== 0 }
    : undefined;
  return {
    kind: "appendReply",
    ...base,
    ok,
    counted: (flags & FLAG_COUNTED) !== 0,
    ...(ok ? { match, appended } : {}),
    ...(hint ? { hint } : {}),
  };
}

class DecodeError extends Error {
  override readonly name = "DecodeError";
}

class Writer {
  readonly bytes: Uint8Array;
  /** Entries left out of `bytes`: each belongs before the byte at `at`. */
  readonly references: { readonly at: number; readonly bytes: Uint8Array }[] = [];
  readonly #referencedBytesMin: number;
  #view: DataView;
  #at = 0;

  /**
   * Writes into `bytes` (exactly the body's size, less the entries it references) from its
   * start; entries of at least `referencedBytesMin` are referenced instead of copied.
   */
  constructor(bytes: Uint8Array, referencedBytesMin = Infinity) {
    this.bytes = bytes;
    this.#referencedBytesMin = referencedBytesMin;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  entry(bytes: Uint8Array): void {
    if (bytes.length >= this.#referencedBytesMin) this.references.push({ at: this.#at, bytes });
    else this.raw(bytes);
  }

  u32(value: number): void {
    this.#view.setUint32(this.#at, value);
    this.#at += 4;
  }

  u64(value: number): void {
    setU64(this.#view, this.#at, value);
    this.#at += 8;
  }

  position(position: Position): void {
    this.u64(position.offset);
    this.u64(position.epoch);
  }

  /** A node id list: count, then the ids (an absent list is written as empty). */
  ids(ids: readonly NodeId[] | undefined): void {
    assert((ids?.length ?? 0) <= VOTERS_MAX, `${ids?.length} ids`);
    this.u32(ids?.length ?? 0);
    for (const id of ids ?? []) {
      checkId(id, "voter");
      this.u32(id);
    }
  }

  raw(bytes: Uint8Array): void {
    this.bytes.set(bytes, this.#at);
    this.#at += bytes.length;
  }
}

class Reader {
  #bytes: Uint8Array;
  #view: DataView;
  #at = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  get done(): boolean {
    return this.#at === this.#bytes.length;
  }

  u32(): number {
    this.#need(4);
    const value = this.#view.getUint32(this.#at);
    this.#at += 4;
    return value;
  }

  u64(): number {
    this.#need(8);
    const high = this.#view.getUint32(this.#at);
    if (high >= 0x20_0000) throw new DecodeError("integer field exceeds 2^53");
    const value = high * TWO_POW_32 + this.#view.getUint32(this.#at + 4);
    this.#at += 8;
    return value;
  }

  position(): Position {
    return { offset: this.u64(), epoch: this.u64() };
  }

  /** A node id list, ascending and without zero; undefined when empty. */
  ids(): NodeId[] | undefined {
    const count = this.count(4, VOTERS_MAX);
    if (count === 0) return undefined;
    const ids: NodeId[] = [];
    for (let index = 0; index < count; index++) {
      const id = this.u32();
      if (id === 0 || (ids.length > 0 && id <= ids[ids.length - 1])) {
        throw new DecodeError("voter ids are not ascending node ids");
      }
      ids.push(id);
    }
    return ids;
  }

  /** A count of items of at least `itemBytes` each, bounded by `max` and by the bytes left. */
  count(itemBytes: number, max: number): number {
    const value = this.u32();
    if (value > max) throw new DecodeError(`count ${value} exceeds ${max}`);
    if (value * itemBytes > this.#bytes.length - this.#at) {
      throw new DecodeError(`count ${value} exceeds the body`);
    }
    return value;
  }

  /** A view (not a copy) of the next `length` bytes: decoded entries share the frame's buffer. */
  raw(length: number): Uint8Array {
    this.#need(length);
    const bytes = this.#bytes.subarray(this.#at, this.#at + length);
    this.#at += length;
    return bytes;
  }

  #need(bytes: number): void {
    if (this.#at + bytes > this.#bytes.length) throw new DecodeError("body is truncated");
  }
}

function setU64(view: DataView, at: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `u64 field ${value}`);
  view.setUint32(at, Math.floor(value / TWO_POW_32));
  view.setUint32(at + 4, value >>> 0);
}

function getU64(view: DataView, at: number): number {
  return view.getUint32(at) * TWO_POW_32 + view.getUint32(at + 4);
}

function checkId(id: number, what: string, zeroAllowed = false): void {
  assert(Number.isInteger(id) && id >= (zeroAllowed ? 0 : 1) && id <= NODE_ID_MAX, `${what} ${id}`);
}

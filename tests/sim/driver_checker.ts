/**
 * @module The checker of the driver simulator: safety invariants held against the real driver
 * (ClusterNode, Replica, ReplicatedLog) from what it shows the outside: its trace events (roles,
 * records appended with their CRC, truncations, commits), the frames it sends, the durable
 * contents of its disk (what a power cut would leave), what readers can read, and which puts
 * were acknowledged. It never looks inside the Raft core. Configurations come from the trace
 * too: the voters a new leader's marker names (S6 counts them), the newest committed one (S9
 * counts it), and the one a copy's log named when a vote request reached it (S11).
 * A violation throws SafetyViolation
 * naming the invariant (DRIVER_INVARIANTS); the mutation canaries are caught by these names.
 */
import { crc32 } from "../../lib/crc32.ts";
import { decodeEnvelope } from "../../lib/cluster/envelope.ts";
import {
  decodeHardState,
  type HardState,
  type Message,
  type NodeId,
} from "../../lib/cluster/messages.ts";
import { HARD_STATE_FILE } from "../../lib/cluster/state_files.ts";
import type { TraceEvent } from "../../lib/cluster/trace.ts";
import { RECORD_DATA_BYTES_MAX, RECORD_HEADER_BYTES } from "../../lib/limits.ts";
import { walkRecords } from "../../lib/protocol/record.ts";
import type { Log } from "../../lib/store/log.ts";
import { idsOf } from "../../lib/store/missing_records.ts";
import { parseSegmentFileName } from "../../lib/store/segment.ts";
import type { MemoryStorage } from "../../lib/store/storage_memory.ts";
import { joinPath } from "../../lib/store/storage.ts";
import { SafetyViolation } from "./checker.ts";

/** The invariants, by the name a violation reports. */
export const DRIVER_INVARIANTS = {
  S1: "at most one leader per term in each group",
  S4: "a new leader holds every record committed in earlier terms",
  S5: "every node's log agrees with the committed chain below its commit",
  S6: "a leader commits only what a majority of the group's holders stores durably",
  S7: "the hard state a message depends on is durable before it is sent",
  S9: "an acknowledged record is committed and stays durable on a majority of its holders",
  S10: "readers see committed records only (applied <= commit)",
  S11: "a node removed from a group never votes in it",
  S12: "an atomic batch is one run in every log: all of its records or none, nothing between",
} as const;

export type DriverInvariant = keyof typeof DRIVER_INVARIANTS;

function fail(check: DriverInvariant, detail: string): never {
  throw new SafetyViolation(check, detail);
}

/** One record as the checker knows it: where it ends and the CRC of its bytes. */
interface RecordMark {
  readonly to: number;
  readonly crc: number;
}

/** What one node's copy of one group looks like from its trace. */
interface CopyView {
  role: string;
  term: number;
  /** Records of the written log by start offset, and their start offsets in order. */
  readonly records: Map<number, RecordMark>;
  starts: number[];
  /** Below this, the copy's records were checked against the chain. */
  checkedTo: number;
  /** Below this, what readers could read was checked against the chain. */
  readableChecked: number;
  /** The voters of this copy's marker while it leads (its configuration for the term). */
  voters?: readonly NodeId[];
  /**
   * S11: vote requests this copy handled, by `candidate:term:pre`: whether its own log named it
   * a voter when any of them arrived (its answer is decided on that configuration).
   */
  readonly asked: Map<string, boolean>;
}

/** The committed records of one group, as leaders committed them. */
interface Chain {
  readonly records: Map<number, RecordMark>;
  tip: number;
  /** The highest offset each term's leader committed. */
  readonly byTerm: Map<number, number>;
  /** S1: term -> the node that led it. */
  readonly leaders: Map<number, NodeId>;
  /** The newest committed configuration (the voters of a committed marker), once one is. */
  config?: { readonly epoch: number; readonly voters: readonly NodeId[] };
}

export interface DriverCheckerWorld {
  /** Nodes holding `group` at the start (before any configuration of it is committed). */
  holders(group: string): readonly NodeId[];
  /** The memory behind node `id`'s disk (for what is durable). */
  disk(id: NodeId): MemoryStorage;
  /** The directory of `group` on every node. */
  dirOf(group: string): string;
}

export class DriverChecker {
  readonly #world: DriverCheckerWorld;
  readonly #chains = new Map<string, Chain>();
  readonly #copies = new Map<string, CopyView>();
  /** Acknowledged records by group: offset -> CRC. */
  readonly #acked = new Map<string, Map<number, RecordMark>>();
  /** Atomic batches by group: the message ids of each, in order. */
  readonly #batches = new Map<string, bigint[][]>();
  readonly #hardStates = new WeakMap<Uint8Array, HardState | undefined>();
  readonly #hardStatePaths = new Map<string, string>();
  /** Per group, where the chain's last record began when S6 last looked. */
  readonly #lastStart = new Map<string, number>();
  commits = 0;
  elections = 0;
  /** Times a copy went to sleep (quiescence). */
  sleeps = 0;
  acks = 0;

  constructor(world: DriverCheckerWorld) {
    this.#world = world;
  }

  /** A trace event of node `id`'s copy of `group`, as the replica recorded it. */
  onTrace(id: NodeId, group: string, event: TraceEvent): void {
    const copy = this.#copy(id, group);
    switch (event.event) {
      case "role":
        copy.role = event.role;
        copy.term = event.term;
        if (event.role === "leader") {
          copy.voters = event.voters;
          this.#onElected(id, group, event.term, copy);
        }
        return;
      case "append":
        return this.#onAppend(id, group, copy, event.from, event.to, event.crc);
      case "truncate":
        return this.#onTruncate(copy, event.to);
      case "commit":
        return this.#onCommit(id, group, copy, event.offset);
      case "repair":
        return;
      case "quiet":
        if (event.quiet) this.sleeps++;
        return;
      case "configuration": {
        const chain = this.#chain(group);
        if (!chain.config || event.epoch > chain.config.epoch) {
          chain.config = { epoch: event.epoch, voters: event.voters };
        }
        return;
      }
      case "voteRequest": {
        const key = `${event.from}:${event.term}:${event.pre}`;
        copy.asked.set(key, copy.asked.get(key) === true || event.voters.includes(id));
        return;
      }
    }
  }

  /** Node `id` lost power: every acknowledged record must still be durable on a majority. */
  onCrash(id: NodeId): void {
    this.onRestart(id);
    this.checkAckedDurable();
  }

  /** A new run of node `id` starts: it leads nothing until its trace says so. */
  onRestart(id: NodeId): void {
    for (const [key, copy] of this.#copies) {
      if (key.startsWith(`${id}/`)) copy.role = "follower";
    }
  }

  /**
   * S7: a frame node `from` sends, checked against its durable hard state. S11: a granted vote
   * or pre-vote, checked against the configuration the sender's log named when the request came.
   */
  onSend(from: NodeId, payload: Uint8Array): void {
    const message = peekRaft(payload);
    if (!message) return; // only Raft messages depend on the hard state
    const { group } = message;
    if (message.kind === "voteReply" && message.granted) this.#checkVoter(from, group, message);
    // Pre-votes carry a term not yet taken; a term query comes from a node that forgot its own.
    if ((message.kind === "vote" || message.kind === "voteReply") && message.pre) return;
    if (message.kind === "termQuery") return;
    const durable = this.#durableHardState(from, group);
    const term = durable?.term ?? 0;
    if (message.term > term) {
      fail(
        "S7",
        `node ${from} sent ${message.kind} of term ${message.term} in ${group} while its durable ` +
          `term is ${term}`,
      );
    }
    if (message.kind === "voteReply" && message.granted && message.term === term) {
      if (durable?.votedFor !== message.to) {
        fail(
          "S7",
          `node ${from} granted its vote to ${message.to} in term ${message.term} of ${group} ` +
            `before persisting it (durable vote: ${durable?.votedFor ?? "none"})`,
        );
      }
    }
  }

  /** S9, part one: a put answered ok lies committed at the offset it was given. */
  onAck(group: string, offset: number, record: Uint8Array): void {
    const chain = this.#chain(group);
    const mark = { to: offset + record.length, crc: crc32(record) };
    const committed = chain.records.get(offset);
    if (!committed || committed.crc !== mark.crc || committed.to !== mark.to) {
      fail("S9", `a put to ${group} was acknowledged at ${offset} but is not committed there`);
    }
    let acked = this.#acked.get(group);
    if (!acked) this.#acked.set(group, acked = new Map());
    acked.set(offset, mark);
    this.acks++;
  }

  /** A client made an atomic batch for `group` (whole encoded records); S12 follows it. */
  onBatch(group: string, bytes: Uint8Array): void {
    const ids = idsOf(bytes);
    let batches = this.#batches.get(group);
    if (!batches) this.#batches.set(group, batches = []);
    batches.push(ids);
  }

  /**
   * S10: everything a reader of node `id` can read in `group` now (below `log.endOffset`) is a
   * committed record; checked from where the last look ended.
   */
  checkReadable(id: NodeId, group: string, log: Log): void {
    const copy = this.#copy(id, group);
    const end = log.endOffset;
    if (end <= copy.readableChecked) return;
    const chain = this.#chain(group);
    const from = Math.max(copy.readableChecked, log.startOffset);
    if (end > chain.tip) {
      fail(
        "S10",
        `node ${id} lets readers of ${group} read up to ${end}, beyond the commit ${chain.tip}`,
      );
    }
    const bytes = readRange(log, from, end);
    walkRecords(bytes, RECORD_DATA_BYTES_MAX, (position, length) => {
      const offset = from + position;
      const record = bytes.subarray(position, position + RECORD_HEADER_BYTES + length);
      const committed = chain.records.get(offset);
      if (!committed || committed.crc !== crc32(record)) {
        fail("S10", `node ${id} serves a record of ${group} at ${offset} that was not committed`);
      }
    });
    copy.readableChecked = end;
  }

  /**
   * S9, part two: every acknowledged record is durable (it would survive a power cut now) on a
   * majority of its group's holders.
   */
  checkAckedDurable(): void {
    for (const [group, acked] of this.#acked) {
      // Each committed configuration's marker was durable on a majority of its voters, and
      // every acknowledged record lies below it.
      const holders = this.#chain(group).config?.voters ?? this.#world.holders(group);
      const durable = holders.map((id) => this.#durableRecords(id, group));
      const majority = Math.floor(holders.length / 2) + 1;
      for (const [offset, mark] of acked) {
        const count = durable.filter((records) => {
          const found = records.get(offset);
          return found !== undefined && found.crc === mark.crc && found.to === mark.to;
        }).length;
        if (count < majority) {
          fail(
            "S9",
            `the record of ${group} acknowledged at ${offset} is durable on ${count} of ` +
              `${holders.length} holders`,
          );
        }
      }
    }
  }

  /**
   * At the end, once every copy caught up: each node's log holds every acknowledged record
   * (S9) and agrees with the chain below the commit (S5), byte for byte.
   */
  checkFinal(id: NodeId, group: string, log: Log): void {
    const chain = this.#chain(group);
    const end = log.endOffset;
    const start = log.startOffset;
    const bytes = readRange(log, start, end);
    const found = new Map<number, number>();
    walkRecords(bytes, RECORD_DATA_BYTES_MAX, (position, length) => {
      const record = bytes.subarray(position, position + RECORD_HEADER_BYTES + length);
      found.set(start + position, crc32(record));
    });
    for (const [offset, crc] of found) {
      if (chain.records.get(offset)?.crc !== crc) {
        fail("S5", `node ${id} holds a record of ${group} at ${offset} off the committed chain`);
      }
    }
    for (const [offset, mark] of this.#acked.get(group) ?? []) {
      if (offset >= start && found.get(offset) !== mark.crc) {
        fail("S9", `node ${id} lost the record of ${group} acknowledged at ${offset}`);
      }
    }
    this.#checkBatches(id, group, bytes);
  }

  /** S12 on one copy's whole log: each batch's ids appear once each, in order, side by side. */
  #checkBatches(id: NodeId, group: string, bytes: Uint8Array): void {
    const batches = this.#batches.get(group);
    if (!batches) return;
    const ids = idsOf(bytes);
    const indexes = new Map<bigint, number[]>();
    ids.forEach((each, index) => indexes.set(each, [...(indexes.get(each) ?? []), index]));
    for (const batch of batches) {
      const found = batch.map((each) => indexes.get(each) ?? []);
      if (found.every((places) => places.length === 0)) continue;
      const first = found[0][0];
      const whole = found.every((places, index) =>
        places.length === 1 && first !== undefined && places[0] === first + index
      );
      if (!whole) {
        fail(
          "S12",
          `node ${id}'s log of ${group} holds the batch ${batch.join(",")} as records ${
            found.map((places) => `[${places.join(",")}]`).join(" ")
          } (one run expected)`,
        );
      }
    }
  }

  /** The committed end of `group` as its leaders committed it. */
  tipOf(group: string): number {
    return this.#chain(group).tip;
  }

  /**
   * S11: node `from` granted `message` only if its own log named it a voter when the request
   * arrived. A request handled several times (duplicates) counts if any arrival found it a
   * voter; a grant whose request this run never traced (none should be) is not judged.
   */
  #checkVoter(from: NodeId, group: string, message: RaftFacts): void {
    const asked = this.#copy(from, group).asked.get(`${message.to}:${message.term}:${message.pre}`);
    if (asked === false) {
      fail(
        "S11",
        `node ${from} granted its ${message.pre ? "pre-vote" : "vote"} in term ${message.term} ` +
          `of ${group} to ${message.to} while its own log did not name it a voter`,
      );
    }
  }

  // Trace events.

  #onElected(id: NodeId, group: string, term: number, copy: CopyView): void {
    const chain = this.#chain(group);
    const other = chain.leaders.get(term);
    if (other !== undefined && other !== id) {
      fail("S1", `nodes ${other} and ${id} both led term ${term} of ${group}`);
    }
    chain.leaders.set(term, id);
    this.elections++;
    // S4: every record committed by the leaders of earlier terms is in the new leader's log.
    let needed = 0;
    for (const [committedTerm, offset] of chain.byTerm) {
      if (committedTerm < term) needed = Math.max(needed, offset);
    }
    this.#matchChain(id, group, copy, needed, "S4", `leader of term ${term}`);
  }

  #onAppend(
    id: NodeId,
    group: string,
    copy: CopyView,
    from: number,
    to: number,
    crc: number,
  ): void {
    const last = copy.starts[copy.starts.length - 1];
    const end = last === undefined ? from : copy.records.get(last)!.to;
    if (from !== end && last !== undefined) {
      throw new Error(`node ${id} appended ${group} at ${from} after a log ending at ${end}`);
    }
    copy.records.set(from, { to, crc });
    copy.starts.push(from);
  }

  #onTruncate(copy: CopyView, to: number): void {
    while (copy.starts.length > 0 && copy.starts[copy.starts.length - 1] >= to) {
      copy.records.delete(copy.starts.pop()!);
    }
    copy.checkedTo = Math.min(copy.checkedTo, to);
  }

  /** S5: a leader's commit extends the chain along its log; anyone's commit agrees with it. */
  #onCommit(id: NodeId, group: string, copy: CopyView, offset: number): void {
    const chain = this.#chain(group);
    this.commits++;
    if (copy.role === "leader") {
      this.#extendChain(id, group, copy, chain, offset);
      chain.byTerm.set(copy.term, Math.max(chain.byTerm.get(copy.term) ?? 0, offset));
      return;
    }
    if (offset > chain.tip) {
      fail(
        "S5",
        `follower ${id} committed ${group} to ${offset}, beyond every leader (${chain.tip})`,
      );
    }
    this.#matchChain(id, group, copy, offset, "S5", "follower");
  }

  #extendChain(id: NodeId, group: string, copy: CopyView, chain: Chain, offset: number): void {
    this.#matchChain(id, group, copy, Math.min(offset, chain.tip), "S5", "leader");
    if (offset <= chain.tip) return;
    let at = chain.tip;
    while (at < offset) {
      const record = copy.records.get(at);
      if (!record) {
        fail("S5", `leader ${id} committed ${group} to ${offset} but holds no record at ${at}`);
      }
      chain.records.set(at, record);
      at = record.to;
    }
    if (at !== offset) fail("S5", `leader ${id} committed ${group} inside a record (${offset})`);
    chain.tip = offset;
    copy.checkedTo = Math.max(copy.checkedTo, offset);
    this.#checkDurableQuorum(id, group, chain, offset);
  }

  /**
   * S6: the record a leader's commit ends at is durable on a majority of holders (its copy on
   * a disk would survive a power cut). A segment is synced before the next one starts, so a
   * copy holding that record durably holds every record before it durably too.
   */
  #checkDurableQuorum(id: NodeId, group: string, chain: Chain, offset: number): void {
    let last: number | undefined;
    for (let at = this.#lastStart.get(group) ?? 0; at < offset; at = chain.records.get(at)!.to) {
      last = at;
    }
    if (last === undefined) return;
    this.#lastStart.set(group, last);
    const mark = chain.records.get(last)!;
    // The leader counts the voters its own marker names (its configuration for the term).
    const holders = this.#copy(id, group).voters ?? this.#world.holders(group);
    const durable = holders.filter((holder) => this.#durablyHolds(holder, group, last, mark));
    if (durable.length < Math.floor(holders.length / 2) + 1) {
      fail(
        "S6",
        `leader ${id} committed ${group} to ${offset} while the record at ${last} is durable ` +
          `only on ${durable.length === 0 ? "no node" : `nodes ${durable.join(", ")}`}`,
      );
    }
  }

  /** Whether node `id`'s disk would keep the record `mark` at `offset` after a power cut now. */
  #durablyHolds(id: NodeId, group: string, offset: number, mark: RecordMark): boolean {
    const disk = this.#world.disk(id);
    const dir = this.#world.dirOf(group);
    let segment: { start: number; name: string } | undefined;
    for (const name of disk.durableList(dir)) {
      const start = parseSegmentFileName(name);
      if (start !== undefined && start <= offset && (!segment || start > segment.start)) {
        segment = { start, name };
      }
    }
    if (!segment) return false;
    const bytes = disk.durableFile(joinPath(dir, segment.name));
    if (!bytes || bytes.length < mark.to - segment.start) return false;
    return crc32(bytes.subarray(offset - segment.start, mark.to - segment.start)) === mark.crc;
  }

  /** Checks that `copy` holds the chain's records from where it was last checked up to `to`. */
  #matchChain(
    id: NodeId,
    group: string,
    copy: CopyView,
    to: number,
    check: DriverInvariant,
    who: string,
  ): void {
    const chain = this.#chain(group);
    let at = copy.checkedTo;
    // Records below the copy's first one were compacted away or came before a reset.
    const first = copy.starts[0];
    if (first !== undefined && at < first) at = first;
    while (at < to) {
      const committed = chain.records.get(at);
      const held = copy.records.get(at);
      if (!committed) {
        fail(check, `${group}: no committed record at ${at} (chain tip ${chain.tip})`);
      }
      if (!held || held.crc !== committed.crc || held.to !== committed.to) {
        fail(check, `${who} ${id} of ${group} lacks the committed record at ${at}`);
      }
      at = committed.to;
    }
    copy.checkedTo = Math.max(copy.checkedTo, to);
  }

  // Durable state.

  #durableHardState(id: NodeId, group: string): HardState | undefined {
    let path = this.#hardStatePaths.get(group);
    if (path === undefined) {
      this.#hardStatePaths.set(group, path = joinPath(this.#world.dirOf(group), HARD_STATE_FILE));
    }
    const bytes = this.#world.disk(id).durableFile(path);
    if (!bytes) return undefined;
    if (!this.#hardStates.has(bytes)) this.#hardStates.set(bytes, decodeHardState(bytes));
    return this.#hardStates.get(bytes);
  }

  /** The records a power cut would leave in node `id`'s copy of `group`, by offset. */
  #durableRecords(id: NodeId, group: string): Map<number, RecordMark> {
    const disk = this.#world.disk(id);
    const dir = this.#world.dirOf(group);
    const records = new Map<number, RecordMark>();
    for (const name of disk.durableList(dir)) {
      const start = parseSegmentFileName(name);
      if (start === undefined) continue;
      const bytes = disk.durableFile(joinPath(dir, name));
      if (!bytes) continue;
      walkRecords(bytes, RECORD_DATA_BYTES_MAX, (position, length) => {
        const end = position + RECORD_HEADER_BYTES + length;
        records.set(start + position, {
          to: start + end,
          crc: crc32(bytes.subarray(position, end)),
        });
      });
    }
    return records;
  }

  #chain(group: string): Chain {
    let chain = this.#chains.get(group);
    if (!chain) {
      chain = { records: new Map(), tip: 0, byTerm: new Map(), leaders: new Map() };
      this.#chains.set(group, chain);
    }
    return chain;
  }

  #copy(id: NodeId, group: string): CopyView {
    const key = `${id}/${group}`;
    let copy = this.#copies.get(key);
    if (!copy) {
      copy = {
        role: "follower",
        term: 0,
        records: new Map(),
        starts: [],
        checkedTo: 0,
        readableChecked: 0,
        asked: new Map(),
      };
      this.#copies.set(key, copy);
    }
    return copy;
  }
}

/** What S7 needs of a Raft frame. */
interface RaftFacts {
  readonly group: string;
  readonly kind: Message["kind"];
  readonly to: NodeId;
  readonly term: number;
  readonly pre?: boolean;
  readonly granted?: boolean;
}

/** Byte offsets in a Raft message frame's header (messages.ts). */
const MESSAGE_KIND_AT = 13;
const MESSAGE_TO_AT = 24;
const MESSAGE_TERM_AT = 28;
/** Message kinds by their code in the header. */
const MESSAGE_KINDS: readonly (Message["kind"] | undefined)[] = [
  undefined,
  "append",
  "appendReply",
  "vote",
  "voteReply",
  "timeoutNow",
  "termQuery",
  "termReply",
];
const KIND_VOTE = 3;
const KIND_VOTE_REPLY = 4;
const groupNames = new Map<string, string>();

/**
 * The facts of a Raft frame: votes are decoded whole (they are few); other messages, appends
 * with their entries among them, only have their header read, which is all S7 needs.
 */
function peekRaft(payload: Uint8Array): RaftFacts | undefined {
  if (payload[0] !== 1 || payload.length < 3) return undefined;
  const nameLength = (payload[1] << 8) | payload[2];
  const frame = payload.subarray(3 + nameLength);
  const kindCode = frame[MESSAGE_KIND_AT];
  if (kindCode === KIND_VOTE || kindCode === KIND_VOTE_REPLY) {
    const envelope = decodeEnvelope(payload);
    if (typeof envelope === "string" || envelope.kind !== "raft") return undefined;
    const { message } = envelope;
    if (message.kind !== "vote" && message.kind !== "voteReply") return undefined;
    return {
      group: envelope.group,
      kind: message.kind,
      to: message.to,
      term: message.term,
      pre: message.pre,
      granted: message.kind === "voteReply" && message.granted,
    };
  }
  const kind = MESSAGE_KINDS[kindCode];
  if (kind === undefined || frame.length < MESSAGE_TERM_AT + 8) return undefined;
  const nameBytes = payload.subarray(3, 3 + nameLength);
  const key = String.fromCharCode(...nameBytes);
  let group = groupNames.get(key);
  if (group === undefined) groupNames.set(key, group = new TextDecoder().decode(nameBytes));
  const view = new DataView(frame.buffer, frame.byteOffset, frame.length);
  const term = view.getUint32(MESSAGE_TERM_AT) * 0x1_0000_0000 +
    view.getUint32(MESSAGE_TERM_AT + 4);
  return { group, kind, to: view.getUint32(MESSAGE_TO_AT), term };
}

/** The bytes of `log` in [from, to), read as a reader would: one segment at a time. */
function readRange(log: Log, from: number, to: number): Uint8Array {
  const bytes = new Uint8Array(to - from);
  let at = from;
  while (at < to) {
    const length = log.readableAt(at, to - at);
    if (length <= 0) throw new Error(`${log.name}: nothing readable at ${at} below ${to}`);
    log.readInto(bytes, at - from, at, length);
    at += length;
  }
  return bytes;
}

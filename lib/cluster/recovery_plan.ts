/**
 * @module What `metaq cluster force-recover` decides, pure: from what each node says about its
 * copy of a group (a survey), whether the group is stuck (no copy able to lead can collect a
 * majority of votes), which copy becomes the base (the operator's, or the most complete: the
 * highest (last epoch, end offset), as Raft's vote check orders logs), and what each other copy
 * gives up and receives. Also the hard states a recovery writes, and the stuck test status and
 * request errors use. force_recover.ts runs it against the nodes.
 *
 * Why groups get stuck (replication.md "Interval mode and whole-cluster power loss"): with
 * `fsync=interval`, a copy that restarts after a reboot may have lost acknowledged records, so
 * it starts in repair mode and neither votes nor campaigns until a leader brings it back. When
 * a majority of the copies are in repair mode at once, no leader can ever be elected.
 */
import { crc32 } from "../crc32.ts";
import type { HardState, NodeId } from "./messages.ts";
import { hasQuorum } from "./quorum.ts";
import { commonPosition, compareRecency, type EpochStart, type Position } from "./raft_log.ts";

/** One copy of a group as its node describes it. */
export interface CopySurvey {
  readonly node: NodeId;
  readonly group: string;
  readonly role: string;
  readonly term: number;
  /** The leader this copy follows (0: none known). */
  readonly leader: NodeId;
  readonly repair: boolean;
  /** Repair base an earlier force-recover set (this copy votes for that node only). */
  readonly base?: NodeId;
  readonly votesForgotten: boolean;
  readonly nonVoting: boolean;
  /** The replica stopped after a storage error. */
  readonly stopped: boolean;
  readonly start: number;
  readonly end: number;
  /** The log's last position: `(end, last epoch)`. */
  readonly last: Position;
  readonly epochs: readonly EpochStart[];
}

/** What the operator asked for. */
export interface RecoverRequest {
  /** One group (`<topic>-<partition>`), or every group found (`all`). */
  readonly groups: { readonly kind: "one"; readonly group: string } | { readonly kind: "all" };
  /** The node whose copy becomes the base; default: the most complete copy. */
  readonly from?: NodeId;
  /** Recover a group without a leader even though an election could still succeed. */
  readonly force: boolean;
}

/** A group as surveyed: its voters, the copies that answered, and the ones that did not. */
export interface SurveyedGroup {
  readonly group: string;
  readonly voters: readonly NodeId[];
  readonly copies: readonly CopySurvey[];
  /** Voters with no usable copy to compare, and why. */
  readonly absent: readonly { readonly node: NodeId; readonly why: string }[];
}

/** A byte range `[from, to)` of a partition log. */
export interface ByteRange {
  readonly from: number;
  readonly to: number;
}

/** What recovery does to a copy other than the base. */
export interface CopyChange {
  readonly node: NodeId;
  readonly end: number;
  readonly last: Position;
  readonly repair: boolean;
  /** Where it agrees with the base up to; undefined: nothing in common (it is refilled whole). */
  readonly common?: number;
  /** Bytes only this copy holds: cut, lost. */
  readonly cut?: ByteRange;
  /** Bytes it receives from the base. */
  readonly fill?: ByteRange;
}

export interface GroupPlan {
  readonly group: string;
  readonly voters: readonly NodeId[];
  readonly from: NodeId;
  readonly chosenBy: "operator" | "most complete copy";
  /** Whether the group was stuck (false: recovered anyway with `force`). */
  readonly stuck: boolean;
  /** The base copy: what every copy holds afterwards. */
  readonly kept: { readonly start: number; readonly end: number; readonly last: Position };
  /** The base campaigns above every term a surveyed copy is in. */
  readonly termFloor: number;
  readonly copies: readonly CopyChange[];
  readonly absent: readonly { readonly node: NodeId; readonly why: string }[];
}

/** A group force-recover leaves alone, and why. */
export interface GroupRefusal {
  readonly group: string;
  readonly reason: string;
  /** `led` (it has a leader) and `notStuck` are not listed with `--all`. */
  readonly kind: "led" | "notStuck" | "tooFew" | "badNode" | "unknown";
}

export interface RecoveryPlan {
  readonly groups: readonly GroupPlan[];
  readonly refused: readonly GroupRefusal[];
  /** Identifies the plan: an apply is refused when the copies changed since it was shown. */
  readonly fingerprint: string;
}

/** Why a voter is absent from a survey when it answered but holds no open copy. */
export const NO_COPY = "no open copy";

/** The command that brings back a stuck group, as status and errors name it. */
export function recoverCommand(group: string): string {
  return `metaq cluster force-recover --partition ${group}`;
}

/**
 * Whether a group with no known leader is stuck: fewer voters than a majority are not known to
 * be in repair mode (waiting for a leader that cannot come). Unknown copies (unreachable, not
 * open) count as able, so a node never calls a group stuck that an election could still save.
 * Returns the copies in repair when stuck.
 */
export function stuckCopies(
  voters: readonly NodeId[],
  leaderKnown: boolean,
  inRepair: (node: NodeId) => boolean,
): NodeId[] | undefined {
  // No voters known: a node that joined and has not received the cluster's metadata yet.
  if (leaderKnown || voters.length === 0) return undefined;
  const repairing = voters.filter(inRepair);
  return hasQuorum(voters.length - repairing.length, voters.length) ? undefined : repairing;
}

/** The sentence status and request errors use for a stuck group. */
export function stuckReason(group: string, repairing: readonly NodeId[]): string {
  return `${group} cannot elect a leader: its copies on nodes ${repairing.join(", ")} are in ` +
    `repair mode (after a power loss with fsync=interval, or damage); run ` +
    `'${recoverCommand(group)}' (docs/replication.md)`;
}

/** Decides, group by group, what force-recover does. */
export function planRecovery(
  surveyed: readonly SurveyedGroup[],
  request: RecoverRequest,
): RecoveryPlan {
  const groups: GroupPlan[] = [];
  const refused: GroupRefusal[] = [];
  for (const group of surveyed) {
    const planned = planGroup(group, request);
    if ("reason" in planned) {
      // With --all, groups that lead or can still elect are simply not part of the recovery.
      const healthy = planned.kind === "led" || planned.kind === "notStuck";
      if (request.groups.kind === "one" || !healthy) refused.push(planned);
    } else groups.push(planned);
  }
  return { groups, refused, fingerprint: fingerprintOf(groups) };
}

function planGroup(surveyed: SurveyedGroup, request: RecoverRequest): GroupPlan | GroupRefusal {
  const { group, voters } = surveyed;
  const refuse = (kind: GroupRefusal["kind"], reason: string): GroupRefusal => ({
    group,
    kind,
    reason,
  });
  if (surveyed.copies.length === 0 && surveyed.absent.every((entry) => entry.why === NO_COPY)) {
    return refuse("unknown", `no node has a copy of ${group}: nothing was written to it`);
  }
  const led = surveyed.copies.find((copy) => copy.leader !== 0);
  if (led) {
    return refuse(
      "led",
      `${group} has a leader (node ${led.leader}, term ${led.term}): nothing to recover`,
    );
  }
  const absent = [...surveyed.absent];
  const copies: CopySurvey[] = [];
  for (const copy of surveyed.copies) {
    if (copy.stopped) {
      absent.push({ node: copy.node, why: "its replica stopped after a storage error" });
    } else copies.push(copy);
  }
  if (request.from !== undefined && !voters.includes(request.from)) {
    return refuse(
      "badNode",
      `node ${request.from} does not hold ${group} (its copies are on nodes ${voters.join(", ")})`,
    );
  }
  if (!hasQuorum(copies.length, voters.length)) {
    const missing = absent.map((entry) => `node ${entry.node}: ${entry.why}`).join("; ");
    return refuse(
      "tooFew",
      `only ${copies.length} of ${voters.length} copies of ${group} can take part (${missing}); ` +
        `start the nodes holding it first: the recovered copy needs a majority to lead`,
    );
  }
  const able = voters.length - copies.filter((copy) => !mayVote(copy, copies)).length;
  const stuck = !hasQuorum(able, voters.length);
  if (!stuck && !request.force) {
    return refuse(
      "notStuck",
      `${group} is not stuck: ${able} of ${voters.length} copies may vote, so an election can ` +
        `still succeed; wait for it (see 'metaq cluster status'), or add --force to recover it ` +
        `from one copy anyway`,
    );
  }
  let base: CopySurvey | undefined;
  if (request.from !== undefined) {
    base = copies.find((copy) => copy.node === request.from);
    if (!base) {
      const why = absent.find((entry) => entry.node === request.from)?.why ?? "no answer";
      return refuse("badNode", `node ${request.from} cannot be the base of ${group}: ${why}`);
    }
  } else base = mostComplete(copies);
  const chosen = base;
  const shape = { startOffset: chosen.start, endOffset: chosen.end, epochs: chosen.epochs };
  const changes = copies.filter((copy) => copy !== chosen).map((copy): CopyChange => {
    const common = commonPosition(shape, { epochs: copy.epochs, endOffset: copy.end })?.offset;
    const from = common ?? copy.start;
    const fillFrom = common ?? chosen.start;
    return {
      node: copy.node,
      end: copy.end,
      last: copy.last,
      repair: copy.repair,
      ...(common !== undefined ? { common } : {}),
      ...(copy.end > from ? { cut: { from, to: copy.end } } : {}),
      ...(chosen.end > fillFrom ? { fill: { from: fillFrom, to: chosen.end } } : {}),
    };
  });
  return {
    group,
    voters,
    from: chosen.node,
    chosenBy: request.from !== undefined ? "operator" : "most complete copy",
    stuck,
    kept: { start: chosen.start, end: chosen.end, last: chosen.last },
    termFloor: Math.max(...copies.map((copy) => copy.term)),
    copies: changes,
    absent,
  };
}

/**
 * Whether a copy can give a vote to someone: not in repair mode (or in repair behind a base
 * that can itself lead), votes remembered, a voter.
 */
function mayVote(copy: CopySurvey, copies: readonly CopySurvey[]): boolean {
  if (copy.votesForgotten || copy.nonVoting) return false;
  if (!copy.repair) return true;
  const base = copies.find((other) => other.node === copy.base);
  return base !== undefined && !base.repair && !base.votesForgotten && !base.nonVoting;
}

/**
 * The copy Raft's vote check would rank first: highest last epoch, then highest end offset.
 * It holds every record a majority of copies held durably (leader completeness): every record
 * an `ack=quorum` put was answered for once it was synced on that majority. Ties are equal
 * logs (log matching); the lowest node id wins them, a copy not in repair first.
 */
export function mostComplete(copies: readonly CopySurvey[]): CopySurvey {
  return copies.reduce((best, copy) => {
    const order = compareRecency(copy.last, best.last);
    if (order !== 0) return order > 0 ? copy : best;
    if (copy.repair !== best.repair) return copy.repair ? best : copy;
    return copy.node < best.node ? copy : best;
  });
}

function fingerprintOf(groups: readonly GroupPlan[]): string {
  const facts = groups.map((plan) => [
    plan.group,
    plan.from,
    plan.kept.end,
    plan.kept.last.epoch,
    plan.copies.map((copy) => [copy.node, copy.end, copy.last.epoch]),
    plan.absent.map((entry) => entry.node),
  ]);
  return crc32(new TextEncoder().encode(JSON.stringify(facts))).toString(16).padStart(8, "0");
}

/**
 * The hard state of the base copy: out of repair, in a term at least every surveyed copy's (so
 * its first campaign is in a term no copy is in yet). A vote is kept only within its own term.
 * A string says why it cannot be the base.
 */
export function baseHardState(
  current: HardState | "unreadable" | undefined,
  termFloor: number,
): HardState | string {
  if (current === "unreadable") {
    return "its hard state is unreadable (forgotten votes); choose another copy with --from-node";
  }
  const state = current ?? { term: 0, votedFor: 0 };
  const term = Math.max(state.term, termFloor);
  return {
    term,
    votedFor: term === state.term ? state.votedFor : 0,
    ...(state.votesForgotten ? { votesForgotten: true } : {}),
    ...(state.voteFloor ? { voteFloor: state.voteFloor } : {}),
  };
}

/**
 * The hard state of another copy: in repair mode behind `base` (it votes only for the base, its
 * acks to the base count, and it leaves repair once it matches the base's first commit). Its
 * former end is dropped: what it held beyond the base is given up.
 */
export function followerHardState(
  current: HardState | "unreadable" | undefined,
  base: NodeId,
): HardState | string {
  if (current === "unreadable") {
    return "its hard state is unreadable (forgotten votes); it follows the new leader once it has heard every peer";
  }
  return { ...(current ?? { term: 0, votedFor: 0 }), repair: { base } };
}

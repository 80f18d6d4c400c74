/**
 * @module `metaq cluster force-recover` on the nodes. Every node describes its copies when asked
 * (a `survey` question) and restarts one of them with the hard state a recovery gives it (a
 * `recover` question). The node the operator asked coordinates: it surveys every holder, plans
 * (recovery_plan.ts), and, once the operator confirmed the plan it was shown (its fingerprint),
 * tells the other copies to follow the base, then the base to leave repair mode, and waits until
 * the base leads and has committed in its own term. From then on the group is an ordinary Raft
 * group: the other copies are cut back to where they agree with the base and refilled from it
 * (Raft's own log matching), and leave repair mode once they reach its first commit.
 */
import { describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { PartitionLog } from "../store/partition_log.ts";
import { splitPartitionKey } from "../store/message_store.ts";
import type { Question } from "./envelope.ts";
import type { NodeId } from "./messages.ts";
import type { Replica } from "./replica.ts";
import {
  baseHardState,
  type CopySurvey,
  followerHardState,
  NO_COPY,
  planRecovery,
  type RecoverRequest,
  type RecoveryPlan,
  type SurveyedGroup,
} from "./recovery_plan.ts";
import { readHardState, writeHardState } from "./state_files.ts";

/** Groups recovered at once (each takes a few questions to its holders). */
const GROUPS_IN_FLIGHT_MAX = 8;
/** How often the coordinator asks a recovered group's base whether it leads yet. */
const POLL_MS = 100;

/** What force-recover needs from its node (ClusterNode provides it). */
export interface RecoveryNode {
  readonly nodeId: NodeId;
  /** Every node of the cluster. */
  readonly voters: readonly NodeId[];
  readonly logger: Logger;
  replicas(): readonly Replica[];
  replicaNamed(group: string): Replica | undefined;
  replicasOf(topic: string, partition: number): NodeId[];
  /** Asks node `to` (this node answers itself); undefined when no answer came in time. */
  question(to: NodeId, question: Question): Promise<unknown>;
  /**
   * Stops `group`'s replica, runs `rewrite` (which replaces its hard state), and starts it
   * again from its files; false when this node has no open copy of the group.
   */
  restartReplica(group: string, rewrite: (log: PartitionLog) => Promise<void>): Promise<boolean>;
}

export interface ForceRecoverOptions {
  readonly request: RecoverRequest;
  /** The fingerprint of the plan the operator confirmed; absent: only plan. */
  readonly apply?: string;
  /** Why `group` names no configured partition, or undefined when it does. */
  readonly checkGroup: (group: string) => string | undefined;
  /** How long to wait for recovered groups to elect their base. */
  readonly waitMs: number;
}

/** What happened to one group of an applied plan. */
export interface RecoveryOutcome {
  readonly group: string;
  readonly from: NodeId;
  /** The other copies: told to follow the base, or why not. */
  readonly followers: readonly { node: NodeId; ok: boolean; reason?: string }[];
  readonly base: { ok: boolean; reason?: string };
  /** The base leads and has committed in its own term: the group serves again. */
  readonly led: boolean;
  readonly commit?: number;
  readonly elapsedMs: number;
}

export interface ForceRecoverReport {
  readonly plan: RecoveryPlan;
  readonly applied: boolean;
  readonly outcomes?: readonly RecoveryOutcome[];
  /** Why nothing was applied although the operator asked (the copies changed meanwhile). */
  readonly error?: string;
}

/** Surveys, plans, and (when `apply` matches the plan) recovers. */
export async function forceRecover(
  node: RecoveryNode,
  options: ForceRecoverOptions,
): Promise<ForceRecoverReport> {
  const { request } = options;
  if (request.groups.kind === "one") {
    const problem = options.checkGroup(request.groups.group);
    if (problem) {
      const refused = [{ group: request.groups.group, kind: "unknown" as const, reason: problem }];
      return { plan: { groups: [], refused, fingerprint: "" }, applied: false };
    }
  }
  const plan = planRecovery(await survey(node, request), request);
  if (options.apply === undefined || plan.groups.length === 0) return { plan, applied: false };
  if (options.apply !== plan.fingerprint) {
    return {
      plan,
      applied: false,
      error: `the copies changed since the plan was shown (plan ${options.apply}, now ` +
        `${plan.fingerprint}); nothing was changed: run the command again to see the new plan`,
    };
  }
  node.logger.log("warn", "force-recover: bringing back groups from one copy", {
    groups: plan.groups.map((group) => `${group.group}<-${group.from}`).join(","),
  });
  const started = performance.now();
  const outcomes = await inPool(
    plan.groups,
    GROUPS_IN_FLIGHT_MAX,
    (group) =>
      recoverGroup(node, group.group, group.from, group.termFloor, group.copies.map((c) => c.node)),
  );
  await waitForLeaders(node, outcomes, started, started + options.waitMs);
  const done = outcomes.map((outcome) =>
    outcome.led ? outcome : { ...outcome, elapsedMs: Math.round(performance.now() - started) }
  );
  node.logger.log("warn", "force-recover finished", {
    recovered: done.filter((outcome) => outcome.led).length,
    notYet: done.filter((outcome) => !outcome.led).map((outcome) => outcome.group).join(","),
  });
  return { plan, applied: true, outcomes: done };
}

/** Every copy of the groups asked about, as their nodes describe them. */
async function survey(node: RecoveryNode, request: RecoverRequest): Promise<SurveyedGroup[]> {
  if (request.groups.kind === "one") {
    const group = request.groups.group;
    const { topic, partition } = splitPartitionKey(group)!;
    const voters = node.replicasOf(topic, partition);
    const answers = await Promise.all(
      voters.map((voter) => node.question(voter, { kind: "survey", group })),
    );
    const copies: CopySurvey[] = [];
    const absent: SurveyedGroup["absent"][number][] = [];
    answers.forEach((answer, index) => {
      if (isCopySurvey(answer) && answer.group === group && answer.node === voters[index]) {
        copies.push(answer);
      } else {
        absent.push({ node: voters[index], why: answer === null ? NO_COPY : "no answer" });
      }
    });
    return [{ group, voters, copies, absent }];
  }
  const answers = await Promise.all(
    node.voters.map((voter) => node.question(voter, { kind: "survey", group: "*" })),
  );
  const byGroup = new Map<string, Map<NodeId, CopySurvey>>();
  const answered = new Set<NodeId>();
  answers.forEach((answer, index) => {
    if (!Array.isArray(answer)) return;
    answered.add(node.voters[index]);
    for (const copy of answer) {
      if (!isCopySurvey(copy) || copy.node !== node.voters[index]) continue;
      const copies = byGroup.get(copy.group) ?? new Map<NodeId, CopySurvey>();
      copies.set(copy.node, copy);
      byGroup.set(copy.group, copies);
    }
  });
  const groups: SurveyedGroup[] = [];
  for (const [group, found] of [...byGroup].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)) {
    const parts = splitPartitionKey(group);
    if (!parts) continue;
    const voters = node.replicasOf(parts.topic, parts.partition);
    groups.push({
      group,
      voters,
      copies: voters.flatMap((voter) => found.get(voter) ?? []),
      absent: voters.filter((voter) => !found.has(voter)).map((voter) => ({
        node: voter,
        why: answered.has(voter) ? NO_COPY : "no answer",
      })),
    });
  }
  return groups;
}

/** Tells the other copies to follow the base, then the base to leave repair mode. */
async function recoverGroup(
  node: RecoveryNode,
  group: string,
  from: NodeId,
  termFloor: number,
  others: readonly NodeId[],
): Promise<RecoveryOutcome> {
  const ask = async (to: NodeId) => {
    const answer = await node.question(to, { kind: "recover", group, base: from, term: termFloor });
    return isRecoverAnswer(answer) ? answer : { ok: false, reason: `node ${to} did not answer` };
  };
  // Followers first: by the time the base campaigns, they already vote for it.
  const followers = await Promise.all(
    others.map(async (other) => ({ node: other, ...await ask(other) })),
  );
  const base = await ask(from);
  return { group, from, followers, base, led: false, elapsedMs: 0 };
}

/** Fills in `led` and `commit` as each base leads and commits in its term, until `deadline`. */
async function waitForLeaders(
  node: RecoveryNode,
  outcomes: RecoveryOutcome[],
  started: number,
  deadline: number,
): Promise<void> {
  let pending = outcomes.map((_, index) => index).filter((index) => outcomes[index].base.ok);
  while (pending.length > 0 && performance.now() < deadline) {
    const commits = await inPool(
      pending,
      64,
      (index) =>
        node.question(outcomes[index].from, { kind: "commit", group: outcomes[index].group }),
    );
    pending = pending.filter((index, at) => {
      const commit = commits[at];
      if (typeof commit !== "number") return true;
      const elapsedMs = Math.round(performance.now() - started);
      outcomes[index] = { ...outcomes[index], led: true, commit, elapsedMs };
      return false;
    });
    if (pending.length > 0) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** This node's answer to a force-recover question. */
export function answerRecovery(
  node: RecoveryNode,
  question: Extract<Question, { kind: "survey" | "recover" }>,
): unknown {
  if (question.kind === "survey") {
    if (question.group === "*") return node.replicas().map((r) => surveyCopy(node.nodeId, r));
    const replica = node.replicaNamed(question.group);
    return replica ? surveyCopy(node.nodeId, replica) : null;
  }
  return restartForRecovery(node, question.group, question.base, question.term).catch((
    error,
  ) => ({ ok: false, reason: `node ${node.nodeId}: ${describeError(error)}` }));
}

/** How this node's copy of a group looks to force-recover. */
export function surveyCopy(nodeId: NodeId, replica: Replica): CopySurvey {
  const status = replica.status();
  const base = status.repair?.base;
  return {
    node: nodeId,
    group: replica.name,
    role: status.role,
    term: status.term,
    leader: status.leaderId,
    repair: status.repair !== undefined,
    ...(base !== undefined ? { base } : {}),
    votesForgotten: status.votesForgotten,
    nonVoting: status.nonVoting,
    stopped: replica.stopped,
    start: status.startOffset,
    end: status.last.offset,
    last: status.last,
    epochs: replica.epochs,
  };
}

/**
 * Restarts this node's copy of `group` as the recovery says: out of repair in a term at least
 * `term` when this node is the base, else in repair mode behind the base. Refused when the group
 * has a leader here by now (the plan no longer holds).
 */
async function restartForRecovery(
  node: RecoveryNode,
  group: unknown,
  base: unknown,
  term: unknown,
): Promise<{ ok: boolean; reason?: string }> {
  if (
    typeof group !== "string" || !Number.isSafeInteger(base) || (base as number) < 1 ||
    !Number.isSafeInteger(term) || (term as number) < 0
  ) {
    return { ok: false, reason: "malformed recover question" };
  }
  const baseId = base as number;
  const replica = node.replicaNamed(group);
  const here = `node ${node.nodeId}`;
  if (!replica) return { ok: false, reason: `${here} has no open copy of ${group}` };
  if (!replica.options.voters.includes(baseId)) {
    return { ok: false, reason: `node ${baseId} does not hold ${group}` };
  }
  if (replica.leaderId !== 0) {
    return { ok: false, reason: `${group} has a leader now (node ${replica.leaderId})` };
  }
  const rewrite = (log: PartitionLog) => {
    const current = readHardState(log.options.storage, log.options.dir);
    return baseId === node.nodeId
      ? baseHardState(current, term as number)
      : followerHardState(current, baseId);
  };
  const refusal = rewrite(replica.log);
  if (typeof refusal === "string") return { ok: false, reason: `${here}: ${refusal}` };
  let problem: string | undefined;
  const restarted = await node.restartReplica(group, async (log) => {
    // Read again now that the replica is stopped: it may have written since.
    const next = rewrite(log);
    if (typeof next === "string") problem = next;
    else await writeHardState(log.options.storage, log.options.dir, next);
  });
  if (!restarted) return { ok: false, reason: `${here} has no open copy of ${group}` };
  if (problem) return { ok: false, reason: `${here}: ${problem}` };
  node.logger.log(
    "warn",
    baseId === node.nodeId
      ? "force-recover: this copy is the base; it leaves repair mode and campaigns"
      : "force-recover: this copy follows the chosen base; what only it holds will be cut",
    { group, base: baseId },
  );
  return { ok: true };
}

function isCopySurvey(value: unknown): value is CopySurvey {
  const copy = value as CopySurvey | null | undefined;
  return typeof copy?.group === "string" && Number.isSafeInteger(copy.node) &&
    Number.isSafeInteger(copy.term) && Number.isSafeInteger(copy.leader) &&
    Number.isSafeInteger(copy.start) && Number.isSafeInteger(copy.end) &&
    Number.isSafeInteger(copy.last?.offset) && Number.isSafeInteger(copy.last?.epoch) &&
    Array.isArray(copy.epochs) && copy.epochs.length > 0 &&
    copy.epochs.every((pair) =>
      Number.isSafeInteger(pair?.epoch) && Number.isSafeInteger(pair?.startOffset)
    );
}

function isRecoverAnswer(value: unknown): value is { ok: boolean; reason?: string } {
  return typeof (value as { ok?: unknown } | null)?.ok === "boolean";
}

/** Maps `items` through `work` with at most `limit` running at once; results in order. */
async function inPool<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

import { describe, expect, test } from "bun:test";
import {
  baseHardState,
  type CopySurvey,
  followerHardState,
  mostComplete,
  planRecovery,
  type RecoverRequest,
  stuckCopies,
  type SurveyedGroup,
} from "../../../lib/cluster/recovery_plan.ts";
import type { EpochStart } from "../../../lib/cluster/raft_log.ts";

/** A copy after a power cut: in repair, no leader, log [0, end) with these epochs. */
function copy(node: number, end: number, epochs: EpochStart[], extra: Partial<CopySurvey> = {}) {
  return {
    node,
    group: "orders-0",
    role: "follower",
    term: epochs.at(-1)!.epoch,
    leader: 0,
    repair: true,
    votesForgotten: false,
    nonVoting: false,
    stopped: false,
    start: 0,
    end,
    last: { offset: end, epoch: epochs.at(-1)!.epoch },
    epochs,
    ...extra,
  } satisfies CopySurvey;
}

const E1 = [{ epoch: 0, startOffset: 0 }, { epoch: 1, startOffset: 0 }];
const E1_3 = [...E1, { epoch: 3, startOffset: 500 }];
const E1_2 = [...E1, { epoch: 2, startOffset: 600 }];

function group(copies: CopySurvey[], absent: SurveyedGroup["absent"] = []): SurveyedGroup {
  return { group: "orders-0", voters: [1, 2, 3], copies, absent };
}

const ONE: RecoverRequest = { groups: { kind: "one", group: "orders-0" }, force: false };

describe("picking the base", () => {
  test("the most complete copy is the highest last epoch, then the longest log", () => {
    // Node 2 has fewer bytes but a later epoch: its log is the one Raft would elect.
    const copies = [copy(1, 800, E1_2), copy(2, 700, E1_3), copy(3, 400, E1)];
    expect(mostComplete(copies).node).toBe(2);
    expect(mostComplete([copy(1, 300, E1), copy(2, 400, E1), copy(3, 350, E1)]).node).toBe(2);
  });

  test("equal logs: a copy not in repair first, then the lowest node id", () => {
    expect(mostComplete([copy(3, 400, E1), copy(2, 400, E1)]).node).toBe(2);
    expect(mostComplete([copy(1, 400, E1), copy(3, 400, E1, { repair: false })]).node).toBe(3);
  });

  test("the plan says what each other copy loses and receives", () => {
    const plan = planRecovery(
      [group([copy(1, 800, E1_2), copy(2, 700, E1_3), copy(3, 400, E1)])],
      ONE,
    );
    expect(plan.refused).toEqual([]);
    const [recovery] = plan.groups;
    expect(recovery.from).toBe(2);
    expect(recovery.chosenBy).toBe("most complete copy");
    expect(recovery.stuck).toBe(true);
    expect(recovery.kept).toEqual({ start: 0, end: 700, last: { offset: 700, epoch: 3 } });
    expect(recovery.termFloor).toBe(3);
    // Node 1 agrees with node 2 up to 500 (where epoch 1 ended on node 2): it loses [500, 800).
    expect(recovery.copies).toEqual([
      {
        node: 1,
        end: 800,
        last: { offset: 800, epoch: 2 },
        repair: true,
        common: 500,
        cut: { from: 500, to: 800 },
        fill: { from: 500, to: 700 },
      },
      {
        node: 3,
        end: 400,
        last: { offset: 400, epoch: 1 },
        repair: true,
        common: 400,
        fill: { from: 400, to: 700 },
      },
    ]);
  });

  test("the operator's node is the base even with a shorter log", () => {
    const plan = planRecovery(
      [group([copy(1, 800, E1_2), copy(2, 700, E1_3), copy(3, 400, E1)])],
      { ...ONE, from: 3 },
    );
    const [recovery] = plan.groups;
    expect(recovery.from).toBe(3);
    expect(recovery.chosenBy).toBe("operator");
    expect(recovery.copies.map((change) => [change.node, change.cut])).toEqual([
      [1, { from: 400, to: 800 }],
      [2, { from: 400, to: 700 }],
    ]);
  });

  test("copies with nothing in common are refilled whole", () => {
    const other = [{ epoch: 0, startOffset: 0 }, { epoch: 4, startOffset: 0 }];
    const plan = planRecovery([group([copy(1, 300, E1), copy(2, 200, other)])], ONE);
    const [recovery] = plan.groups;
    expect(recovery.from).toBe(2);
    // Epoch 0 is the common base at offset 0: node 1 loses everything it holds.
    expect(recovery.copies[0].cut).toEqual({ from: 0, to: 300 });
    expect(recovery.copies[0].fill).toEqual({ from: 0, to: 200 });
  });
});

describe("refusals", () => {
  const stuck = [copy(1, 300, E1), copy(2, 400, E1), copy(3, 350, E1)];

  test("a group with a leader is refused; with --all it is left out silently", () => {
    const led = [copy(1, 300, E1, { leader: 2 }), ...stuck.slice(1)];
    expect(planRecovery([group(led)], ONE).refused).toEqual([{
      group: "orders-0",
      kind: "led",
      reason: "orders-0 has a leader (node 2, term 1): nothing to recover",
    }]);
    const all = planRecovery([group(led)], { groups: { kind: "all" }, force: false });
    expect(all).toEqual({ groups: [], refused: [], fingerprint: all.fingerprint });
  });

  test("a group that can still elect is refused unless forced", () => {
    // Two copies out of repair: they can elect one of themselves.
    const healthy = [copy(1, 300, E1, { repair: false }), copy(2, 300, E1, { repair: false })];
    const plan = planRecovery([group([...healthy, copy(3, 350, E1)])], ONE);
    expect(plan.refused[0].kind).toBe("notStuck");
    expect(plan.refused[0].reason).toContain("--force");
    const all = planRecovery([group([...healthy, copy(3, 350, E1)])], {
      groups: { kind: "all" },
      force: false,
    });
    expect(all.refused).toEqual([]);
    expect(all.groups).toEqual([]);
    const forced = planRecovery([group([...healthy, copy(3, 350, E1)])], { ...ONE, force: true });
    expect(forced.groups[0].stuck).toBe(false);
    expect(forced.groups[0].from).toBe(3);
  });

  test("one healthy copy beside two in repair is stuck: it cannot collect a majority", () => {
    const plan = planRecovery(
      [group([copy(1, 300, E1, { repair: false }), ...stuck.slice(1)])],
      ONE,
    );
    expect(plan.groups[0].stuck).toBe(true);
  });

  test("copies following a base that can lead count as able to vote", () => {
    const recovering = [
      copy(1, 300, E1, { base: 2 }),
      copy(2, 400, E1, { repair: false }),
      copy(3, 350, E1, { base: 2 }),
    ];
    expect(planRecovery([group(recovering)], ONE).refused[0].kind).toBe("notStuck");
  });

  test("fewer than a majority of usable copies is refused", () => {
    const plan = planRecovery(
      [group([stuck[0], { ...stuck[1], stopped: true }], [{ node: 3, why: "no answer" }])],
      ONE,
    );
    expect(plan.refused[0].kind).toBe("tooFew");
    expect(plan.refused[0].reason).toContain("node 2: its replica stopped after a storage error");
    expect(plan.refused[0].reason).toContain("node 3: no answer");
  });

  test("a base that does not hold the group, or did not answer, is refused", () => {
    const notHolder = planRecovery([group(stuck)], { ...ONE, from: 4 });
    expect(notHolder.refused[0]).toEqual({
      group: "orders-0",
      kind: "badNode",
      reason: "node 4 does not hold orders-0 (its copies are on nodes 1, 2, 3)",
    });
    const silent = planRecovery(
      [group(stuck.slice(0, 2), [{ node: 3, why: "no answer" }])],
      { ...ONE, from: 3 },
    );
    expect(silent.refused[0].reason).toBe("node 3 cannot be the base of orders-0: no answer");
  });

  test("the fingerprint changes when a copy changes", () => {
    const before = planRecovery([group(stuck)], ONE).fingerprint;
    expect(planRecovery([group(stuck)], ONE).fingerprint).toBe(before);
    const grown = [stuck[0], copy(2, 401, E1), stuck[2]];
    expect(planRecovery([group(grown)], ONE).fingerprint).not.toBe(before);
  });
});

describe("stuck test and hard states", () => {
  test("stuck only when fewer than a majority are not known to be in repair", () => {
    const inRepair = (ids: number[]) => (id: number) => ids.includes(id);
    expect(stuckCopies([1, 2, 3], false, inRepair([1, 2, 3]))).toEqual([1, 2, 3]);
    expect(stuckCopies([1, 2, 3], false, inRepair([1, 2]))).toEqual([1, 2]);
    expect(stuckCopies([1, 2, 3], false, inRepair([3]))).toBeUndefined();
    expect(stuckCopies([1, 2, 3], true, inRepair([1, 2, 3]))).toBeUndefined();
  });

  test("a node that knows no voters yet (joined, metadata not received) calls nothing stuck", () => {
    // It crashed on 'voter count 0' when a client asked it for a partition (T19).
    expect(stuckCopies([], false, () => true)).toBeUndefined();
  });

  test("the base leaves repair in a term above every copy's; the others follow it", () => {
    expect(baseHardState({ term: 4, votedFor: 2, repair: {} }, 7)).toEqual({
      term: 7,
      votedFor: 0,
    });
    expect(baseHardState({ term: 7, votedFor: 2, repair: {} }, 5)).toEqual({
      term: 7,
      votedFor: 2,
    });
    expect(baseHardState(undefined, 3)).toEqual({ term: 3, votedFor: 0 });
    expect(baseHardState("unreadable", 3)).toContain("unreadable");
    expect(followerHardState({ term: 5, votedFor: 1, repair: { formerEndOffset: 90 } }, 2))
      .toEqual({ term: 5, votedFor: 1, repair: { base: 2 } });
    expect(followerHardState("unreadable", 2)).toContain("unreadable");
  });
});

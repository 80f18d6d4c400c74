import { expect, test } from "bun:test";
import { checkHistory } from "../../cluster/checker.ts";
import { valueOf } from "../../cluster/drain.ts";
import { parseTrace, parseValue, type TraceEvent } from "../../cluster/history.ts";
import { leaderFromTraces, parseClusterStatus } from "../../cluster/leaders.ts";
import { blackhole, cut, type LinkMode, type LinkProxy, pass } from "../../cluster/link_proxy.ts";
import { Network } from "../../cluster/network.ts";
import { OFFSET_SLOTS, OFFSET_STEP, portPlan } from "../../cluster/ports.ts";
import { Random } from "../../cluster/random.ts";
import { chaosEnv, convergedFromTraces } from "../../cluster/scenario.ts";
import { logView, SyntheticRun } from "../../cluster/synthetic.ts";
import { electionsBetween, staleLeaderWindowMs } from "../../cluster/trace_figures.ts";
import { payloadFor } from "../../cluster/workloads.ts";
import { commitOutcome } from "../../cluster/mixed_workloads.ts";
import { BrokerError, TimeoutError } from "../../../lib/client/errors.ts";
import { XA_CODES, XAError } from "../../../lib/client/xa_resource.ts";

test("a seed replays the same draws, and forked streams are independent of later draws", () => {
  const a = new Random(42);
  const b = new Random(42);
  expect(Array.from({ length: 5 }, () => a.uint32())).toEqual(
    Array.from({ length: 5 }, () => b.uint32()),
  );
  const first = new Random(7).fork("nemesis").int(0, 1000);
  const shifted = new Random(7);
  shifted.uint32();
  expect(shifted.fork("nemesis").int(0, 1000)).toBe(first);
  for (let i = 0; i < 1000; i++) {
    const value = a.int(-3, 3);
    expect(value >= -3 && value <= 3).toBe(true);
  }
  expect(() => new Random(-1)).toThrow(RangeError);
});

test("the port plan follows the reliability plan and never leaves the non-ephemeral range", () => {
  const plan = portPlan(0);
  expect([plan.clientPort(1), plan.peerPort(2), plan.linkPort(1, 3), plan.clientProxyPort(3)])
    .toEqual([
      7101,
      7202,
      7313,
      7403,
    ]);
  const last = portPlan((OFFSET_SLOTS - 1) * OFFSET_STEP);
  expect(Math.max(...last.ports(9))).toBeLessThan(32768);
  expect(new Set(plan.ports(5)).size).toBe(plan.ports(5).length);
  expect(() => plan.linkPort(2, 2)).toThrow(RangeError);
  expect(() => plan.clientPort(10)).toThrow(RangeError);
});

/** Proxies that only remember the modes they were given. */
function stubNetwork(nodes: number[]): { network: Network; modes: Map<string, LinkMode> } {
  const modes = new Map<string, LinkMode>();
  const stub = (name: string) =>
    ({
      setMode(direction: string, mode: LinkMode) {
        for (const d of direction === "both" ? ["forward", "backward"] : [direction]) {
          modes.set(`${name} ${d}`, mode);
        }
      },
    }) as unknown as LinkProxy;
  const links = new Map<string, LinkProxy>();
  const clients = new Map<number, LinkProxy>();
  for (const from of nodes) {
    clients.set(from, stub(`client ${from}`));
    for (const to of nodes) {
      if (from !== to) links.set(Network.key(from, to), stub(Network.key(from, to)));
    }
  }
  return { network: new Network({ nodes, links, clientProxies: clients }), modes };
}

test("a directed link covers the forward side of i->j and the reply side of j->i", () => {
  const { network, modes } = stubNetwork([1, 2, 3]);
  network.setLink(1, 2, blackhole());
  expect(modes.get("1->2 forward")).toEqual(blackhole());
  expect(modes.get("2->1 backward")).toEqual(blackhole());
  expect(modes.get("2->1 forward")).toBeUndefined();
  expect(network.describe()).toBe("1->2 blackhole");
});

test("partitions and bridges: links across sides get the mode, links inside a side pass", () => {
  const { network, modes } = stubNetwork([1, 2, 3]);
  network.partition([[1], [2, 3]], cut());
  expect(modes.get("1->2 forward")).toEqual(cut());
  expect(modes.get("3->1 forward")).toEqual(cut());
  expect(modes.get("2->3 forward")).toEqual(pass());
  network.healAll();
  network.setBoth(1, 3, blackhole()); // bridge: 1-2 and 2-3 up, 1-3 down
  expect(network.link(1, 3)).toEqual(blackhole());
  expect(network.link(3, 1)).toEqual(blackhole());
  expect(network.link(1, 2)).toEqual(pass());
  network.healAll();
  expect(network.describe()).toBe("all links pass");
});

const role = (
  t: number,
  node: number,
  group: string,
  r: "leader" | "follower",
  term: number,
): TraceEvent => ({
  t,
  node,
  group,
  event: "role",
  role: r,
  term,
});

test("the leader from traces is the running node whose latest role is leader, highest term", () => {
  const events = [
    role(1, 1, "chaos-0", "leader", 1),
    role(2, 2, "chaos-0", "follower", 1),
    role(5, 2, "chaos-0", "leader", 2),
    role(6, 1, "chaos-0", "follower", 2),
  ];
  expect(leaderFromTraces(events, "chaos-0", [1, 2, 3])).toBe(2);
  expect(leaderFromTraces(events, "chaos-0", [1, 3])).toBeUndefined();
  expect(leaderFromTraces(events, "chaos-1", [1, 2, 3])).toBeUndefined();
});

test("cluster status is parsed as an array or a map, with leaders as ids or addresses", () => {
  const nodeIdOf = (address: string) => (address === "127.0.0.1:7102" ? 2 : undefined);
  expect(parseClusterStatus(
    {
      groups: [{
        group: "chaos-0",
        role: "follower",
        term: 3,
        leader: "127.0.0.1:7102",
        commit: 10,
        logEnd: 12,
      }],
    },
    nodeIdOf,
  )).toEqual([{
    group: "chaos-0",
    role: "follower",
    term: 3,
    leader: 2,
    commit: 10,
    logEnd: 12,
    repair: undefined,
  }]);
  expect(
    parseClusterStatus(
      { groups: { meta: { leader: 1, commitOffset: 5, end: 5, repair: false } } },
      nodeIdOf,
    ),
  )
    .toEqual([{
      group: "meta",
      role: undefined,
      term: undefined,
      leader: 1,
      commit: 5,
      logEnd: 5,
      repair: false,
    }]);
});

test("convergence from traces needs every node at the same end with commit at the end", () => {
  const append = (node: number, to: number): TraceEvent => ({
    t: 1,
    node,
    group: "chaos-0",
    event: "append",
    term: 1,
    from: 0,
    to,
    crc: 1,
  });
  const commit = (node: number, offset: number): TraceEvent => ({
    t: 2,
    node,
    group: "chaos-0",
    event: "commit",
    offset,
  });
  expect(convergedFromTraces([], ["chaos-0"], [1, 2])).toBeUndefined();
  expect(convergedFromTraces([append(1, 100), append(2, 100), commit(1, 100)], ["chaos-0"], [1, 2]))
    .toBe(false);
  expect(
    convergedFromTraces([append(1, 100), append(2, 100), commit(1, 100), commit(2, 100)], [
      "chaos-0",
    ], [1, 2]),
  )
    .toBe(true);
  const truncated: TraceEvent = { t: 3, node: 2, group: "chaos-0", event: "truncate", to: 50 };
  expect(
    convergedFromTraces(
      [append(1, 100), append(2, 100), commit(1, 100), commit(2, 100), truncated],
      [
        "chaos-0",
      ],
      [1, 2],
    ),
  ).toBe(false);
});

test("elections in a window and the stale-leader window come from role events", () => {
  const events = [
    role(100, 1, "chaos-0", "leader", 1),
    role(1_000, 2, "chaos-0", "leader", 2),
    role(3_500, 1, "chaos-0", "follower", 2),
  ];
  expect(electionsBetween(events, 500, 2_000)).toEqual(["chaos-0 term 2"]);
  expect(electionsBetween(events, 0, 2_000, ["chaos-1"])).toEqual([]);
  const fault = { id: 1, t: 500, until: 3_000, kind: "pause-leader" };
  expect(staleLeaderWindowMs(events, { fault, leader: 1, group: "chaos-0" })).toBe(2_500);
  expect(staleLeaderWindowMs(events.slice(0, 2), { fault, leader: 1, group: "chaos-0" }))
    .toBeNull();
  expect(staleLeaderWindowMs(events.slice(0, 1), { fault, leader: 1, group: "chaos-0" }))
    .toBeUndefined();
});

test("trace lines with unknown events are reported, not silently used", () => {
  const { events, problems } = parseTrace(
    [
      JSON.stringify(role(1, 1, "meta", "leader", 1)),
      JSON.stringify({ t: 2, node: 1, group: "meta", event: "bogus" }),
      // Torn by a SIGKILL, then the next incarnation's first line on the same line.
      `{"t":17965${JSON.stringify({ t: 5, node: 1, group: "chaos-0", event: "truncate", to: 0 })}`,
      JSON.stringify({ t: 3, node: 1, group: "chaos-0", event: "quiet", quiet: true }),
      JSON.stringify({
        t: 3,
        node: 1,
        group: "chaos-0",
        event: "voteRequest",
        from: 2,
        term: 1,
        pre: true,
        voters: [1, 2, 3],
      }),
      JSON.stringify({
        t: 3,
        node: 1,
        group: "chaos-0",
        event: "configuration",
        epoch: 1,
        voters: [1, 2, 3],
      }),
      '{"t":4,"node"',
    ].join("\n"),
  );
  expect(events.map((event) => event.t)).toEqual([1, 5]);
  // `quiet`, `voteRequest` and `configuration` are known and not needed: neither used nor
  // reported. Only the torn last line is.
  expect(problems.length).toBe(1);
});

test("payloads are 100-500 bytes, the same for the same value, and carry the value back", () => {
  for (let seq = 0; seq < 300; seq++) {
    const value = `p3-${seq}`;
    const payload = payloadFor(value);
    expect(payload.length >= 100 && payload.length <= 500).toBe(true);
    expect(payloadFor(value)).toEqual(payload);
    expect(valueOf(0, payload)).toBe(value);
  }
  expect(parseValue("setup4-12")).toEqual({ producer: "setup4", seq: 12 });
  expect(parseValue("garbage")).toBeUndefined();
});

test("a committed offset above anything fetched by then breaks I9; a 301 move continues a session", () => {
  const run = new SyntheticRun();
  run.produce("p1", "p1-0", { partition: 0, outcome: "ok", offset: 0 });
  run.fetch("c1", { partition: 0, offset: 0, records: [[0, "p1-0"]], next: 100 });
  run.groupOffset("c1", { op: "commit", partition: 0, offset: 100 });
  run.groupOffset("probe", { op: "offset-read", partition: 0, offset: 100 });
  run.drains = [logView({ partition: 0, values: ["p1-0"] })];
  expect(checkHistory(run.input()).failed).toEqual([]);
  run.groupOffset("probe", { op: "offset-read", partition: 0, offset: 900 });
  const result = checkHistory(run.input());
  expect(result.failed).toEqual(["I9"]);
  expect(result.violations[0].kind).toBe("offset-above-high-water");
});

test("a group that never fetched an acknowledged value breaks at-least-once (I1)", () => {
  const run = new SyntheticRun();
  run.produce("p1", "p1-0", { partition: 0, outcome: "ok", offset: 0 })
    .produce("p1", "p1-1", { partition: 0, outcome: "ok", offset: 100 })
    .fetch("c1", { partition: 0, offset: 0, records: [[0, "p1-0"]], next: 100 });
  run.drains = [logView({ partition: 0, values: ["p1-0", "p1-1"] })];
  expect(checkHistory(run.input()).failed).toEqual([]);
  const result = checkHistory(run.input(), { deliveryGroups: ["g"] });
  expect(result.failed).toEqual(["I1"]);
  expect(result.figures.notDelivered).toBe(1);
});

test("damaged bytes served to a consumer break I2", () => {
  const run = new SyntheticRun();
  run.history.push({
    t: 1,
    client: "c1",
    kind: "invoke",
    op: "fetch",
    topic: "chaos",
    partition: 0,
    offset: 0,
  });
  run.history.push({
    t: 2,
    client: "c1",
    kind: "info",
    op: "fetch",
    topic: "chaos",
    partition: 0,
    error: "damaged: Cannot decode record at offset 0: checksum mismatch",
  });
  expect(checkHistory(run.input()).failed).toEqual(["I2"]);
});

test("the chaos environment reads seed, scale and tier, and refuses nonsense", () => {
  expect(chaosEnv({ CHAOS_SEED: "12", CHAOS_SCALE: "3", CHAOS_TIER: "nightly" })).toMatchObject({
    seed: 12,
    scale: 3,
    tier: "nightly",
    enforceThresholds: false,
  });
  expect(chaosEnv({}).tier).toBe("ci");
  expect(() => chaosEnv({ CHAOS_SEED: "x" })).toThrow();
  expect(() => chaosEnv({ CHAOS_SCALE: "0" })).toThrow();
  expect(chaosEnv({ CHAOS_TIER_BUDGET_S: "2700", CHAOS_STRICT: "1" })).toMatchObject({
    tierBudgetMs: 2_700_000,
    strict: true,
  });
  expect(chaosEnv({}).tierBudgetMs).toBeUndefined();
  expect(() => chaosEnv({ CHAOS_TIER_BUDGET_S: "-5" })).toThrow();
});

test("a failed COMMIT is not committed only when the broker says nothing changed", () => {
  const unavailable = new BrokerError("unavailable", "no coordinator");
  const cases: [unknown, "local" | "xa", string][] = [
    [unavailable, "local", "fail"],
    [new XAError(XA_CODES.RMERR, unavailable.message, { cause: unavailable }), "xa", "fail"],
    [new XAError(XA_CODES.RBOTHER, "STORE COMMIT FAILED: Transaction rolled back."), "xa", "fail"],
    [
      new BrokerError("transactionFailed", "Local transaction 'TX:a:1' has not been started."),
      "local",
      "fail",
    ],
    [new XAError(XA_CODES.NOTA, "XA transaction 'x' has not been started."), "xa", "info"],
    [new TimeoutError("no reply"), "local", "info"],
    [
      new XAError(XA_CODES.RMERR, "Cannot append ...; it is journalled and will be completed"),
      "xa",
      "decided",
    ],
  ];
  for (const [error, kind, expected] of cases) {
    const outcome = commitOutcome(error, kind);
    const got = outcome.decided ? "decided" : outcome.kind;
    expect([outcome.error, got]).toEqual([outcome.error, expected]);
    expect(outcome.error.startsWith("COMMIT: ")).toBe(true);
  }
});

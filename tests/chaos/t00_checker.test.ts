/**
 * T00: the checker's self-test. One rich synthetic run that exercises every invariant and passes,
 * then one copy per planted anomaly; each copy must fail exactly the invariant it was built to
 * break. Runs in `npm test` on every change, with no broker.
 */
import { expect, test } from "bun:test";
import { checkHistory, type InvariantId } from "../cluster/checker.ts";
import { logView, replicaOf, SyntheticRun } from "../cluster/synthetic.ts";

type Entry = string | readonly [string, number];

interface Variant {
  /** Replaces partition 2's produces: [client, value, outcome, ack offset]. */
  readonly part2Produces?: readonly (readonly [string, string, "ok" | "fail" | "info", number?])[];
  /** Replaces partition 2's final log (and, unless given separately, its replicas). */
  readonly part2Log?: readonly Entry[];
  readonly part2Replicas?: Readonly<Record<number, readonly Entry[]>>;
  /** Appended after the base run. */
  readonly extra?: (run: SyntheticRun) => void;
}

const PART2_PRODUCES = [
  ["p3", "p3-0", "ok", 0],
  ["p3", "p3-1", "ok", 100],
  ["p3", "p3-2", "ok", 200],
  ["p4", "p4-0", "info"],
  ["p4", "p4-1", "info"],
] as const;

/** Three partitions, fetches, commits, offset reads, a failover in the traces, a repair, a kill. */
function buildRun(variant: Variant = {}): SyntheticRun {
  const run = new SyntheticRun();
  run.produce("p1", "p1-0", { partition: 0, outcome: "ok", offset: 0 })
    .produce("p1", "p1-1", { partition: 0, outcome: "ok", offset: 100 })
    .produce("p1", "p1-2", { partition: 0, outcome: "info" })
    .produce("p1", "p1-3", { partition: 0, outcome: "fail" })
    .produce("p1", "p1-4", { partition: 0, outcome: "ok", offset: 300 })
    .produce("p2", "p2-0", { partition: 1, outcome: "ok", offset: 0 })
    .produce("p2", "p2-1", { partition: 1, outcome: "ok", offset: 100 });
  for (const [client, value, outcome, offset] of variant.part2Produces ?? PART2_PRODUCES) {
    run.produce(client, value, { partition: 2, outcome, offset });
  }
  run.fetch("c1", { partition: 0, offset: 0, records: [[0, "p1-0"], [100, "p1-1"]], next: 200 })
    .groupOffset("c1", { op: "commit", partition: 0, offset: 200 })
    .groupOffset("probe", { op: "offset-read", partition: 0, offset: 200 })
    .fetch("c1", { partition: 0, offset: 200, records: [[200, "p1-2"], [300, "p1-4"]], next: 400 })
    .groupOffset("c1", { op: "commit", partition: 0, offset: 400 })
    .groupOffset("probe", { op: "offset-read", partition: 0, offset: 400 });
  for (const group of ["meta", "chaos-0", "chaos-1", "chaos-2"]) {
    run.trace(1, group, { event: "role", role: "leader", term: 1 });
    run.trace(2, group, { event: "role", role: "follower", term: 1 });
    run.trace(3, group, { event: "role", role: "follower", term: 1 });
  }
  for (const node of [1, 2, 3]) {
    run.trace(node, "chaos-0", { event: "append", term: 1, from: 0, to: 100, crc: 1234 });
    run.trace(node, "chaos-0", { event: "commit", offset: 100 });
  }
  const killedAt = run.tick(100);
  run.faults.push({
    id: 1,
    t: killedAt,
    until: run.tick(500),
    kind: "kill",
    nodes: [1],
    groups: ["chaos-0"],
  });
  run.trace(2, "chaos-0", { event: "role", role: "leader", term: 2 });
  run.trace(3, "chaos-1", { event: "repair", enter: true });
  run.tick(1000);
  run.trace(3, "chaos-1", { event: "repair", enter: false });
  const logs = [
    logView({ partition: 0, values: ["p1-0", "p1-1", "p1-2", "p1-4"] }),
    logView({ partition: 1, values: ["p2-0", "p2-1"] }),
    logView({ partition: 2, values: variant.part2Log ?? ["p3-0", "p3-1", "p3-2"] }),
  ];
  run.drains = logs;
  run.replicas = logs.flatMap((log) =>
    [1, 2, 3].map((node) => {
      const values = log.partition === 2 ? variant.part2Replicas?.[node] : undefined;
      return values
        ? logView({ source: "replica", node, partition: 2, values })
        : replicaOf(log, node);
    })
  );
  run.measurements = {
    ...run.measurements,
    recovery: ["chaos-0", "chaos-1", "chaos-2"].map((group) => ({
      group,
      okAfterMs: 400,
      boundMs: 10_000,
    })),
    exits: [{ node: 1, t: killedAt, code: null, signal: "SIGKILL", expected: true }],
    rss: [1, 2, 3].map((node) => ({ node, maxBytes: 100 * 1024 * 1024 })),
  };
  variant.extra?.(run);
  return run;
}

const ANOMALIES: readonly { name: string; invariant: InvariantId; variant: Variant }[] = [
  {
    name: "lost middle value: p3-1 acknowledged, then replaced by unacknowledged records",
    invariant: "I1",
    variant: { part2Log: ["p3-0", ["p4-0", 50], ["p4-1", 50], "p3-2"] },
  },
  {
    name: "phantom: a value nobody sent appears in the log",
    invariant: "I2",
    variant: { part2Log: ["p3-0", "p3-1", "p3-2", "p9-5"] },
  },
  {
    name: "damaged bytes served by a drain",
    invariant: "I2",
    variant: {
      extra: (run) => (run.drains[1] = { ...run.drains[1], damage: "checksum mismatch at 100" }),
    },
  },
  {
    name: "two values at one offset: a fetch and the final log disagree",
    invariant: "I3",
    variant: {
      extra: (run) =>
        run.fetch("c2", { partition: 2, offset: 100, records: [[100, "p4-0"]], next: 200 }),
    },
  },
  {
    name: "wrong ack offset: p3-2 acknowledged at 250 but stored at 200",
    invariant: "I4",
    variant: {
      part2Produces: [["p3", "p3-0", "ok", 0], ["p3", "p3-1", "ok", 100], [
        "p3",
        "p3-2",
        "ok",
        250,
      ]],
    },
  },
  {
    name: "duplicate: p3-1 stored twice though sent once",
    invariant: "I5",
    variant: { part2Log: ["p3-0", "p3-1", "p3-2", "p3-1"] },
  },
  {
    name: "reordering: p3-2 stored before p3-1 though sent after its ack",
    invariant: "I6",
    variant: {
      part2Produces: [["p3", "p3-0", "ok", 0], ["p3", "p3-1", "ok", 200], [
        "p3",
        "p3-2",
        "ok",
        100,
      ]],
      part2Log: ["p3-0", "p3-2", "p3-1"],
    },
  },
  {
    name: "read of a later-truncated record",
    invariant: "I7",
    variant: {
      extra: (run) =>
        run.fetch("c2", { partition: 2, offset: 300, records: [[300, "p4-0"]], next: 400 }),
    },
  },
  {
    name: "a value whose produce failed with 503 is in the log",
    invariant: "I7",
    variant: {
      part2Produces: [...PART2_PRODUCES, ["p3", "p3-3", "fail"]],
      part2Log: ["p3-0", "p3-1", "p3-2", "p3-3"],
    },
  },
  {
    name: "a consumer session skips ahead",
    invariant: "I8",
    variant: {
      extra: (run) =>
        run.fetch("c1", { partition: 0, offset: 500, records: [], next: 500 })
          .fetch("c1", { partition: 0, offset: 600, records: [], next: 600 }),
    },
  },
  {
    name: "committed offset read going backwards",
    invariant: "I9",
    variant: {
      extra: (run) => run.groupOffset("probe", { op: "offset-read", partition: 0, offset: 200 }),
    },
  },
  {
    name: "two leaders in one term",
    invariant: "I10",
    variant: {
      extra: (run) => run.trace(3, "chaos-0", { event: "role", role: "leader", term: 2 }),
    },
  },
  {
    name: "two different batches at one (offset, term)",
    invariant: "I10",
    variant: {
      extra: (run) =>
        run.trace(3, "chaos-0", { event: "append", term: 1, from: 0, to: 100, crc: 999 }),
    },
  },
  {
    name: "replica divergence after heal: node 3 misses the tail",
    invariant: "I11",
    variant: { part2Replicas: { 3: ["p3-0", "p3-1"] } },
  },
  {
    name: "a replica stuck in repair mode",
    invariant: "I12",
    variant: {
      extra: (run) => {
        run.trace(2, "chaos-2", { event: "repair", enter: true });
        run.tick(20_000);
      },
    },
  },
  {
    name: "a node exited on its own",
    invariant: "I13",
    variant: {
      extra: (run) => (run.measurements = {
        ...run.measurements,
        exits: [...run.measurements.exits, {
          node: 2,
          t: run.now,
          code: 1,
          signal: null,
          expected: false,
        }],
      }),
    },
  },
];

test("the clean synthetic run passes every invariant and its figures add up", () => {
  const result = checkHistory(buildRun().input());
  expect(result.violations).toEqual([]);
  expect(result.valid).toBe(true);
  expect(result.figures).toMatchObject({
    attempts: 12,
    acked: 8,
    failed: 1,
    indeterminate: 3,
    recovered: 1,
    lost: { total: 0, prefix: 0, middle: 0, postfix: 0 },
    duplicates: 0,
    elections: { "meta": 1, "chaos-0": 2, "chaos-1": 1, "chaos-2": 1 },
    failoverMs: { count: 0, never: 1 },
    deliveries: 4,
    uniqueDeliveries: 4,
  });
  expect(result.figures.repairMs).toEqual({ "node 3 chaos-1": 1001 });
});

test("each planted anomaly fails exactly the invariant it was planted for", () => {
  const detected: string[] = [];
  for (const anomaly of ANOMALIES) {
    const result = checkHistory(buildRun(anomaly.variant).input());
    expect([anomaly.name, result.failed]).toEqual([anomaly.name, [anomaly.invariant]]);
    detected.push(anomaly.name);
  }
  console.log(
    `T00 planted ${ANOMALIES.length}, detected ${detected.length} (each under its own invariant)`,
  );
});

test("lost values are split into prefix, middle and postfix per producer", () => {
  const run = buildRun({
    part2Produces: [
      ["p3", "p3-0", "ok", 0],
      ["p3", "p3-1", "ok", 100],
      ["p3", "p3-2", "ok", 200],
      ["p3", "p3-3", "ok", 300],
      ["p3", "p3-4", "ok", 400],
    ],
    part2Log: [["p4-0", 100], "p3-1", ["p4-1", 100], "p3-3", ["p4-2", 100]],
    extra: (run) =>
      ["p4-0", "p4-1", "p4-2"].forEach((value) =>
        run.produce("p4", value, { partition: 2, outcome: "info" })
      ),
  });
  const result = checkHistory(run.input());
  expect(result.failed).toEqual(["I1"]);
  expect(result.figures.lost).toEqual({ total: 3, prefix: 1, middle: 1, postfix: 1 });
  expect(result.figures.ackConflicts).toBe(3); // each lost ack's offset now holds a p4 value
});

test("report-only invariants are listed but do not fail the run", () => {
  const run = buildRun({ part2Log: ["p3-0", ["p4-0", 50], ["p4-1", 50], "p3-2"] });
  const enforce = ["I2", "I3", "I7", "I10", "I11"] as const;
  const result = checkHistory(run.input(), { enforce });
  expect(result.valid).toBe(true);
  expect(result.reportOnly).toEqual(["I1"]);
});

test("a value sent twice by a resending producer may appear twice (W1r), once otherwise", () => {
  const resent = buildRun({
    part2Produces: [...PART2_PRODUCES, ["p3", "p3-3", "info"], ["p3", "p3-3", "ok", 400]],
    part2Log: ["p3-0", "p3-1", "p3-2", "p3-3", "p3-3"],
  });
  expect(checkHistory(resent.input(), { resend: true }).failed).toEqual([]);
  expect(checkHistory(resent.input(), { resend: false }).failed).toEqual(["I5"]);
});

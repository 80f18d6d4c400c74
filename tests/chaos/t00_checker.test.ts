/**
 * T00: the checker's self-test. One rich synthetic run that exercises every invariant and passes,
 * then one copy per planted anomaly; each copy must fail exactly the invariant it was built to
 * break, and each of Jepsen's anomaly names is planted and must be reported under exactly that
 * name. Runs in `npm test` on every change, with no broker.
 */
import { expect, test } from "bun:test";
import { ANOMALY_NAMES, type AnomalyName } from "../cluster/anomalies.ts";
import {
  checkHistory,
  type CheckOptions,
  INVARIANT_IDS,
  type InvariantId,
} from "../cluster/checker.ts";
import { lostPuts } from "../cluster/loss_bounds.ts";
import type { FinishedRun } from "../cluster/scenario.ts";
import { logView, replicaOf, SyntheticRun, TOPIC } from "../cluster/synthetic.ts";

type Entry = string | readonly [string, number];

interface Variant {
  /** Replaces partition 2's produces: [client, value, outcome, ack offset]. */
  readonly part2Produces?: readonly (readonly [string, string, "ok" | "fail" | "info", number?])[];
  /** Replaces partition 2's final log (and, unless given separately, its replicas). */
  readonly part2Log?: readonly Entry[];
  readonly part2Replicas?: Readonly<Record<number, readonly Entry[]>>;
  /** Replaces the final logs of partitions 3 and 4 (the transactions' partitions). */
  readonly txnLogs?: Readonly<Partial<Record<3 | 4, readonly Entry[]>>>;
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

/**
 * Partitions 3 and 4: a committed local transaction (x1.1), a rolled-back XA one (x2.1), an XA
 * one of unknown outcome that landed (x2.2), a transaction that read x1.1's value after x1.1 was
 * acknowledged (x3.1), a plain put (p5-0), and a committed transaction nobody read (x4.1).
 */
const TXN_LOGS = {
  3: ["x1-0", "x1-1", "x2-3", "x4-0"],
  4: ["x1-2", "x2-2", "x3-0", "p5-0", "x4-1"],
} as const;

function addTransactions(run: SyntheticRun): void {
  run.txn("x1", { id: "x1.1", writes: [[3, "x1-0"], [3, "x1-1"], [4, "x1-2"]], outcome: "ok" })
    .txn("x2", { id: "x2.1", kind: "xa", writes: [[3, "x2-0"], [4, "x2-1"]], outcome: "fail" })
    .txn("x2", { id: "x2.2", kind: "xa", writes: [[4, "x2-2"], [3, "x2-3"]], outcome: "info" })
    .txn("x3", { id: "x3.1", writes: [[4, "x3-0"]], outcome: "ok", reads: [[3, 0, "x1-0"]] })
    .produce("p5", "p5-0", { partition: 4, outcome: "ok", offset: 300 })
    .txn("x4", { id: "x4.1", writes: [[3, "x4-0"], [4, "x4-1"]], outcome: "ok" });
}

/**
 * Five partitions, fetches, commits, offset reads, transactions, a broadcast consumer, a failover
 * in the traces, a repair, a kill.
 */
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
  addTransactions(run);
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
    logView({ partition: 3, values: variant.txnLogs?.[3] ?? TXN_LOGS[3] }),
    logView({ partition: 4, values: variant.txnLogs?.[4] ?? TXN_LOGS[4] }),
  ];
  run.drains = logs;
  // A broadcast consumer reads the transactions' partitions whole, as they ended up.
  for (const log of logs.slice(3)) run.readAll("b0", log, { group: "bcast-0" });
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
    recovery: ["chaos-0", "chaos-1", "chaos-2", "chaos-3", "chaos-4"].map((group) => ({
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
    name: "committed transaction x4.1 in partition 3 but not in partition 4",
    invariant: "I14",
    variant: { txnLogs: { 4: TXN_LOGS[4].slice(0, 4) } },
  },
  {
    name: "x3.1 read x1.1's value after its ack, yet x3-0 precedes x1-2",
    invariant: "I15",
    variant: { txnLogs: { 4: ["x3-0", "x1-2", "x2-2", "p5-0", "x4-1"] } },
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

/** One planted history per Jepsen name (some names twice, for their two shapes). */
const NAMED: readonly {
  name: AnomalyName;
  planted: string;
  variant: Variant;
  options?: CheckOptions;
}[] = [
  {
    name: "lost-write",
    planted: "p3-1 acknowledged, then replaced by unacknowledged records",
    variant: { part2Log: ["p3-0", ["p4-0", 50], ["p4-1", 50], "p3-2"] },
  },
  {
    name: "lost-write",
    planted: "committed transaction x4.1 missing whole from both its partitions",
    variant: { txnLogs: { 3: TXN_LOGS[3].slice(0, 3), 4: TXN_LOGS[4].slice(0, 4) } },
  },
  {
    name: "lost-write",
    planted: "transaction x6.1, which the broker said it would complete, never appeared",
    variant: {
      extra: (run) =>
        run.txn("x6", { id: "x6.1", writes: [[3, "x6-0"]], outcome: "info", decided: true }),
    },
  },
  {
    name: "duplicate",
    planted: "p3-1 stored twice though sent once",
    variant: { part2Log: ["p3-0", "p3-1", "p3-2", "p3-1"] },
  },
  {
    name: "inconsistent-offsets",
    planted: "a fetch saw p4-0 at offset 100, where the final log has p3-1",
    variant: {
      extra: (run) =>
        run.fetch("c2", { partition: 2, offset: 100, records: [[100, "p4-0"]], next: 200 }),
    },
  },
  {
    name: "inconsistent-offsets",
    planted: "p3-2 acknowledged at offset 250 but stored at 200",
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
    name: "nonmonotonic-send",
    planted: "p3-2 stored before p3-1 though sent after p3-1 was acknowledged",
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
    name: "poll-skip",
    planted: "a 301 moved a session from 100 to 300, over p1-1 and p1-2 that the log holds",
    variant: {
      extra: (run) =>
        run.fetch("c3", {
          partition: 0,
          offset: 0,
          records: [[0, "p1-0"]],
          next: 100,
          session: "s3",
        })
          .fetch("c3", { partition: 0, offset: 100, records: [], moved: 300, session: "s3" })
          .fetch("c3", {
            partition: 0,
            offset: 300,
            records: [[300, "p1-4"]],
            next: 400,
            session: "s3",
          }),
    },
  },
  {
    name: "nonmonotonic-poll",
    planted: "a 301 sent a session that had read to 200 back to 100, and it read p1-1 again",
    variant: {
      extra: (run) =>
        run.fetch("c3", {
          partition: 0,
          offset: 0,
          records: [[0, "p1-0"], [100, "p1-1"]],
          next: 200,
          session: "s3",
        })
          .fetch("c3", { partition: 0, offset: 200, records: [], moved: 100, session: "s3" })
          .fetch("c3", {
            partition: 0,
            offset: 100,
            records: [[100, "p1-1"]],
            next: 200,
            session: "s3",
          }),
    },
  },
  {
    name: "unseen",
    planted: "broadcast consumer b9 read every partition but never got p5-0",
    options: { deliveryGroups: ["bcast-9"] },
    variant: {
      extra: (run) => {
        for (const log of run.drains) {
          const records = log.partition === 4 ? log.records.slice(0, 3) : log.records;
          run.readAll("b9", { ...log, records }, { group: "bcast-9" });
        }
      },
    },
  },
  {
    name: "aborted-read",
    planted: "rolled-back transaction x2.1's x2-0 is in the final log",
    variant: { txnLogs: { 3: [...TXN_LOGS[3], "x2-0"] } },
  },
  {
    name: "aborted-read",
    planted: "p1-3, refused with 503, is in the final log",
    variant: {
      part2Produces: [...PART2_PRODUCES, ["p3", "p3-3", "fail"]],
      part2Log: ["p3-0", "p3-1", "p3-2", "p3-3"],
    },
  },
  {
    name: "torn-transaction",
    planted: "committed transaction x4.1 is in partition 3 but not in partition 4",
    variant: { txnLogs: { 4: TXN_LOGS[4].slice(0, 4) } },
  },
  {
    name: "torn-transaction",
    planted: "x1.1's two records in partition 3 are split by x2-3",
    variant: { txnLogs: { 3: ["x1-0", "x2-3", "x1-1", "x4-0"] } },
  },
  {
    name: "G1c",
    planted: "x3.1 read x1.1's x1-0 after x1.1 was acknowledged, yet x3-0 precedes x1-2",
    variant: { txnLogs: { 4: ["x3-0", "x1-2", "x2-2", "p5-0", "x4-1"] } },
  },
];

test("the clean synthetic run passes every invariant and its figures add up", () => {
  const result = checkHistory(buildRun().input());
  expect(result.violations).toEqual([]);
  expect(result.valid).toBe(true);
  expect(result.anomalies).toEqual({});
  expect(result.figures).toMatchObject({
    attempts: 13,
    acked: 9,
    failed: 1,
    indeterminate: 3,
    recovered: 1,
    lost: { total: 0, prefix: 0, middle: 0, postfix: 0 },
    duplicates: 0,
    elections: { "meta": 1, "chaos-0": 2, "chaos-1": 1, "chaos-2": 1 },
    failoverMs: { count: 0, never: 1 },
    deliveries: 13,
    uniqueDeliveries: 13,
    transactions: { attempts: 5, committed: 3, decided: 0, failed: 1, indeterminate: 1 },
  });
  // A broadcast consumer that read every partition to its end has nothing unseen.
  const whole = buildRun({
    extra: (run) => run.drains.forEach((log) => run.readAll("b8", log, { group: "bcast-8" })),
  });
  expect(checkHistory(whole.input(), { deliveryGroups: ["bcast-8"] }).violations).toEqual([]);
  expect(result.figures.repairMs).toEqual({ "node 3 chaos-1": 1001 });
});

test("each planted anomaly fails exactly the invariant it was planted for", () => {
  expect(INVARIANT_IDS.filter((id) => !ANOMALIES.some((entry) => entry.invariant === id)))
    .toEqual([]);
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

test("each of Jepsen's anomaly names is planted and reported under exactly that name", () => {
  expect(ANOMALY_NAMES.filter((name) => !NAMED.some((entry) => entry.name === name))).toEqual([]);
  for (const entry of NAMED) {
    const result = checkHistory(buildRun(entry.variant).input(), entry.options);
    const named = Object.keys(result.anomalies);
    expect([entry.planted, named]).toEqual([entry.planted, [entry.name]]);
    expect([entry.planted, result.valid]).toEqual([entry.planted, false]);
  }
  console.log(
    `T00 planted ${NAMED.length} named anomalies, each reported under its name: ${
      [...new Set(NAMED.map((entry) => entry.name))].join(", ")
    }`,
  );
});

/**
 * a.1 writes a-0 (partition 0) and a-1 (partition 1); b.1 reads a-0, then writes b-0 to
 * `bPartition` (default 1). `readerStartsFirst` puts b's start before a's acknowledgement.
 */
function twoTransactions(
  parts: { readerStartsFirst: boolean; logs: [string[], string[]]; bPartition?: number },
) {
  const run = new SyntheticRun();
  const a = { client: "a", op: "txn", topic: "chaos", txn: "a.1", txKind: "local" } as const;
  const b = { client: "b", op: "txn", topic: "chaos", txn: "b.1", txKind: "local" } as const;
  const aInvoke = {
    ...a,
    t: run.tick(),
    kind: "invoke",
    writes: [[0, "a-0"], [1, "a-1"]],
  } as const;
  const aDone = { ...a, kind: "ok" } as const;
  const bInvoke = { ...b, kind: "invoke", writes: [[parts.bPartition ?? 1, "b-0"]] } as const;
  const readAt = parts.logs[0].indexOf("a-0") * 100; // where the final log has it
  const bDone = { ...b, kind: "ok", reads: [[0, readAt, "a-0"]] } as const;
  run.history.push(aInvoke);
  if (parts.readerStartsFirst) {
    run.history.push({ ...bInvoke, t: run.tick() }, { ...aDone, t: run.tick() });
  } else {
    run.history.push({ ...aDone, t: run.tick() }, { ...bInvoke, t: run.tick() });
  }
  run.history.push({ ...bDone, t: run.tick() });
  run.drains = parts.logs.map((values, partition) => logView({ partition, values }));
  return checkHistory(run.input());
}

test("a transaction that precedes what it read is G1c, across partitions only once that was acknowledged", () => {
  const logs: [string[], string[]] = [["a-0"], ["b-0", "a-1"]]; // b's write lands before a's
  const acknowledged = twoTransactions({ readerStartsFirst: false, logs });
  expect(acknowledged.anomalies).toEqual({ G1c: 1 });
  expect(acknowledged.violations[0].message).toContain("transaction a.1 -wr-> transaction b.1");
  // a's commit was still in flight when b began: metaq shows a commit one partition at a time.
  expect(twoTransactions({ readerStartsFirst: true, logs }).anomalies).toEqual({});
  // ... but in the partition b read a-0 from, a-0 was there before b committed.
  const sameLog: [string[], string[]] = [["b-0", "a-0"], ["a-1"]];
  const inFlight = { readerStartsFirst: true, logs: sameLog, bPartition: 0 };
  expect(twoTransactions(inFlight).anomalies).toEqual({ G1c: 1 });
});

test("two commits landing in opposite orders in two partitions (a write cycle, G0) are allowed", () => {
  const run = new SyntheticRun();
  run.txn("a", { id: "a.1", writes: [[0, "a-0"], [1, "a-1"]], outcome: "ok" })
    .txn("b", { id: "b.1", writes: [[0, "b-0"], [1, "b-1"]], outcome: "ok" });
  run.drains = [
    logView({ partition: 0, values: ["a-0", "b-0"] }),
    logView({ partition: 1, values: ["b-1", "a-1"] }),
  ];
  expect(checkHistory(run.input()).violations).toEqual([]);
});

test("a violation a failing test already reproduces is counted as known and fails nothing", () => {
  const run = buildRun({ txnLogs: { 3: [...TXN_LOGS[3], "x2-0"] } }); // x2.1 rolled back
  const known = [{
    anomaly: "aborted-read",
    error: /rolled back/,
    reproduction: "tests/chaos/rXX.test.ts",
  }] as const;
  const result = checkHistory(run.input(), { known });
  expect([result.valid, result.anomalies, result.known]).toEqual([true, {}, {
    "tests/chaos/rXX.test.ts": 1,
  }]);
  // Only that anomaly, only with that error: anything else still fails.
  const other = checkHistory(run.input(), { known: [{ ...known[0], error: /timeout/ }] });
  expect([other.valid, other.anomalies]).toEqual([false, { "aborted-read": 1 }]);
});

test("with retention, a put acknowledged below the final log start is deleted, not lost", () => {
  const run = new SyntheticRun();
  run.produce("p0", "p0-0", { partition: 0, outcome: "ok", offset: 0 });
  run.produce("p0", "p0-1", { partition: 0, outcome: "ok", offset: 100 });
  run.produce("p0", "p0-2", { partition: 0, outcome: "ok", offset: 200 });
  run.produce("p0", "p0-3", { partition: 0, outcome: "ok", offset: 300 });
  // Retention cut the first two records; p0-3 is missing above the log start: really lost.
  run.drains = [logView({ partition: 0, start: 200, values: ["p0-2"] })];
  const lost = (options: { retention?: boolean }) =>
    checkHistory(run.input(), options).violations
      .filter((violation) => violation.anomaly === "lost-write")
      .map((violation) => violation.message.split(" ")[0]);
  expect(lost({ retention: true })).toEqual(["p0-3"]);
  expect(lost({})).toEqual(["p0-0", "p0-1", "p0-3"]);
});

test("with a loss allowed, what a lost read value brings is not counted again; anything else is", () => {
  // p0-1 was acknowledged at 100 and read there, then lost (fsync=interval, a power cut of
  // every node); p0-2, 150 bytes, was written at 100 after it. The reader stood at 200 (after
  // p0-1), now the middle of p0-2, where a MetaQ broker serves a record's tail (damaged bytes).
  const run = new SyntheticRun();
  run.produce("p0", "p0-0", { partition: 0, outcome: "ok", offset: 0 })
    .produce("p0", "p0-1", { partition: 0, outcome: "ok", offset: 100 })
    .produce("p0", "p0-2", { partition: 0, outcome: "ok", offset: 100 })
    .produce("p0", "p0-3", { partition: 0, outcome: "ok", offset: 250 })
    .fetch("c1", { partition: 0, offset: 0, records: [[0, "p0-0"], [100, "p0-1"]], next: 200 });
  const damagedFetch = (offset: number) => {
    const base = { client: "c1", op: "fetch", topic: TOPIC, partition: 0, group: "g", offset };
    run.history.push({ ...base, t: run.tick(), kind: "invoke", node: 1 } as const);
    run.history.push(
      {
        ...base,
        t: run.tick(5),
        kind: "info",
        node: 1,
        error: `damaged: Error: Cannot decode record at offset ${offset}: invalid length 7`,
      } as const,
    );
  };
  damagedFetch(200);
  run.drains = [logView({ partition: 0, values: ["p0-0", ["p0-2", 150], "p0-3"] })];
  const found = (options: CheckOptions) =>
    checkHistory(run.input(), { ...options, enforce: ["I2", "I3"] }).violations
      .filter((violation) => violation.invariant === "I2" || violation.invariant === "I3")
      .map((violation) => `${violation.invariant} ${violation.message.split(":")[0]}`);
  expect(found({ lossAllowed: true })).toEqual([]);
  expect(found({})).toEqual([
    "I2 Node 1 served damaged bytes to c1",
    "I3 chaos-0@100 holds 2 values",
  ]);
  // Damage at a record boundary of the final log, and a value that survived elsewhere read at
  // another's offset, are not what a loss brings: they count.
  damagedFetch(250);
  run.fetch("c2", { partition: 0, offset: 250, records: [[250, "p0-0"]], next: 350 });
  expect(found({ lossAllowed: true })).toEqual([
    "I2 Node 1 served damaged bytes to c1",
    "I3 chaos-0@250 holds 2 values",
  ]);
});

test("a put whose acknowledgement arrived while a fault had every node down counts as at the fault", () => {
  // The fault is recorded before its kills; an acknowledgement on the wire arrives after that
  // record but was sent before the node stopped (T05b seed 3366206478). One that arrives after
  // the first restart is not the fault's.
  const run = new SyntheticRun();
  run.produce("p0", "p0-0", { partition: 0, outcome: "ok", offset: 0 });
  const cutAt = run.tick(10);
  run.produce("p0", "p0-1", { partition: 0, outcome: "ok", offset: 100 });
  const firstStart = run.tick(2000);
  run.produce("p0", "p0-2", { partition: 0, outcome: "ok", offset: 100 });
  run.faults.push({
    id: 1,
    t: cutAt,
    allDownUntil: firstStart,
    until: run.tick(500),
    kind: "power-cut-all",
    nodes: [1, 2, 3],
    groups: [`${TOPIC}-0`],
  });
  run.drains = [logView({ partition: 0, values: [] })];
  const lost = lostPuts({ input: run.input() } as FinishedRun, TOPIC, ["power-cut-all"]);
  expect(lost.map((put) => [put.value, put.msToFault])).toEqual([
    ["p0-0", cutAt - run.history[1].t],
    ["p0-1", 0],
    ["p0-2", null],
  ]);
});

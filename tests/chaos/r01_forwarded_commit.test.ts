/**
 * R01, a regression test for an anomaly the checker found (T08, seed 2419108797: `aborted-read` of
 * x1-122): an XA (or local) COMMIT sent to a node that is not the transaction coordinator is forwarded to
 * the coordinator, which journals the commit and appends its records; if the coordinator then
 * stops leading `__tx-0` before its reply reaches the forwarding node, that node answers the
 * client `503 ... stopped leading before it answered; retry`. A 503 says nothing changed
 * (docs/transactions.md, "On a cluster"), yet the commit took effect: a transaction manager that
 * believes it and rolls back, or reports the branch as failed, is wrong. Now the forwarding node
 * sends the COMMIT again to the next coordinator, whose journal says it committed: answered ok.
 *
 * The test makes that interleaving certain: it blackholes the coordinator's bytes to the client's
 * node before the COMMIT (so the reply never arrives), waits until the committed record is
 * readable on the third node, then pauses the coordinator so that the other two elect a new one.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { MetaqClient } from "../../lib/client/client.ts";
import { TransactionalProducer } from "../../lib/client/transaction.ts";
import { MetaqXAResource } from "../../lib/client/xa_resource.ts";
import { Cluster } from "../cluster/launcher.ts";
import { leaderFromTraces, TraceReader } from "../cluster/leaders.ts";
import { blackhole } from "../cluster/link_proxy.ts";
import { Random } from "../cluster/random.ts";
import { binarySupport, chaosEnv } from "../cluster/scenario.ts";
import { describe, payloadFor, sleep, withDeadline } from "../cluster/workloads.ts";
import { valueOf } from "../cluster/drain.ts";
import { decodeRecords } from "../../lib/protocol/record.ts";
import { MESSAGE_BYTES_LIMIT_MAX } from "../../lib/limits.ts";

const TOPIC = "chaos";
const STEP_MS = 20_000;

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = performance.now() + STEP_MS;
  while (performance.now() < deadline) {
    const found = await probe().catch(() => undefined);
    if (found !== undefined) return found;
    await sleep(100);
  }
  throw new Error(`Cannot see ${what} within ${STEP_MS} ms`);
}

/** The values of partition 0 readable through `client`. */
async function valuesOf(client: MetaqClient): Promise<string[]> {
  const reply = await client.get({
    topic: TOPIC,
    group: "r01",
    partition: 0,
    offset: 0,
    maxSize: 1024 * 1024,
  });
  if (reply.kind !== "records") return [];
  return decodeRecords(reply.bytes, 0, MESSAGE_BYTES_LIMIT_MAX)
    .map((record) => valueOf(record.flag, record.data));
}

const env = chaosEnv();
const support = binarySupport(env.binary);
/** Prepares a transaction holding `value` through `client`; resolves to its COMMIT. */
type Prepare = (client: MetaqClient, value: string) => Promise<() => Promise<void>>;

const KINDS: Record<"XA" | "local", Prepare> = {
  XA: async (client, value) => {
    const resource = new MetaqXAResource(client, { uniqueQualifier: "r01" });
    const xid = { formatId: 1, globalId: "0102", branchQualifier: "01" };
    await resource.start(xid);
    await resource.send(TOPIC, payloadFor(value), { partition: 0 });
    await resource.end(xid);
    expect(await resource.prepare(xid)).toBe(0);
    return () => resource.commit(xid, false);
  },
  local: async (client, value) => {
    const tx = await new TransactionalProducer(client).beginTransaction({ timeoutSeconds: 60 });
    await tx.send(TOPIC, payloadFor(value), { partition: 0 });
    return () => tx.commit();
  },
};

// Fixed: the forwarding node sends the COMMIT again (`commitagain`) to the next coordinator, which
// answers it from the journal (lib/broker/tx/manager.ts, commitAgain).
for (const [kind, prepare] of Object.entries(KINDS)) {
  const name =
    `${
      kind === "XA" ? "an" : "a"
    } ${kind} COMMIT whose records are readable is answered ok, also when the ` +
    "coordinator it was forwarded to loses leadership before replying";
  (support.cluster ? test : test.skip)(name, () => reproduce(prepare), 120_000);
}

async function reproduce(prepare: Prepare): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-r01-"));
  const log = (line: string) => fs.appendFileSync(path.join(dir, "run.log"), `${line}\n`);
  const cluster = await Cluster.start({
    dir,
    nodeCount: 3,
    replicated: true,
    partitions: 1,
    replicas: 3,
    ack: "quorum",
    fsync: "always",
    binary: env.binary,
    random: new Random(19),
    log,
  });
  const clients: MetaqClient[] = [];
  const clientOf = (node: number) => {
    const client = new MetaqClient({
      brokers: [cluster.address(node)],
      routeToLeaders: false,
      requestTimeoutMs: 30_000,
    });
    clients.push(client);
    return client;
  };
  try {
    const traces = new TraceReader(cluster.nodes.map((node) => node.tracePath));
    const setup = clientOf(1);
    await until("a first put", () => setup.put(TOPIC, 0, { payload: payloadFor("r01-setup") }));
    const leaderOf = (group: string) =>
      until(`a leader of ${group}`, () => {
        traces.poll();
        return Promise.resolve(leaderFromTraces(traces.events, group, cluster.running()));
      });
    const coordinator = await leaderOf("__tx-0");
    const partitionLeader = await leaderOf(`${TOPIC}-0`);
    const others = cluster.running().filter((id) => id !== coordinator);
    const via = others.find((id) => id !== partitionLeader) ?? others[0];
    const third = others.find((id) => id !== via)!;
    log(`coordinator ${coordinator}, ${TOPIC}-0 leader ${partitionLeader}, client on ${via}`);

    const commitNow = await prepare(clientOf(via), "r01-0");

    cluster.network.setLink(coordinator, via, blackhole()); // its reply will not arrive
    const commit = commitNow().then(() => "ok", (error) => describe(error));
    const reader = clientOf(third);
    await until("the committed record", async () => {
      const values = await valuesOf(reader);
      return values.includes("r01-0") ? values : undefined;
    });
    cluster.pause(coordinator); // the others elect a new coordinator
    const outcome = await withDeadline(commit, STEP_MS);
    log(`COMMIT answered: ${outcome}`);
    cluster.resume(coordinator);
    cluster.network.healAll();
    expect(await valuesOf(reader)).toContain("r01-0");
    expect(outcome).toBe("ok"); // committed, and the next coordinator's journal says so
  } finally {
    for (const client of clients) client.close();
    await cluster.teardown();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * @module One chaos test from start to verdict, the same skeleton for every scenario:
 *
 * 1. start a fresh cluster in a fresh temp dir (ports reserved, proxies up), watchdog armed;
 * 2. wait for service: every partition acknowledges a produce (logged like any produce);
 * 3. run the workloads (W1 or W1r, and W2 + W3 when asked) while the nemesis injects faults for
 *    `runMs × CHAOS_SCALE`; every fault is logged with its window;
 * 4. heal everything (links pass, paused nodes resumed, stopped nodes started) and measure how
 *    long each partition takes to acknowledge a produce again (I12);
 * 5. stop the workloads, wait for the replicas to converge (from traces, else cluster status);
 * 6. drain every partition through its leader, stop the nodes, dump every replica's files;
 * 7. run the checker, write the JSON result and a one-line summary; keep the run directory when
 *    the verdict is a failure.
 *
 * Environment: CHAOS_SEED (replay), CHAOS_SCALE (durations ×, default 1), CHAOS_TIER (`ci` or
 * `nightly`), CHAOS_ENFORCE_THRESHOLDS=1 (fail on plan section 4 timing thresholds),
 * CHAOS_KEEP=1 (keep run directories even when green), CHAOS_STRICT=1 (known anomalies fail too),
 * CHAOS_SKIP=<ids> (scenarios not to run, e.g. the campaign's open problems),
 * METAQ_BINARY (the binary).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { MetaqClient } from "../../lib/client/client.ts";
import { checkHistory, type CheckOptions, type CheckResult } from "./checker.ts";
import { drainPartition, dumpReplica } from "./drain.ts";
import { GROUP_OPS, type GroupOps } from "./group_ops.ts";
import type { CheckInput, FaultEvent, LogView, Measurements, TraceEvent } from "./history.ts";
import { Cluster, type ClusterOptions, METAQ_BINARY, REPO_ROOT } from "./launcher.ts";
import { clusterStatus, Leaders, TraceReader } from "./leaders.ts";
import type { Network } from "./network.ts";
import { NetfilterNetwork, NETNS_ENV } from "./netns.ts";
import { KNOWN_ANOMALIES } from "./known_anomalies.ts";
import { MixedWorkload } from "./mixed_workloads.ts";
import { Random } from "./random.ts";
import {
  ClientPool,
  ConsumerGroupWorkload,
  HistoryRecorder,
  OffsetProbe,
  PartitionRouter,
  produceOnce,
  QueueWorkload,
  sleep,
} from "./workloads.ts";

export const TOPIC = "chaos";
export const GROUP = "chaos-group";
export const OUTPUT_DIR = path.join(REPO_ROOT, "tests/output/chaos");
/** In a run directory: the checker's input and options, as JSON. */
export const CHECK_INPUT_FILE = "check-input.json";
const SERVICE_BOUND_MS = 30_000;
const RECOVERY_BOUND_MS = 30_000;
const CONVERGENCE_BOUND_MS = 15_000;
export const REPAIR_BOUND_MS = 30_000;
const RSS_CAP_BYTES = 1024 * 1024 * 1024;
const SETUP_ALLOWANCE_MS = 75_000;
/** Setup, heal, convergence, drain and teardown as measured: 10-30 s per scenario. */
const USUAL_OVERHEAD_MS = 30_000;
const DRAIN_MS_MAX = 30_000;

export interface ChaosEnv {
  readonly seed: number;
  readonly scale: number;
  readonly tier: "ci" | "nightly";
  readonly enforceThresholds: boolean;
  readonly keepRuns: boolean;
  /** CHAOS_SKIP=T05b,...: scenario ids not to run here (the campaign's open problems). */
  readonly skip: readonly string[];
  /** CHAOS_STRICT=1: known anomalies (known_anomalies.ts) fail the run too. */
  readonly strict?: boolean;
  /**
   * CHAOS_TIER_BUDGET_S: wall-clock time for the whole test process (the tier), from its start.
   * A scenario that would not finish in what is left is skipped, saying so; one still running
   * at the end is stopped by its watchdog and fails. Unset: no limit but each scenario's own.
   */
  readonly tierBudgetMs?: number;
  /** Keep the run directory of a failed run (default true; self-tests of failures say false). */
  readonly keepFailedRuns?: boolean;
  readonly binary: string;
}

export function chaosEnv(env: Record<string, string | undefined> = process.env): ChaosEnv {
  const seed = env.CHAOS_SEED === undefined ? Random.freshSeed() : Number(env.CHAOS_SEED);
  const scale = env.CHAOS_SCALE === undefined ? 1 : Number(env.CHAOS_SCALE);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new Error(`Cannot use CHAOS_SEED=${env.CHAOS_SEED}: expected an integer in [0, 2^32)`);
  }
  if (!(scale > 0 && scale <= 100)) {
    throw new Error(`Cannot use CHAOS_SCALE=${env.CHAOS_SCALE}: expected a number in (0, 100]`);
  }
  const tierBudget = env.CHAOS_TIER_BUDGET_S === undefined
    ? undefined
    : Number(env.CHAOS_TIER_BUDGET_S);
  if (tierBudget !== undefined && !(Number.isInteger(tierBudget) && tierBudget > 0)) {
    throw new Error(
      `Cannot use CHAOS_TIER_BUDGET_S=${env.CHAOS_TIER_BUDGET_S}: expected a whole number of seconds`,
    );
  }
  return {
    seed,
    scale,
    tier: env.CHAOS_TIER === "nightly" ? "nightly" : "ci",
    enforceThresholds: env.CHAOS_ENFORCE_THRESHOLDS === "1",
    keepRuns: env.CHAOS_KEEP === "1",
    strict: env.CHAOS_STRICT === "1",
    skip: (env.CHAOS_SKIP ?? "").split(",").map((id) => id.trim()).filter((id) => id !== ""),
    tierBudgetMs: tierBudget === undefined ? undefined : tierBudget * 1000,
    binary: env.METAQ_BINARY ?? METAQ_BINARY,
  };
}

export interface NemesisContext {
  readonly cluster: Cluster;
  readonly network: Network;
  readonly random: Random;
  readonly leaders: Leaders;
  readonly traces: TraceReader;
  readonly topic: string;
  readonly partitions: number;
  readonly scale: number;
  /** Partition groups: `chaos-0`, `chaos-1`... */
  readonly partitionGroups: readonly string[];
  log(line: string): void;
  /** Opens a fault window (closed by `end`, or by the final heal). */
  begin(kind: string, parts?: { nodes?: number[]; groups?: string[]; detail?: string }): FaultEvent;
  end(fault: FaultEvent): void;
  /** Time left in the fault phase. */
  remainingMs(): number;
  sleep(ms: number): Promise<void>;
  /** Scenario findings that are not one of I1-I13 (for example "elections while healthy"). */
  finding(message: string): void;
  /** The consumer group workload, when the scenario runs one. */
  readonly consumers: ConsumerGroupWorkload | undefined;
  /** Figures the scenario reports (merged into the JSON result). */
  readonly figures: Record<string, unknown>;
  /**
   * Sends a value to every partition until each is acknowledged (bounded); returns the ms the
   * slowest took, or null when one never was. The values go into the history like any produce.
   */
  waitForService(boundMs: number): Promise<number | null>;
}

export interface ScenarioSpec {
  readonly id: string;
  readonly title: string;
  /** Nightly-only scenarios are skipped (with a reason) in the CI tier. */
  readonly tier?: "ci" | "nightly";
  /** Length of the workload + fault phase at CHAOS_SCALE=1. */
  readonly runMs: number;
  readonly cluster?: Partial<
    Pick<
      ClusterOptions,
      "nodeCount" | "partitions" | "replicas" | "ack" | "fsync" | "segmentBytes" | "joining"
    >
  >;
  /** false: plain single brokers (harness self-tests before the cluster exists). */
  readonly replicated?: boolean;
  readonly workload?: {
    readonly producers?: number;
    readonly ratePerSecond?: number;
    readonly resend?: boolean;
  };
  /**
   * Run W2 (consumer group) and W3 (offset probe). `true` needs GROUP_OPS (or `groupOps`) and
   * skips the scenario without it; `"optional"` runs them only when available.
   */
  readonly groups?: boolean | "optional";
  readonly groupOps?: GroupOps;
  /**
   * Also run W5 (mixed_workloads.ts): keyed, local-transaction and XA producers and broadcast
   * and plain readers, each pinned to a node. Its readers must see every committed value.
   */
  readonly mixed?: boolean;
  readonly nemesis?: (ctx: NemesisContext) => Promise<void>;
  readonly check?: CheckOptions;
  /** Scenario-specific checks after the run: each returned string is a failing finding. */
  readonly extraChecks?: (run: FinishedRun) => string[];
  /** Scenario-specific figures for the JSON result (report only). */
  readonly extraFigures?: (run: FinishedRun) => Record<string, unknown>;
  readonly recoveryBoundMs?: number;
  /**
   * Longest a replica may stay in repair mode (I12); default 30 s. A scenario that holds a node
   * in repair on purpose (T06, T07: its quorum is away) allows that time on top.
   */
  readonly repairBoundMs?: number;
}

export interface FinishedRun {
  readonly input: CheckInput;
  readonly result: CheckResult;
  /** Wall-clock ms when every partition first served. */
  readonly readyAt: number;
  /** When the final graceful stops began (leadership hand-overs follow). */
  readonly stoppingAt: number;
  /** Wall-clock ms of the final heal. */
  readonly healAt: number;
}

export interface ScenarioOutcome {
  readonly id: string;
  readonly seed: number;
  readonly valid: boolean;
  readonly result: CheckResult;
  readonly findings: readonly string[];
  readonly thresholds: readonly Threshold[];
  /** Scenario-specific figures (stale-leader window, time to service...). */
  readonly figures: Record<string, unknown>;
  readonly summary: string;
  readonly resultFile: string;
  readonly keptRunDir?: string;
}

export interface Threshold {
  readonly name: string;
  readonly value: number | null;
  readonly limit: number;
  readonly ok: boolean;
}

/** Hard budget of a scenario: setup, run, heal, drain and teardown. */
export function budgetMs(spec: ScenarioSpec, env: ChaosEnv): number {
  return SETUP_ALLOWANCE_MS + Math.round(spec.runMs * env.scale * 1.5);
}

/** What a scenario usually takes: its fault phase, plus setup, heal, drain and teardown. */
export function expectedMs(spec: ScenarioSpec, env: ChaosEnv): number {
  return Math.round(spec.runMs * env.scale) + USUAL_OVERHEAD_MS;
}

/** When the tier's budget (CHAOS_TIER_BUDGET_S) runs out, in wall-clock ms; undefined: never. */
export function tierDeadline(env: ChaosEnv): number | undefined {
  return env.tierBudgetMs === undefined ? undefined : performance.timeOrigin + env.tierBudgetMs;
}

/** Why this scenario cannot run here, or undefined. */
export function skipReason(spec: ScenarioSpec, env: ChaosEnv): string | undefined {
  if (env.skip.includes(spec.id)) return `listed in CHAOS_SKIP (an open problem, see the campaign)`;
  if (spec.tier === "nightly" && env.tier !== "nightly") {
    return "nightly tier only (CHAOS_TIER=nightly)";
  }
  if (spec.groups === true && !(spec.groupOps ?? GROUP_OPS)) {
    return "consumer groups not wired: tests/cluster/group_ops.ts GROUP_OPS is undefined";
  }
  const support = binarySupport(env.binary);
  if (!support.ok) return support.reason;
  if (spec.replicated !== false && !support.cluster) {
    return `${
      path.relative(REPO_ROOT, env.binary)
    } serve --help does not list --peers: the cluster has not landed`;
  }
  return undefined;
}

const supportCache = new Map<string, { ok: boolean; cluster: boolean; reason?: string }>();

/** Whether the binary exists, and whether `serve --help` lists `--peers`. */
export function binarySupport(binary: string): { ok: boolean; cluster: boolean; reason?: string } {
  const cached = supportCache.get(binary);
  if (cached) return cached;
  let out: { ok: boolean; cluster: boolean; reason?: string };
  if (!fs.existsSync(binary)) {
    out = { ok: false, cluster: false, reason: `${binary} is not built (npm run build)` };
  } else {
    const help = spawnSync(binary, ["serve", "--help"], { encoding: "utf8", timeout: 15_000 });
    out = help.status === 0
      ? { ok: true, cluster: /--peers\b/.test(help.stdout) }
      : { ok: false, cluster: false, reason: `${binary} serve --help failed: ${help.stderr}` };
  }
  supportCache.set(binary, out);
  return out;
}

export async function runScenario(spec: ScenarioSpec, env: ChaosEnv): Promise<ScenarioOutcome> {
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), `metaq-chaos-${spec.id}-`));
  const logFile = path.join(runDir, "run.log");
  const started = Date.now();
  const log = (line: string) =>
    fs.appendFileSync(logFile, `+${((Date.now() - started) / 1000).toFixed(3)}s ${line}\n`);
  log(`${spec.id} ${spec.title} seed=${env.seed} scale=${env.scale} tier=${env.tier}`);
  const random = new Random(env.seed);
  const run = new Run(spec, env, runDir, random.fork("run"), log);
  let watchdogFired = false;
  const deadline = tierDeadline(env);
  const leftMs = deadline === undefined ? Infinity : deadline - Date.now();
  const watchdogMs = Math.max(0, Math.min(budgetMs(spec, env), leftMs));
  const watchdog = setTimeout(() => {
    watchdogFired = true;
    log(
      watchdogMs < budgetMs(spec, env)
        ? `watchdog: the tier's budget (CHAOS_TIER_BUDGET_S) ran out, killing every node`
        : `watchdog: budget of ${budgetMs(spec, env)} ms exceeded, killing every node`,
    );
    run.cluster?.killAllNow();
  }, watchdogMs);
  let finished: FinishedRun | undefined;
  let crash: unknown;
  try {
    finished = await run.execute();
  } catch (error) {
    crash = error;
    log(`harness error: ${(error as Error).stack ?? error}`);
  } finally {
    clearTimeout(watchdog);
    await run.teardown();
  }
  return report({
    spec,
    env,
    runDir,
    started,
    finished,
    crash,
    watchdogFired,
    findings: run.findings,
    figures: run.figures,
    log,
  });
}

/** The state of one scenario run. */
class Run {
  readonly spec: ScenarioSpec;
  readonly env: ChaosEnv;
  readonly dir: string;
  readonly random: Random;
  readonly log: (line: string) => void;
  readonly findings: string[] = [];
  readonly figures: Record<string, unknown> = {};
  readonly faults: FaultEvent[] = [];
  cluster: Cluster | undefined;
  /** Producers stop first (before convergence); consumers and the probe after the drain. */
  #stoppers: (() => Promise<void>)[] = [];
  #consumerStoppers: (() => Promise<void>)[] = [];
  #mixed: MixedWorkload | undefined;
  #rssTimer: ReturnType<typeof setInterval> | undefined;
  readonly #serviceCalls = new Map<string, number>();
  #recorder: HistoryRecorder;

  constructor(
    spec: ScenarioSpec,
    env: ChaosEnv,
    dir: string,
    random: Random,
    log: (line: string) => void,
  ) {
    this.spec = spec;
    this.env = env;
    this.dir = dir;
    this.random = random;
    this.log = log;
    this.#recorder = new HistoryRecorder(path.join(dir, "history.jsonl"));
  }

  get partitions(): number {
    return this.spec.cluster?.partitions ?? 6;
  }

  async execute(): Promise<FinishedRun> {
    const cluster = await this.#startCluster();
    const traces = new TraceReader(cluster.nodes.map((node) => node.tracePath));
    const leaders = new Leaders({
      cluster,
      topic: TOPIC,
      traces,
      random: this.random.fork("leaders"),
    });
    const router = new PartitionRouter({ cluster, leaders });
    this.#rssTimer = setInterval(() => cluster.sampleRss(), 1000);
    const service = await this.#serveAll(router, "setup", Date.now(), SERVICE_BOUND_MS);
    const readyAt = Date.now();
    if (service.some((entry) => entry.okAfterMs === null)) {
      throw new Error(`Cannot start the workload: no service on ${JSON.stringify(service)}`);
    }
    this.log(`service on every partition; workload starts`);
    const consumers = this.#startWorkloads(cluster, router);
    await this.#runNemesis({ cluster, traces, leaders, router, consumers });
    const healAt = await this.#healAll(cluster);
    const recovery = await this.#serveAll(
      router,
      "recover",
      healAt,
      this.spec.recoveryBoundMs ?? RECOVERY_BOUND_MS,
    );
    await this.#stopProducers();
    const convergenceMs = await this.#waitConverged(cluster, traces, healAt);
    const drains = await this.#drainAll(cluster, leaders);
    if (consumers) await this.#catchUpConsumers(consumers, drains);
    if (this.#mixed) await this.#catchUpReaders(this.#mixed, drains);
    await this.#stopAll();
    // Graceful stops hand leadership over: elections after this are expected.
    const stoppingAt = Date.now();
    await Promise.all(cluster.nodes.map((node) => cluster.stop(node.id)));
    traces.poll();
    for (const problem of traces.problems.slice(0, 20)) {
      this.findings.push(`trace contract: ${problem}`);
    }
    const input: CheckInput = {
      history: this.#recorder.ops,
      drains,
      replicas: this.#dumpAll(cluster),
      traces: traces.events,
      faults: this.faults,
      measurements: this.#measurements(cluster, recovery, convergenceMs),
    };
    fs.writeFileSync(path.join(this.dir, "faults.json"), JSON.stringify(this.faults, null, 1));
    const options: CheckOptions = {
      known: this.env.strict ? [] : KNOWN_ANOMALIES,
      ...this.spec.check,
      deliveryGroups: [
        ...(this.spec.check?.deliveryGroups ?? []),
        ...(this.#mixed?.deliveryGroups ?? []),
      ],
    };
    // Everything the checker judged, so a kept run can be checked again (recheck.ts).
    fs.writeFileSync(
      path.join(this.dir, CHECK_INPUT_FILE),
      JSON.stringify({ input, options: { ...options, known: undefined } }),
    );
    const result = checkHistory(input, options);
    const finished = { input, result, readyAt, healAt, stoppingAt };
    this.findings.push(...(this.spec.extraChecks?.(finished) ?? []));
    Object.assign(this.figures, this.spec.extraFigures?.(finished) ?? {});
    return finished;
  }

  async teardown(): Promise<void> {
    if (this.#rssTimer) clearInterval(this.#rssTimer);
    await this.#stopAll().catch(() => {});
    await this.cluster?.teardown();
    this.#recorder.close();
  }

  async #startCluster(): Promise<Cluster> {
    const c = this.spec.cluster ?? {};
    const replicated = this.spec.replicated !== false;
    this.cluster = await Cluster.start({
      dir: this.dir,
      nodeCount: c.nodeCount ?? (replicated ? 3 : 1),
      replicated,
      partitions: this.partitions,
      replicas: replicated ? c.replicas ?? c.nodeCount ?? 3 : undefined,
      ack: replicated ? c.ack ?? "quorum" : undefined,
      fsync: replicated ? c.fsync ?? "always" : undefined,
      segmentBytes: c.segmentBytes ?? 1024 * 1024,
      joining: c.joining,
      binary: this.env.binary,
      random: this.random.fork("cluster"),
      log: this.log,
    });
    return this.cluster;
  }

  /**
   * Sends one value per partition (client `<label><call>p<p>`) until each is acknowledged or
   * `boundMs` passes; returns how long each partition took from `fromT`.
   */
  async #serveAll(
    router: PartitionRouter,
    label: string,
    fromT: number,
    boundMs: number,
  ): Promise<Measurements["recovery"]> {
    const deadline = fromT + boundMs;
    const call = (this.#serviceCalls.get(label) ?? 0) + 1;
    this.#serviceCalls.set(label, call);
    return await Promise.all(Array.from({ length: this.partitions }, async (_, partition) => {
      const pool = new ClientPool(this.cluster!);
      // A fresh client name per call, so no value is ever sent twice.
      const client = `${label}${call}p${partition}`;
      try {
        for (let seq = 0; Date.now() < deadline; seq++) {
          const node = router.nodeFor(partition);
          const value = `${client}-${seq}`;
          const base = { client, op: "produce", topic: TOPIC, partition, value, node } as const;
          this.#recorder.record({ ...base, kind: "invoke" });
          const outcome = await produceOnce(pool, { node, topic: TOPIC, partition, value });
          if (outcome.kind === "ok") {
            this.#recorder.record({ ...base, kind: "ok", offset: outcome.offset });
            return { group: `${TOPIC}-${partition}`, okAfterMs: Date.now() - fromT, boundMs };
          }
          this.#recorder.record({ ...base, kind: outcome.kind, error: outcome.error });
          router.failed(partition, node, outcome.error);
          await sleep(200);
        }
        return { group: `${TOPIC}-${partition}`, okAfterMs: null, boundMs };
      } finally {
        pool.close();
      }
    }));
  }

  #startWorkloads(cluster: Cluster, router: PartitionRouter): ConsumerGroupWorkload | undefined {
    const queue = new QueueWorkload({
      cluster,
      router,
      recorder: this.#recorder,
      random: this.random.fork("queue"),
      topic: TOPIC,
      partitions: this.partitions,
      producers: this.spec.workload?.producers,
      ratePerSecond: this.spec.workload?.ratePerSecond,
      resend: this.spec.workload?.resend,
    });
    queue.start();
    this.#stoppers.push(() => queue.stop());
    if (this.spec.mixed) {
      const mixed = new MixedWorkload({
        cluster,
        recorder: this.#recorder,
        random: this.random.fork("mixed"),
        topic: TOPIC,
        partitions: this.partitions,
      });
      mixed.start();
      this.#mixed = mixed;
      this.#stoppers.push(() => mixed.stopProducers());
      this.#consumerStoppers.push(() => mixed.stopReaders());
    }
    const groupOps = this.spec.groupOps ?? GROUP_OPS;
    if (this.spec.groups === undefined || this.spec.groups === false || !groupOps) return undefined;
    const consumers = new ConsumerGroupWorkload({
      cluster,
      router,
      groupOps,
      recorder: this.#recorder,
      random: this.random.fork("consumers"),
      topic: TOPIC,
      partitions: this.partitions,
      group: GROUP,
    });
    const probe = new OffsetProbe({
      cluster,
      groupOps,
      recorder: this.#recorder,
      random: this.random.fork("probe"),
      topic: TOPIC,
      partitions: this.partitions,
      groups: [GROUP],
    });
    consumers.start();
    probe.start();
    this.#consumerStoppers.push(() => probe.stop(), () => consumers.stop());
    return consumers;
  }

  async #runNemesis(
    parts: {
      cluster: Cluster;
      traces: TraceReader;
      leaders: Leaders;
      router: PartitionRouter;
      consumers: ConsumerGroupWorkload | undefined;
    },
  ): Promise<void> {
    const { cluster, traces, leaders, router, consumers } = parts;
    const deadline = Date.now() + this.spec.runMs * this.env.scale;
    let nextFault = 1;
    const ctx: NemesisContext = {
      cluster,
      network: this.#networkOf(cluster),
      random: this.random.fork("nemesis"),
      leaders,
      traces,
      topic: TOPIC,
      partitions: this.partitions,
      scale: this.env.scale,
      partitionGroups: Array.from({ length: this.partitions }, (_, p) => `${TOPIC}-${p}`),
      consumers,
      log: (line) => this.log(`nemesis: ${line}`),
      begin: (kind, parts = {}) => {
        const fault: FaultEvent = { id: nextFault++, t: Date.now(), kind, ...parts };
        this.faults.push(fault);
        this.log(`fault ${fault.id} ${kind} ${JSON.stringify(parts)}`);
        return fault;
      },
      end: (fault) => {
        fault.until ??= Date.now();
        this.log(`fault ${fault.id} ${fault.kind} healed`);
      },
      remainingMs: () => Math.max(0, deadline - Date.now()),
      sleep,
      finding: (message) => {
        this.findings.push(message);
        this.log(`finding: ${message}`);
      },
      figures: this.figures,
      waitForService: async (boundMs) => {
        const service = await this.#serveAll(router, "svc", Date.now(), boundMs);
        const times = service.map((entry) => entry.okAfterMs);
        return times.some((ms) => ms === null) ? null : Math.max(...(times as number[]));
      },
    };
    await this.spec.nemesis?.(ctx);
    await sleep(deadline - Date.now());
  }

  #network: Network | undefined;

  /**
   * The links faults go through: the link proxies, or inside a run namespace (CHAOS_NET=netns,
   * netns.ts) iptables rules for partitions and the proxies for the rest.
   */
  #networkOf(cluster: Cluster): Network {
    this.#network ??= process.env[NETNS_ENV] ? new NetfilterNetwork(cluster) : cluster.network;
    return this.#network;
  }

  /** Links pass, paused nodes resume, stopped nodes start (random order); open faults close. */
  async #healAll(cluster: Cluster): Promise<number> {
    this.#networkOf(cluster).healAll();
    for (const node of cluster.nodes) if (node.state === "paused") cluster.resume(node.id);
    for (const node of this.random.shuffle(cluster.nodes)) {
      if (node.state === "stopped") await cluster.start(node.id);
    }
    const healAt = Date.now();
    for (const fault of this.faults) fault.until ??= healAt;
    this.log(`healed: ${this.#networkOf(cluster).describe()}, all nodes running`);
    return healAt;
  }

  async #stopProducers(): Promise<void> {
    const stoppers = this.#stoppers.splice(0);
    for (const stop of stoppers) await stop();
  }

  async #stopAll(): Promise<void> {
    await this.#stopProducers();
    const stoppers = this.#consumerStoppers.splice(0);
    for (const stop of stoppers) await stop();
  }

  /**
   * Waits until every node reports the same log end and commit for every partition group, from
   * traces (append/truncate/commit) or, without traces, from `cluster status`. Returns the ms
   * since `healAt`, null when the bound passed, undefined when nothing could tell.
   */
  async #waitConverged(
    cluster: Cluster,
    traces: TraceReader,
    healAt: number,
  ): Promise<number | null | undefined> {
    const deadline = Date.now() + CONVERGENCE_BOUND_MS;
    const groups = Array.from({ length: this.partitions }, (_, p) => `${TOPIC}-${p}`);
    const ids = cluster.nodes.map((node) => node.id);
    while (Date.now() < deadline) {
      traces.poll();
      let verdict = convergedFromTraces(traces.events, groups, ids);
      if (verdict === undefined) verdict = await this.#convergedFromStatus(cluster, groups);
      if (verdict === undefined) {
        this.log("convergence: no traces and no cluster status; waiting 2 s instead");
        await sleep(2000);
        return undefined;
      }
      if (verdict) return Date.now() - healAt;
      await sleep(250);
    }
    this.log("convergence: replicas still differ at the bound");
    return null;
  }

  async #convergedFromStatus(
    cluster: Cluster,
    groups: readonly string[],
  ): Promise<boolean | undefined> {
    const views = await Promise.all(cluster.nodes.map((node) => clusterStatus(cluster, node.id)));
    if (views.some((view) => view === undefined)) return undefined;
    return groups.every((group) => {
      const entries = views.map((view) => view!.find((entry) => entry.group === group));
      const ends = new Set(entries.map((entry) => `${entry?.logEnd}/${entry?.commit}`));
      return ends.size === 1 && entries[0]?.logEnd === entries[0]?.commit;
    });
  }

  /** Drains each partition through its leader, else through any node that answers. */
  async #drainAll(cluster: Cluster, leaders: Leaders): Promise<LogView[]> {
    const known = await leaders.partitionLeaders();
    const out: LogView[] = [];
    for (let partition = 0; partition < this.partitions; partition++) {
      const first = known.get(partition);
      const order = [
        ...(first === undefined ? [] : [first]),
        ...cluster.running().filter((id) => id !== first),
      ];
      for (const node of order) {
        const client = new MetaqClient({
          brokers: [cluster.address(node)],
          requestTimeoutMs: 5000,
          reconnectAttemptsMax: 2,
        });
        try {
          out.push(
            await drainPartition(client, {
              topic: TOPIC,
              partition,
              node,
              deadlineMs: performance.now() + DRAIN_MS_MAX,
            }),
          );
          this.log(
            `drained ${TOPIC}-${partition} through node ${node}: ${
              out[out.length - 1].records.length
            } records`,
          );
          break;
        } catch (error) {
          this.log(
            `drain of ${TOPIC}-${partition} through node ${node} failed: ${
              (error as Error).message
            }`,
          );
        } finally {
          client.close();
        }
      }
    }
    return out;
  }

  async #catchUpConsumers(
    consumers: ConsumerGroupWorkload,
    drains: readonly LogView[],
  ): Promise<void> {
    const ends = new Map(drains.map((view) => [view.partition, view.end]));
    const reached = await consumers.catchUp(ends, performance.now() + 30_000);
    this.log(`consumers ${reached ? "caught up with" : "did not reach"} the final log ends`);
  }

  async #catchUpReaders(mixed: MixedWorkload, drains: readonly LogView[]): Promise<void> {
    const ends = new Map(drains.map((view) => [view.partition, view.end]));
    const reached = await mixed.catchUp(ends, performance.now() + 30_000);
    this.log(`readers ${reached ? "caught up with" : "did not reach"} the final log ends`);
  }

  /** Every node's segment files for every partition (nodes stopped). */
  #dumpAll(cluster: Cluster): LogView[] {
    const everyNode = (this.spec.cluster?.replicas ?? cluster.nodes.length) >= cluster.nodes.length;
    const out: LogView[] = [];
    for (const node of cluster.nodes) {
      for (let partition = 0; partition < this.partitions; partition++) {
        const dir = path.join(node.dataDir, `${TOPIC}-${partition}`);
        if (!everyNode && !fs.existsSync(dir)) continue;
        out.push(dumpReplica({ dataDir: node.dataDir, topic: TOPIC, partition, node: node.id }));
      }
    }
    return out;
  }

  #measurements(
    cluster: Cluster,
    recovery: Measurements["recovery"],
    convergenceMs: number | null | undefined,
  ): Measurements {
    return {
      recovery,
      convergenceMs,
      convergenceBoundMs: CONVERGENCE_BOUND_MS,
      exits: cluster.exits.map((exit) => ({ ...exit })),
      assertionLines: cluster.assertionLines(),
      rss: cluster.nodes.map((node) => ({ node: node.id, maxBytes: node.maxRssBytes })),
      rssCapBytes: RSS_CAP_BYTES,
      repairBoundMs: this.spec.repairBoundMs ?? REPAIR_BOUND_MS,
      endT: Date.now(),
    };
  }
}

/**
 * From traces: per node and group, the log end (last append's end, or a later truncation) and
 * the last commit. Converged when all nodes agree and commit = end. Undefined without traces.
 */
export function convergedFromTraces(
  events: readonly TraceEvent[],
  groups: readonly string[],
  nodes: readonly number[],
): boolean | undefined {
  const state = new Map<string, { end: number; commit: number }>();
  let seen = false;
  for (const event of events) {
    const key = `${event.node}/${event.group}`;
    const current = state.get(key) ?? { end: 0, commit: 0 };
    if (event.event === "append") current.end = event.to;
    else if (event.event === "truncate") current.end = event.to;
    else if (event.event === "commit") current.commit = event.offset;
    else continue;
    seen = true;
    state.set(key, current);
  }
  if (!seen) return undefined;
  return groups.every((group) => {
    const views = nodes.map((node) => state.get(`${node}/${group}`) ?? { end: 0, commit: 0 });
    return views.every((view) => view.end === views[0].end && view.commit === views[0].end);
  });
}

interface ReportParts {
  readonly spec: ScenarioSpec;
  readonly env: ChaosEnv;
  readonly runDir: string;
  readonly started: number;
  readonly finished: FinishedRun | undefined;
  readonly crash: unknown;
  readonly watchdogFired: boolean;
  readonly findings: readonly string[];
  readonly figures: Record<string, unknown>;
  readonly log: (line: string) => void;
}

/** Writes the JSON result, appends to the history file, keeps the run dir on failure. */
function report(parts: ReportParts): ScenarioOutcome {
  const { spec, env, finished } = parts;
  const findings = [...parts.findings];
  if (parts.crash) findings.push(`harness error: ${(parts.crash as Error).message ?? parts.crash}`);
  if (parts.watchdogFired) {
    findings.push("watchdog fired: the test overran its budget (or the tier's)");
  }
  const result = finished?.result ?? emptyResult();
  const thresholds = finished ? computeThresholds(finished) : [];
  if (env.enforceThresholds) {
    for (const threshold of thresholds) {
      if (!threshold.ok) {
        findings.push(`threshold ${threshold.name}: ${threshold.value} > ${threshold.limit}`);
      }
    }
  }
  const valid = finished !== undefined && result.valid && findings.length === 0;
  const durationMs = Date.now() - parts.started;
  const summary = summaryLine({ spec, env, valid, result, durationMs, findings });
  fs.mkdirSync(OUTPUT_DIR, { recursive: true });
  const resultFile = path.join(OUTPUT_DIR, `${spec.id}-${env.seed}.json`);
  const json = {
    test: spec.id,
    title: spec.title,
    seed: env.seed,
    scale: env.scale,
    tier: env.tier,
    config: {
      cluster: spec.cluster ?? {},
      workload: spec.workload ?? {},
      groups: spec.groups ?? false,
      mixed: spec.mixed ?? false,
    },
    durationMs,
    valid,
    failed: result.failed,
    reportOnly: result.reportOnly,
    counts: result.counts,
    anomalies: result.anomalies,
    known: result.known,
    knownViolations: result.knownViolations,
    findings,
    thresholds,
    violations: result.violations,
    figures: result.figures,
    scenarioFigures: parts.figures,
    replay:
      `CHAOS_SEED=${env.seed} CHAOS_SCALE=${env.scale} CHAOS_TIER=${env.tier} bun test tests/chaos/ -t '${spec.id} '`,
  };
  fs.writeFileSync(resultFile, `${JSON.stringify(json, null, 2)}\n`);
  fs.appendFileSync(
    path.join(OUTPUT_DIR, "history.jsonl"),
    `${
      JSON.stringify({
        at: new Date().toISOString(),
        test: spec.id,
        seed: env.seed,
        scale: env.scale,
        valid,
        anomalies: result.anomalies,
        known: result.known,
        figures: result.figures,
      })
    }\n`,
  );
  parts.log(summary);
  let keptRunDir: string | undefined;
  if ((!valid && env.keepFailedRuns !== false) || env.keepRuns) {
    keptRunDir = path.join(OUTPUT_DIR, "runs", `${spec.id}-${env.seed}-${parts.started}`);
    fs.mkdirSync(path.dirname(keptRunDir), { recursive: true });
    fs.cpSync(parts.runDir, keptRunDir, { recursive: true });
  }
  fs.rmSync(parts.runDir, { recursive: true, force: true });
  return {
    id: spec.id,
    seed: env.seed,
    valid,
    result,
    findings,
    thresholds,
    figures: parts.figures,
    summary,
    resultFile,
    keptRunDir,
  };
}

/** Plan section 4 timing thresholds (report-only unless CHAOS_ENFORCE_THRESHOLDS=1). */
function computeThresholds(finished: FinishedRun): Threshold[] {
  const figures = finished.result.figures;
  const recoveries = finished.input.measurements.recovery.map((entry) =>
    entry.okAfterMs ?? Infinity
  );
  const service = recoveries.length === 0 ? null : Math.max(...recoveries);
  const out: Threshold[] = [];
  if (figures.failoverMs.count > 0) {
    out.push({
      name: "failover p99 ms",
      value: figures.failoverMs.p99,
      limit: 4000,
      ok: figures.failoverMs.p99! <= 4000,
    });
  }
  out.push({
    name: "service after heal ms",
    value: service === Infinity ? null : service,
    limit: 10_000,
    ok: service !== null && service <= 10_000,
  });
  if (figures.convergenceMs !== null) {
    out.push({
      name: "convergence ms",
      value: figures.convergenceMs,
      limit: 15_000,
      ok: figures.convergenceMs <= 15_000,
    });
  }
  return out;
}

export function summaryLine(
  parts: {
    spec: ScenarioSpec;
    env: ChaosEnv;
    valid: boolean;
    result: CheckResult;
    durationMs: number;
    findings: readonly string[];
  },
): string {
  const f = parts.result.figures;
  const elections = Object.values(f.elections).reduce((sum, count) => sum + count, 0);
  const failed = parts.result.failed.length > 0 ? ` failed=${parts.result.failed.join(",")}` : "";
  const findings = parts.findings.length > 0 ? ` findings=${parts.findings.length}` : "";
  const named = Object.entries(parts.result.anomalies).map(([name, count]) => `${name}:${count}`);
  const known = Object.entries(parts.result.known).map(([file, count]) =>
    `${path.basename(file).replace(/\.test\.ts$/, "")}:${count}`
  );
  const tx = f.transactions.attempts === 0
    ? ""
    : ` txns=${f.transactions.attempts}(ok ${f.transactions.committed}, fail ${f.transactions.failed}, info ${
      f.transactions.indeterminate + f.transactions.decided
    })`;
  return `${parts.spec.id} ${
    parts.valid ? "PASS" : "FAIL"
  } seed=${parts.env.seed} scale=${parts.env.scale} ${
    (parts.durationMs / 1000).toFixed(1)
  }s attempts=${f.attempts} acked=${f.acked} failed=${f.failed} indeterminate=${f.indeterminate} recovered=${f.recovered} lost=${f.lost.total}(${f.lost.prefix}/${f.lost.middle}/${f.lost.postfix}) dup=${f.duplicates} inconsistent=${f.inconsistentOffsets} readsThenLost=${f.readsThenLost} failover=${
    f.failoverMs.p50 ?? "-"
  }/${f.failoverMs.p99 ?? "-"}/${
    f.failoverMs.max ?? "-"
  }ms gap=${f.unavailabilityMs.max}ms elections=${elections}${tx} anomalies=${
    named.length === 0 ? "none" : named.join(",")
  }${known.length === 0 ? "" : ` known=${known.join(",")}`}${failed}${findings}`;
}

function emptyResult(): CheckResult {
  return checkHistory({
    history: [],
    drains: [],
    replicas: [],
    traces: [],
    faults: [],
    measurements: {
      recovery: [],
      exits: [],
      assertionLines: [],
      rss: [],
      rssCapBytes: RSS_CAP_BYTES,
      repairBoundMs: REPAIR_BOUND_MS,
      endT: 0,
    },
  });
}

/**
 * @module `chaosTest(spec)`: registers one scenario as a bun:test test with its budget as the
 * timeout, or as a skipped test with the reason printed (never reported as passed). The verdict
 * is the checker's: the test fails with the violated invariants and findings listed.
 */
import { expect, test } from "bun:test";
import { spawn } from "node:child_process";
import process from "node:process";
import { createNamespace, deleteNamespace, NETNS_ENV, netnsSkipReason } from "./netns.ts";
import {
  budgetMs,
  type ChaosEnv,
  chaosEnv,
  expectedMs,
  runScenario,
  type ScenarioSpec,
  skipReason,
  tierDeadline,
} from "./scenario.ts";

/** Extra time bun:test gives a scenario beyond its budget, so the watchdog and teardown finish. */
const TEARDOWN_GRACE_MS = 30_000;

/**
 * When the scenarios registered so far should be done. bun loads a test file after the previous
 * one ran, so at registration `Date.now()` already includes everything before this file.
 */
let plannedEndMs = 0;

/** Why the tier's budget has no room for `spec` (CHAOS_TIER_BUDGET_S), or undefined. */
function budgetSpent(spec: ScenarioSpec, env: ChaosEnv): string | undefined {
  const deadline = tierDeadline(env);
  if (deadline === undefined) return undefined;
  const end = Math.max(Date.now(), plannedEndMs) + expectedMs(spec, env);
  if (end > deadline) {
    return `the tier's budget (CHAOS_TIER_BUDGET_S=${env.tierBudgetMs! / 1000}) has ${
      Math.max(0, Math.round((deadline - Math.max(Date.now(), plannedEndMs)) / 1000))
    } s left, this scenario usually takes ${Math.round(expectedMs(spec, env) / 1000)} s`;
  }
  plannedEndMs = end;
  return undefined;
}

export function chaosTest(spec: ScenarioSpec): void {
  const env = chaosEnv();
  const name = `${spec.id} ${spec.title}`;
  const outside = networkMode() === "netns" && !process.env[NETNS_ENV];
  const reason = skipReason(spec, env) ?? (outside ? netnsSkipReason() : undefined) ??
    budgetSpent(spec, env);
  if (reason !== undefined) {
    console.log(`[chaos] ${name}: skipped: ${reason}`);
    test.skip(`${name} (skipped: ${reason})`, () => {});
    return;
  }
  if (outside) {
    const file = callerTestFile();
    test(name, () => runInNamespace(file, name), budgetMs(spec, env) + TEARDOWN_GRACE_MS);
    return;
  }
  test(name, async () => {
    const outcome = await runScenario(spec, env);
    console.log(`[chaos] ${outcome.summary}`);
    console.log(`[chaos] result: ${outcome.resultFile}`);
    if (outcome.keptRunDir) console.log(`[chaos] run kept in ${outcome.keptRunDir}`);
    expect({
      failed: outcome.result.failed,
      findings: outcome.findings,
      violations: outcome.valid
        ? []
        : outcome.result.violations.slice(0, 20).map((v) => `${v.invariant} ${v.message}`),
    }).toEqual({ failed: [], findings: [], violations: [] });
  }, budgetMs(spec, env) + TEARDOWN_GRACE_MS);
}

/** CHAOS_NET: `proxy` (default: the link proxies) or `netns` (netns.ts). */
function networkMode(): "proxy" | "netns" {
  const mode = process.env.CHAOS_NET ?? "proxy";
  if (mode !== "proxy" && mode !== "netns") {
    throw new Error(`Cannot use CHAOS_NET=${mode}: expected proxy or netns`);
  }
  return mode;
}

/** The scenario file that called chaosTest, from the stack. */
function callerTestFile(): string {
  const stack = new Error().stack ?? "";
  const found = /(\/[^\s():]+\.test\.ts)/.exec(stack)?.[1] ??
    process.argv.find((arg) => arg.endsWith(".test.ts"));
  if (!found) throw new Error("Cannot tell which scenario file to run in a namespace");
  return found;
}

let namespaces = 0;

/**
 * Runs the scenario again in a network namespace of its own (`bun test` of its file, this test
 * only, CHAOS_NETNS set), its output shown here; the namespace is deleted whatever happens.
 */
async function runInNamespace(file: string, name: string): Promise<void> {
  const namespace = `metaq-chaos-${process.pid}-${++namespaces}`;
  createNamespace(namespace);
  try {
    const pattern = `^${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`;
    const child = spawn(
      "ip",
      [
        "netns",
        "exec",
        namespace,
        process.execPath,
        "test",
        "--timeout",
        "1800000",
        file,
        "-t",
        pattern,
      ],
      { stdio: "inherit", env: { ...process.env, [NETNS_ENV]: namespace } },
    );
    const code = await new Promise<number | null>((resolve) => {
      child.once("exit", (exitCode) => resolve(exitCode));
      child.once("error", () => resolve(null));
    });
    expect(code, `the scenario in namespace ${namespace} failed (its report is above)`).toBe(0);
  } finally {
    deleteNamespace(namespace);
  }
}

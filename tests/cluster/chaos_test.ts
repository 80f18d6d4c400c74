/**
 * @module `chaosTest(spec)`: registers one scenario as a bun:test test with its budget as the
 * timeout, or as a skipped test with the reason printed (never reported as passed). The verdict
 * is the checker's: the test fails with the violated invariants and findings listed.
 */
import { expect, test } from "bun:test";
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
  const reason = skipReason(spec, env) ?? budgetSpent(spec, env);
  if (reason !== undefined) {
    console.log(`[chaos] ${name}: skipped: ${reason}`);
    test.skip(`${name} (skipped: ${reason})`, () => {});
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

/**
 * @module `chaosTest(spec)`: registers one scenario as a bun:test test with its budget as the
 * timeout, or as a skipped test with the reason printed (never reported as passed). The verdict
 * is the checker's: the test fails with the violated invariants and findings listed.
 */
import { expect, test } from "bun:test";
import { budgetMs, chaosEnv, runScenario, type ScenarioSpec, skipReason } from "./scenario.ts";

/** Extra time bun:test gives a scenario beyond its budget, so the watchdog and teardown finish. */
const TEARDOWN_GRACE_MS = 30_000;

export function chaosTest(spec: ScenarioSpec): void {
  const env = chaosEnv();
  const name = `${spec.id} ${spec.title}`;
  const reason = skipReason(spec, env);
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

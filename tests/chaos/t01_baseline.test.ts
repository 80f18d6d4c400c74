/**
 * T01 baseline: a healthy 3-node cluster under W1, W2 and W3, and W5 (keyed and transactional
 * producers, broadcast and plain readers, each through its own node).
 * Must hold: I1-I15, no leader change after the initial elections, no indeterminate produce or
 * transaction.
 */
import { chaosTest } from "../cluster/chaos_test.ts";
import { electionsBetween } from "../cluster/trace_figures.ts";

const groupOf = (election: string) => election.slice(0, election.indexOf(" term "));

chaosTest({
  id: "T01",
  title: "baseline, no faults",
  runMs: 20_000,
  groups: "optional",
  mixed: true,
  extraChecks: ({ input, result, readyAt, stoppingAt }) => {
    const findings: string[] = [];
    // Leader changes: elections after the start in groups that already had a leader by then
    // (groups created later, such as offsets partitions, elect their first leader late).
    const led = new Set(electionsBetween(input.traces, -Infinity, readyAt).map(groupOf));
    const late = electionsBetween(input.traces, readyAt, stoppingAt).filter((key) =>
      led.has(groupOf(key))
    );
    if (late.length > 0) {
      findings.push(`leader changes after the initial elections: ${late.join(", ")}`);
    }
    if (result.figures.indeterminate > 0) {
      findings.push(`${result.figures.indeterminate} indeterminate produce(s) without any fault`);
    }
    const { indeterminate, decided } = result.figures.transactions;
    if (indeterminate + decided > 0) {
      findings.push(
        `${indeterminate + decided} transaction(s) of unknown outcome without any fault`,
      );
    }
    return findings;
  },
  extraFigures: ({ result }) => ({
    throughputPerSecond: result.figures.throughputPerSecond,
    produceLatencyMs: result.figures.latencyMs.quiet,
  }),
});

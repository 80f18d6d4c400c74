/**
 * @module Runs the checker again on a kept run directory (`tests/output/chaos/runs/<id>-...`), from
 * the `check-input.json` the scenario wrote there, and prints the verdict, the anomalies and the
 * violations. For looking at a failure again after changing the checker; it starts no broker.
 *
 * ```sh
 * bun tests/cluster/recheck.ts tests/output/chaos/runs/T08-2419108797-1796540352563 [--strict]
 * ```
 *
 * Known anomalies (known_anomalies.ts) are counted apart, as in a run, unless `--strict`.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import process from "node:process";
import { checkHistory, type CheckOptions } from "./checker.ts";
import type { CheckInput } from "./history.ts";
import { KNOWN_ANOMALIES } from "./known_anomalies.ts";
import { CHECK_INPUT_FILE } from "./scenario.ts";

if (import.meta.main) {
  const dir = process.argv[2];
  if (!dir) {
    console.error("usage: bun tests/cluster/recheck.ts <run directory>");
    process.exit(2);
  }
  const { input, options } = JSON.parse(
    fs.readFileSync(path.join(dir, CHECK_INPUT_FILE), "utf8"),
  ) as { input: CheckInput; options: CheckOptions };
  const strict = process.argv.includes("--strict");
  const result = checkHistory(input, { ...options, known: strict ? [] : KNOWN_ANOMALIES });
  console.log(`valid=${result.valid} failed=${result.failed.join(",") || "none"}`);
  console.log(
    `anomalies=${JSON.stringify(result.anomalies)} known=${JSON.stringify(result.known)}`,
  );
  for (const violation of [...result.violations, ...result.knownViolations]) {
    console.log(`${violation.invariant} ${violation.anomaly ?? "-"} ${violation.message}`);
  }
  process.exit(result.valid ? 0 : 1);
}

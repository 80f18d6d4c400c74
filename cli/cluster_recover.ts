/**
 * @module `metaq cluster force-recover`: shows what a recovery would do and may lose, asks for
 * confirmation (unless --yes), then has the node apply exactly the plan that was shown (the node
 * refuses when the copies changed in between) and reports which groups serve again.
 */
import * as readline from "node:readline";
import process from "node:process";
import type { MetaqClient } from "../lib/client/client.ts";
import type { ForceRecoverReport, RecoveryOutcome } from "../lib/cluster/force_recover.ts";
import type { GroupPlan } from "../lib/cluster/recovery_plan.ts";
import { CliError, integerFlag } from "./common.ts";

export interface RecoverArgs {
  readonly partition?: string;
  readonly all: boolean;
  readonly from?: number;
  readonly force: boolean;
  readonly yes: boolean;
  readonly json: boolean;
}

type Report = ForceRecoverReport & { readonly fsync: string };

/** The command's flags, checked before anything is asked of a node. */
export function recoverArgs(values: Record<string, string | boolean | undefined>): RecoverArgs {
  const partition = typeof values.partition === "string" ? values.partition : undefined;
  const all = values.all === true;
  if ((partition === undefined) === !all) {
    throw new CliError("Cannot run cluster force-recover: give either --partition T-P or --all");
  }
  const fromText = typeof values["from-node"] === "string" ? values["from-node"] : undefined;
  return {
    ...(partition !== undefined ? { partition } : {}),
    all,
    from: integerFlag("from-node", fromText, { min: 1, max: 1023 }),
    force: values.force === true,
    yes: values.yes === true,
    json: values.format === "json",
  };
}

/** Runs the command; returns the exit code (0: every planned group serves again). */
export async function runForceRecover(client: MetaqClient, args: RecoverArgs): Promise<number> {
  const query = new URLSearchParams();
  if (args.partition !== undefined) query.set("partition", args.partition);
  else query.set("all", "1");
  if (args.from !== undefined) query.set("from", String(args.from));
  if (args.force) query.set("force", "1");
  const plan: Report = JSON.parse(await client.extension("cluster", ["force-recover", `${query}`]));
  if (args.json && !args.yes) {
    console.log(JSON.stringify(plan));
    return plan.plan.refused.length > 0 && args.partition !== undefined ? 1 : 0;
  }
  if (!args.json) printPlan(plan);
  if (plan.plan.groups.length === 0) {
    if (args.json) console.log(JSON.stringify(plan));
    else if (args.all) console.log("Nothing to recover: no group is stuck.");
    return args.all ? 0 : 1;
  }
  const count = plan.plan.groups.length;
  if (!args.yes && !(await confirmed(`Recover ${count} group(s) as shown? Type 'yes': `))) {
    console.log("Nothing changed.");
    return 1;
  }
  query.set("apply", plan.plan.fingerprint);
  if (!args.json) console.log(`Recovering ${count} group(s)...`);
  const done: Report = JSON.parse(await client.extension("cluster", ["force-recover", `${query}`]));
  if (args.json) console.log(JSON.stringify(done));
  else printOutcomes(done);
  return done.applied && (done.outcomes ?? []).every((outcome) => outcome.led) ? 0 : 1;
}

function printPlan(report: Report): void {
  const { plan } = report;
  let lostBytes = 0;
  for (const group of plan.groups) {
    const kept = group.kept;
    const why = group.chosenBy === "operator" ? "chosen by --from-node" : group.chosenBy;
    console.log(
      `${group.group}: recover from node ${group.from} (${why}): log [${kept.start}, ${kept.end}), ` +
        `last epoch ${kept.last.epoch}${group.stuck ? "" : " (not stuck: --force)"}`,
    );
    for (const copy of group.copies) {
      lostBytes += copy.cut ? copy.cut.to - copy.cut.from : 0;
      console.log(`  ${copyLine(group, copy)}`);
    }
    for (const absent of group.absent) {
      console.log(
        `  node ${absent.node}: not compared (${absent.why}); what only it holds is cut when it ` +
          `rejoins`,
      );
    }
  }
  for (const refusal of plan.refused) console.log(`not recovered: ${refusal.reason}`);
  if (plan.groups.length === 0) return;
  console.log(
    `May be lost: ${lostBytes} byte(s) held only by other copies (marked LOST above), and every ` +
      `acknowledged put that no copy had synced to disk. ${intervalBound(report.fsync)}`,
  );
  console.log(
    "Offsets past a group's recovered end are used again by new messages; a consumer that read " +
      "past it reads other messages there.",
  );
}

function copyLine(group: GroupPlan, copy: GroupPlan["copies"][number]): string {
  const parts: string[] = [];
  if (copy.cut) {
    parts.push(
      `cut [${copy.cut.from}, ${copy.cut.to}) (${
        copy.cut.to - copy.cut.from
      } bytes only it holds: LOST)`,
    );
  }
  if (copy.fill) {
    parts.push(`copies [${copy.fill.from}, ${copy.fill.to}) from node ${group.from}`);
  }
  if (parts.length === 0) parts.push(`already equal to node ${group.from}'s copy`);
  return `node ${copy.node}: ${parts.join(", then ")}`;
}

/** The documented loss bound of interval mode, in one sentence. */
function intervalBound(fsync: string): string {
  const match = /^interval:(\d+)$/.exec(fsync);
  if (!match) {
    return "With fsync=always every acknowledged put was synced on a majority and the most " +
      "complete copy holds it.";
  }
  return `With fsync=${fsync} these are at most the puts acknowledged in the last ${
    match[1]
  } ms plus two fsyncs before the power cut, when the most complete copy is used ` +
    `(docs/replication.md, "Interval mode and whole-cluster power loss").`;
}

function printOutcomes(report: Report): void {
  if (!report.applied) {
    console.log(`Nothing changed: ${report.error ?? "not applied"}`);
    return;
  }
  const outcomes: readonly RecoveryOutcome[] = report.outcomes ?? [];
  for (const outcome of outcomes) {
    const seconds = (outcome.elapsedMs / 1000).toFixed(1);
    const state = outcome.led
      ? `serves again: node ${outcome.from} leads, committed up to ${outcome.commit} (${seconds} s)`
      : `NOT LED YET after ${seconds} s: see 'metaq cluster status'`;
    console.log(`${outcome.group}: ${state}`);
    if (!outcome.base.ok) console.log(`  node ${outcome.from}: ${outcome.base.reason}`);
    for (const follower of outcome.followers) {
      console.log(
        `  node ${follower.node}: ${
          follower.ok ? `follows node ${outcome.from}` : `not changed: ${follower.reason}`
        }`,
      );
    }
  }
  const led = outcomes.filter((outcome) => outcome.led).length;
  console.log(`force-recover: ${led} of ${outcomes.length} group(s) serve again`);
}

/** Reads one line from stdin; true only for "yes". */
async function confirmed(prompt: string): Promise<boolean> {
  const lines = readline.createInterface({ input: process.stdin, output: process.stdout });
  try {
    const answer = await new Promise<string>((resolve) => {
      lines.question(prompt, resolve);
      lines.once("close", () => resolve(""));
    });
    return answer.trim().toLowerCase() === "yes";
  } finally {
    lines.close();
  }
}

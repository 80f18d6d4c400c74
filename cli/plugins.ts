/**
 * @module The optional parts `metaq serve` adds to a broker (transactions, groups, HTTP,
 * cluster), chosen from the configuration. One place, so serve.ts stays about flags.
 */
import type { Config } from "../lib/config/config.ts";
import { filterProblems, groupsPlugin } from "../lib/server/group_commands.ts";
import type { BrokerPlugin } from "../lib/server/start_broker.ts";
import { CliError } from "./common.ts";

export function serverPlugins(config: Config, flags: Record<string, unknown>): BrokerPlugin[] {
  // A group filter that does not parse would let a group see messages meant to be hidden.
  const problems = filterProblems(config);
  if (problems.length > 0) throw new CliError(problems[0]);
  return [groupsPlugin({ repair: flags.repair === true })];
}

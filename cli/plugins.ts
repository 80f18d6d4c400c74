/**
 * @module The optional parts `metaq serve` adds to a broker (transactions, groups, HTTP,
 * cluster), chosen from the configuration. One place, so serve.ts stays about flags.
 */
import type { Config } from "../lib/config/config.ts";
import { httpPlugin } from "../lib/http/plugin.ts";
import type { LogRing } from "../lib/log_ring.ts";
import type { BrokerPlugin } from "../lib/server/start_broker.ts";

/** What serve.ts hands over besides the config and flags. */
export interface PluginInputs {
  /** Recent warnings and errors, shown by the dashboard. */
  readonly recentLog?: LogRing;
}

export function serverPlugins(
  config: Config,
  _flags: Record<string, unknown>,
  inputs: PluginInputs = {},
): BrokerPlugin[] {
  const plugins: BrokerPlugin[] = [];
  if (config.system.httpEnabled) plugins.push(httpPlugin({ recentLog: inputs.recentLog }));
  return plugins;
}

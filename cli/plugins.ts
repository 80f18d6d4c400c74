/**
 * @module The optional parts `metaq serve` adds to a broker (transactions, groups, HTTP,
 * cluster), chosen from the configuration. One place, so serve.ts stays about flags.
 */
import process from "node:process";
import { clusterSettings } from "../lib/cluster/cluster_config.ts";
import { clusterPlugin } from "../lib/cluster/plugin.ts";
import { clusterView } from "../lib/cluster/cluster_view.ts";
import { type Config, ConfigError } from "../lib/config/config.ts";
import type { GroupService } from "../lib/broker/groups/group_service.ts";
import { groupsView } from "../lib/broker/groups/groups_view.ts";
import { httpPlugin } from "../lib/http/plugin.ts";
import type { LogRing } from "../lib/log_ring.ts";
import { filterProblems, groupsPlugin } from "../lib/server/group_commands.ts";
import type { BrokerPlugin } from "../lib/server/start_broker.ts";
import { transactionsPlugin } from "../lib/broker/tx/plugin.ts";
import { CliError } from "./common.ts";

/**
 * TEST ONLY: when set to a byte count N, the broker appends only the first N bytes of the
 * next transaction commit's batches and then kills itself with SIGKILL, so tests can crash it
 * in the middle of a commit's append. Never set it in production.
 */
export const CRASH_AFTER_COMMIT_BYTES_ENV = "METAQ_TEST_CRASH_AFTER_COMMIT_BYTES";

/** What serve.ts hands over besides the config and flags. */
export interface PluginInputs {
  /** Recent warnings and errors, shown by the dashboard. */
  readonly recentLog?: LogRing;
}

export function serverPlugins(
  config: Config,
  flags: Record<string, unknown>,
  inputs: PluginInputs = {},
): BrokerPlugin[] {
  // A group filter that does not parse would let a group see messages meant to be hidden.
  const problems = filterProblems(config);
  if (problems.length > 0) throw new CliError(problems[0]);
  const settings = clusterSettingsOrError(config);
  if (settings) checkPeerSecurity(config);
  const plugins: BrokerPlugin[] = [transactionsPlugin(transactionOptions())];
  let groupService: () => GroupService | undefined;
  let cluster: ReturnType<typeof clusterPlugin> | undefined;
  if (settings) {
    // In a cluster the `__meta` leader coordinates groups and keeps offsets in Raft.
    cluster = clusterPlugin(settings);
    plugins.push(cluster);
    groupService = () => cluster?.groups?.service;
  } else {
    const groups = groupsPlugin({ repair: flags.repair === true });
    plugins.unshift(groups);
    groupService = () => groups.service;
  }
  if (config.system.httpEnabled) {
    plugins.push(
      httpPlugin({
        recentLog: inputs.recentLog,
        views: () => ({
          groups: groupsView(groupService),
          cluster: cluster ? clusterView(() => cluster?.node) : undefined,
        }),
      }),
    );
  }
  return plugins;
}

/**
 * A cluster whose clients must authenticate (or that encrypts its ports) must also keep strangers
 * off its peer port, so it needs a secret every node proves (docs/security.md).
 */
function checkPeerSecurity(config: Config): void {
  const system = config.system;
  const secured = config.users.length > 0 || system.tlsCertFile !== "";
  if (secured && system.clusterSecret === "" && system.clusterSecretFile === "") {
    throw new CliError(
      "Cannot run a cluster with users or TLS but no clusterSecret: set clusterSecret or " +
        "clusterSecretFile (the same on every node) so strangers cannot join the peer port",
    );
  }
}

function clusterSettingsOrError(config: Config) {
  try {
    return clusterSettings(config);
  } catch (error) {
    if (error instanceof ConfigError) throw new CliError(error.message);
    throw error;
  }
}

function transactionOptions() {
  const text = process.env[CRASH_AFTER_COMMIT_BYTES_ENV];
  if (text === undefined || text === "") return {};
  const bytes = Number(text);
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw new CliError(`Cannot use ${CRASH_AFTER_COMMIT_BYTES_ENV}=${text}: expected a byte count`);
  }
  return {
    crashAfterCommitBytes: bytes,
    crash: () => process.kill(process.pid, "SIGKILL"),
  };
}

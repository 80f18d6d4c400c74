/** @module Turns `--config FILE` and the flags that override it into a Config. */
import * as fs from "node:fs";
import { buildConfig, type Config, ConfigError } from "../lib/config/config.ts";
import { CliError } from "./common.ts";

/** Flags that map onto `[system]` keys; shared by serve and verify. */
export interface ConfigFlags {
  readonly config?: string;
  readonly host?: string;
  readonly port?: string;
  readonly data?: string;
  readonly partitions?: string;
  readonly "broker-id"?: string;
  readonly "http-port"?: string;
  readonly "no-http"?: boolean;
  readonly "node-id"?: string;
  readonly "peer-port"?: string;
  readonly peers?: string;
  readonly join?: string;
  readonly replicas?: string;
  readonly ack?: string;
  readonly fsync?: string;
  readonly "raft-heartbeat-ms"?: string;
  readonly "raft-election-ms"?: string;
  readonly "raft-check-quorum-ms"?: string;
  readonly "tls-cert"?: string;
  readonly "tls-key"?: string;
  readonly "tls-ca"?: string;
  readonly "cluster-secret-file"?: string;
}

/** Flags that set a `[system]` key, and that key. */
const FLAG_KEYS: readonly [keyof ConfigFlags, string][] = [
  ["host", "host"],
  ["port", "serverPort"],
  ["data", "dataPath"],
  ["partitions", "numPartitions"],
  ["broker-id", "brokerId"],
  ["http-port", "dashboardHttpPort"],
  ["node-id", "nodeId"],
  ["peer-port", "peerPort"],
  ["peers", "peers"],
  ["join", "join"],
  ["replicas", "replicas"],
  ["ack", "ack"],
  ["fsync", "fsync"],
  ["raft-heartbeat-ms", "raftHeartbeatMs"],
  ["raft-election-ms", "raftElectionMs"],
  ["raft-check-quorum-ms", "raftCheckQuorumMs"],
  ["tls-cert", "tlsCertFile"],
  ["tls-key", "tlsKeyFile"],
  ["tls-ca", "tlsCaFile"],
  ["cluster-secret-file", "clusterSecretFile"],
];

/** Reads --config (if given) and applies the flags over it. */
export function loadConfig(values: ConfigFlags): Config {
  const overrides: Record<string, string> = {};
  for (const [flag, key] of FLAG_KEYS) {
    const value = values[flag];
    if (typeof value === "string") overrides[key] = value;
  }
  if (values["no-http"]) overrides.httpEnabled = "false";
  clusterOverrides(values, overrides);
  let fileText: string | undefined;
  if (values.config) {
    try {
      fileText = fs.readFileSync(values.config, "utf8");
    } catch (error) {
      throw new CliError(`Cannot read config file ${values.config}: ${(error as Error).message}`);
    }
  }
  try {
    return buildConfig({ fileText, filePath: values.config, overrides });
  } catch (error) {
    if (error instanceof ConfigError) {
      const flagged = flagMessage(error.message, values);
      if (flagged) throw new CliError(flagged);
      throw new CliError(
        `${error.message}${values.config ? ` (in ${values.config} or the flags)` : ""}`,
      );
    }
    throw error;
  }
}

/**
 * Cluster flags imply some `[system]` values: message ids use the node id unless a broker id is
 * given; `--peer-port` is where this node listens, so it replaces this node's entry in `--peers`;
 * `--fsync interval:MS` is MetaQ's threshold flushing with that interval.
 */
function clusterOverrides(values: ConfigFlags, overrides: Record<string, string>): void {
  if (values["node-id"] !== undefined && values["broker-id"] === undefined) {
    overrides.brokerId = values["node-id"];
  }
  if (
    values.peers !== undefined && values["peer-port"] !== undefined &&
    values["node-id"] !== undefined
  ) {
    overrides.peers = values.peers.split(",").map((entry) => {
      const [id, address] = entry.trim().split("=");
      if (id !== values["node-id"] || address === undefined) return entry.trim();
      return `${id}=${address.slice(0, address.lastIndexOf(":"))}:${values["peer-port"]}`;
    }).join(",");
  }
  const interval = /^interval:(\d+)$/.exec(values.fsync ?? "");
  if (interval) {
    overrides.unflushThreshold = String(2 ** 31 - 1);
    overrides.unflushInterval = interval[1];
  }
}

/**
 * A config error about a key a flag set, told with the flag as the user typed it
 * (`Cannot use --partitions abc: ...`, not `Cannot use numPartitions: ...`).
 */
function flagMessage(message: string, values: ConfigFlags): string | undefined {
  for (const [flag, key] of FLAG_KEYS) {
    const value = values[flag];
    if (typeof value !== "string") continue;
    for (const prefix of [`Cannot use ${key}=${value}: `, `Cannot use ${key}: `]) {
      if (message.startsWith(prefix)) {
        return `Cannot use --${flag} ${value}: ${message.slice(prefix.length)}`;
      }
    }
  }
  return undefined;
}

/** @module `metaq serve`: runs a broker until SIGTERM or SIGINT, then shuts down cleanly. */
import * as fs from "node:fs";
import process from "node:process";
import { assemble } from "../lib/app/assemble.ts";
import { ConfigError, withZooKeeperFlags } from "../lib/config/config.ts";
import { uplinkWithHubs } from "../lib/config/uplink_config.ts";
import { LOG_RING_ENTRIES_MAX } from "../lib/limits.ts";
import type { Config } from "../lib/config/config.ts";
import { consoleLogger, type Logger, type LogLevel } from "../lib/log.ts";
import { LogRing, ringLogger } from "../lib/log_ring.ts";
import { TlsConfigError } from "../lib/security/tls.ts";
import { DataDirLockedError } from "../lib/store/message_store.ts";
import { CLI_VERSION, CliError, type CommandSpec, parseFlags } from "./common.ts";
import { loadConfig } from "./load_config.ts";

const USAGE = `Usage: metaq serve [options]

Runs a broker: MetaQ's text protocol on the client port, data in segment files.

Options:
  --config FILE        MetaQ server.ini (sections [system], [topic=...]); flags override it
  --host HOST          address to bind (default 127.0.0.1)
  --port PORT          client port (default 8123; 0 picks a free port)
  --data DIR           data directory (default ./data)
  --partitions N       default partitions per topic (default 1)
  --broker-id N        broker id 0..1023, part of every message id (default 0)
  --http-port PORT     HTTP API and dashboard port (default 8120; 0 picks a free port)
  --no-http            do not serve HTTP
  --fast-boot          check only the active segment at start-up (default: every segment)
  --repair             cut damaged partition logs at the damage instead of refusing them
  --ports-file FILE    write {"port":..,"httpPort":..} here once listening (for scripts)
  --log-level LEVEL    debug, info, warn or error (default info)

Cluster (Raft-lite replication; see docs/replication.md):
  --node-id N          this node's id (also its broker id unless --broker-id is given)
  --peer-port PORT     port for traffic between nodes
  --peers LIST         every voter as id=host:peerPort, comma-separated (this node included);
                       seeds a new cluster (its members then live in the cluster's metadata)
  --join HOST:PORT     join an existing cluster (empty --data): start, then run
                       'metaq cluster add --node-id N --address <this host:peer port>' on it
  --replicas R         copies of each partition: 1, 3 or 5 (default 3, at most the node count)
  --ack MODE           quorum (default: ack once a majority stored it) or leader
  --fsync MODE         always (default: fsync before counting an ack) or interval:MS
  --raft-heartbeat-ms, --raft-election-ms MIN-MAX, --raft-check-quorum-ms   Raft timing
  --cluster-secret-file FILE   secret every node proves on peer links (clusterSecretFile)

ZooKeeper (register as a MetaQ broker for MetaQ's clients; see docs/zookeeper.md):
  --zk-connect LIST    host:port[,host:port...][/chroot] (zk.zkConnect; off when unset)
  --zk-root PATH       root of MetaQ's nodes (zk.zkRoot, default /meta)
  --zk-session-timeout-ms MS   session timeout (zk.zkSessionTimeoutMs, default 30000)
  --zk-broker-id N     MetaQ broker id to register (default --broker-id; one value per cluster)

Edge uplink (see docs/uplink.md; more settings in the [uplink] section of --config):
  --uplink LIST        forward every topic to a hub broker or cluster, host:port[,host:port...]

Security (see docs/security.md; users are [user=NAME] sections of --config):
  --tls-cert FILE      PEM certificate: TLS on the client, HTTP and peer ports (tlsPorts)
  --tls-key FILE       its PEM private key
  --tls-ca FILE        PEM CA peer certificates must chain to (default: the certificate)

Examples:
  metaq serve
  metaq serve --port 9000 --data /var/lib/metaq --partitions 4
  metaq serve --config server.ini --broker-id 3
  metaq serve --node-id 1 --port 8123 --peer-port 9123 --data ./n1 \
    --peers 1=127.0.0.1:9123,2=127.0.0.1:9124,3=127.0.0.1:9125`;

const FLAGS = {
  config: { type: "string" },
  host: { type: "string" },
  port: { type: "string" },
  data: { type: "string" },
  partitions: { type: "string" },
  "broker-id": { type: "string" },
  "http-port": { type: "string" },
  "no-http": { type: "boolean" },
  "fast-boot": { type: "boolean" },
  repair: { type: "boolean" },
  "ports-file": { type: "string" },
  "log-level": { type: "string" },
  "node-id": { type: "string" },
  "peer-port": { type: "string" },
  peers: { type: "string" },
  join: { type: "string" },
  replicas: { type: "string" },
  ack: { type: "string" },
  fsync: { type: "string" },
  "raft-heartbeat-ms": { type: "string" },
  "raft-election-ms": { type: "string" },
  "raft-check-quorum-ms": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "tls-ca": { type: "string" },
  "cluster-secret-file": { type: "string" },
  "zk-connect": { type: "string" },
  "zk-root": { type: "string" },
  "zk-session-timeout-ms": { type: "string" },
  "zk-broker-id": { type: "string" },
  uplink: { type: "string" },
} as const;

/** Start-up failures an operator fixes (lib/http/http_part.ts, lib/zk/registrar.ts). */
const OPERATOR_ERRORS = new Set(["HttpPortInUseError", "BrokerIdTakenError"]);

export const serve: CommandSpec = {
  name: "serve",
  usage: USAGE,
  async run(args) {
    const { values } = parseFlags("serve", args, FLAGS);
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const level = (values["log-level"] ?? "info") as LogLevel;
    if (!["debug", "info", "warn", "error"].includes(level)) {
      throw new CliError(`Cannot use --log-level ${level}: expected debug, info, warn or error`);
    }
    const recentLog = new LogRing(LOG_RING_ENTRIES_MAX);
    const logger = ringLogger(consoleLogger(level), recentLog);
    const config = withUplinkFlag(zooKeeperConfig(loadConfig(values), values), values.uplink);
    checkPeerSecurity(config);
    let running;
    try {
      running = await assemble({
        config,
        logger,
        recentLog,
        verifyAll: !values["fast-boot"],
        repair: values.repair,
        ...crashHookForTests(),
      });
    } catch (error) {
      if (error instanceof ConfigError) throw new CliError(error.message);
      if (error instanceof DataDirLockedError) throw new CliError(error.message, 1);
      if (error instanceof TlsConfigError) throw new CliError(error.message, 1);
      // By name: their modules (HTTP, ZooKeeper) load only when the config turns them on.
      if (OPERATOR_ERRORS.has((error as Error).name)) {
        throw new CliError((error as Error).message, 1);
      }
      if ((error as { code?: string }).code === "EADDRINUSE") {
        throw new CliError(
          `Cannot listen on ${config.system.host}:${config.system.serverPort}: the address is in use; pick another --port`,
          1,
        );
      }
      throw error;
    }
    warnAboutSecurity(config, logger);
    const failures = running.store.failures();
    for (const [partition, error] of failures) {
      logger.log("error", "Partition refused at start-up", { partition, reason: error.message });
    }
    const httpPort = running.httpPort;
    console.log(
      `metaq ${CLI_VERSION} listening on ${config.system.host}:${running.port}` +
        (httpPort ? ` (http ${config.system.host}:${httpPort})` : "") +
        `, data in ${config.system.dataPath}`,
    );
    if (values["ports-file"]) {
      fs.writeFileSync(
        values["ports-file"],
        JSON.stringify({
          port: running.port,
          httpPort: httpPort ?? null,
          ...(running.cluster
            ? { peerPort: running.peerPort, nodeId: running.cluster.nodeId }
            : {}),
        }),
      );
    }
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        logger.log("info", "Shutting down", { signal });
        resolve();
      };
      process.once("SIGTERM", () => stop("SIGTERM"));
      process.once("SIGINT", () => stop("SIGINT"));
    });
    await running.close();
    logger.log("info", "Stopped cleanly");
    return 0;
  },
};

/** The --zk-* flags over the config (docs/zookeeper.md). */
function zooKeeperConfig(
  config: Config,
  values: {
    "zk-connect"?: string;
    "zk-root"?: string;
    "zk-session-timeout-ms"?: string;
    "zk-broker-id"?: string;
  },
): Config {
  try {
    return withZooKeeperFlags(config, {
      connect: values["zk-connect"],
      root: values["zk-root"],
      sessionTimeoutMs: values["zk-session-timeout-ms"],
      brokerId: values["zk-broker-id"],
    });
  } catch (error) {
    if (error instanceof ConfigError) throw new CliError(error.message);
    throw error;
  }
}

/** The config with the hubs of `--uplink` (over `[uplink] hubs=`). */
function withUplinkFlag(config: Config, hubs: string | undefined): Config {
  if (hubs === undefined) return config;
  try {
    return Object.freeze({ ...config, uplink: uplinkWithHubs(config.uplink, hubs) });
  } catch (error) {
    throw new CliError((error as Error).message);
  }
}

/** Says at start-up what is not protected, so an operator cannot miss it. */
function warnAboutSecurity(config: Config, logger: Logger): void {
  const system = config.system;
  const tlsPorts = system.tlsCertFile === "" ? [] : system.tlsPorts.split(",").map((p) => p.trim());
  if (config.users.length === 0 && system.host !== "127.0.0.1" && system.host !== "localhost") {
    logger.log("warn", "Authentication is off: anyone who reaches the ports may use them", {
      host: system.host,
      hint: "add [user=NAME] sections (docs/security.md)",
    });
  }
  if (config.users.length > 0 && !tlsPorts.includes("client")) {
    logger.log("warn", "Tokens travel in clear on the client port: it has no TLS", {
      hint: "set tlsCertFile and tlsKeyFile",
    });
  }
  if (
    (system.peers.trim() !== "" || system.join.trim() !== "") && system.clusterSecret === "" &&
    system.clusterSecretFile === ""
  ) {
    logger.log("warn", "Peer links are not authenticated: set clusterSecret", {});
  }
}

/**
 * A cluster whose clients must authenticate (or that encrypts its ports) must also keep strangers
 * off its peer port, so it needs a secret every node proves (docs/security.md).
 */
function checkPeerSecurity(config: Config): void {
  const system = config.system;
  if (system.peers.trim() === "" && system.join.trim() === "") return;
  const secured = config.users.length > 0 || system.tlsCertFile !== "";
  if (secured && system.clusterSecret === "" && system.clusterSecretFile === "") {
    throw new CliError(
      "Cannot run a cluster with users or TLS but no clusterSecret: set clusterSecret or " +
        "clusterSecretFile (the same on every node) so strangers cannot join the peer port",
    );
  }
}

/**
 * TEST ONLY: when set to a byte count N, the broker appends only the first N bytes of the
 * next transaction commit's batches and then kills itself with SIGKILL, so tests can crash it
 * in the middle of a commit's append. Never set it in production.
 */
export const CRASH_AFTER_COMMIT_BYTES_ENV = "METAQ_TEST_CRASH_AFTER_COMMIT_BYTES";

/**
 * TEST ONLY: when set to a count N, the broker kills itself with SIGKILL right after the N-th
 * batch of delayed messages it delivers is appended, before that is recorded in `__delay-0`.
 */
export const DELAY_CRASH_AFTER_FIRINGS_ENV = "METAQ_TEST_DELAY_CRASH_AFTER_FIRINGS";

function crashHookForTests(): {
  crashAfterCommitBytes?: number;
  delayCrashAfterFirings?: number;
  crash?: () => void;
} {
  const count = (name: string) => {
    const text = process.env[name];
    if (text === undefined || text === "") return undefined;
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new CliError(`Cannot use ${name}=${text}: expected a count`);
    }
    return value;
  };
  const crashAfterCommitBytes = count(CRASH_AFTER_COMMIT_BYTES_ENV);
  const delayCrashAfterFirings = count(DELAY_CRASH_AFTER_FIRINGS_ENV);
  if (crashAfterCommitBytes === undefined && delayCrashAfterFirings === undefined) return {};
  return {
    crashAfterCommitBytes,
    delayCrashAfterFirings,
    crash: () => process.kill(process.pid, "SIGKILL"),
  };
}

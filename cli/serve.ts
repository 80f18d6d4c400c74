/** @module `metaq serve`: runs a broker until SIGTERM or SIGINT, then shuts down cleanly. */
import * as fs from "node:fs";
import process from "node:process";
import { HttpPortInUseError } from "../lib/http/plugin.ts";
import { LOG_RING_ENTRIES_MAX } from "../lib/limits.ts";
import type { Config } from "../lib/config/config.ts";
import { consoleLogger, type Logger, type LogLevel } from "../lib/log.ts";
import { LogRing, ringLogger } from "../lib/log_ring.ts";
import { TlsConfigError } from "../lib/security/tls.ts";
import { startBroker } from "../lib/server/start_broker.ts";
import { DataDirLockedError } from "../lib/store/message_store.ts";
import { CLI_VERSION, CliError, type CommandSpec, parseFlags } from "./common.ts";
import { loadConfig } from "./load_config.ts";
import { serverPlugins } from "./plugins.ts";

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
  --peers LIST         every voter as id=host:peerPort, comma-separated (this node included)
  --replicas R         copies of each partition: 1, 3 or 5 (default 3, at most the node count)
  --ack MODE           quorum (default: ack once a majority stored it) or leader
  --fsync MODE         always (default: fsync before counting an ack) or interval:MS
  --raft-heartbeat-ms, --raft-election-ms MIN-MAX, --raft-check-quorum-ms   Raft timing
  --cluster-secret-file FILE   secret every node proves on peer links (clusterSecretFile)

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
} as const;

export const serve: CommandSpec = {
  name: "serve",
  summary: "run a broker",
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
    const config = loadConfig(values);
    let running;
    try {
      running = await startBroker({
        config,
        logger,
        verifyAll: !values["fast-boot"],
        repair: values.repair,
        plugins: serverPlugins(config, values, { recentLog }),
      });
    } catch (error) {
      if (error instanceof DataDirLockedError) throw new CliError(error.message, 1);
      if (error instanceof HttpPortInUseError) throw new CliError(error.message, 1);
      if (error instanceof TlsConfigError) throw new CliError(error.message, 1);
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
    const httpPort = running.facts.get("httpPort");
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
          ...Object.fromEntries(running.facts),
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
    system.peers.trim() !== "" && system.clusterSecret === "" && system.clusterSecretFile === ""
  ) {
    logger.log("warn", "Peer links are not authenticated: set clusterSecret", {});
  }
}

/**
 * @module Starts and stops the servers the comparison runs against, each on 127.0.0.1 with its
 * data in a temp dir: `dist/metaq serve`, `nats-server` with JetStream on file storage (one node
 * or a 3-node cluster; the binary bench/install_peers.sh unpacked, named by METAQ_BENCH_NATS),
 * `redis-server` with `appendonly yes`, and the original MetaQ (Java) broker that
 * bench/install_metaq_java.sh built (METAQ_JAVA_HOME), with a ZooKeeper of its own. Every
 * process started is tracked by PID, and only those PIDs are ever signalled (stopAll on exit,
 * timeout or Ctrl-C).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import process from "node:process";

export interface ServerHandle {
  readonly name: string;
  readonly pid: number;
  /** Client ports, one per node. */
  readonly ports: number[];
  /** Every node's PID (one for single servers). */
  readonly pids: number[];
  stop(): Promise<void>;
}

const started = new Map<number, ChildProcess>();

/** Stops every process this module started that is still running (SIGTERM, then SIGKILL). */
export async function stopAll(): Promise<void> {
  await Promise.all([...started.values()].map((child) => stopChild(child)));
}

/** Sends SIGKILL to every tracked process at once; for exit handlers that cannot wait. */
export function killAllNow(): void {
  for (const child of started.values()) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
}

/** Tracks a process started elsewhere, so stopAll and killAllNow reach it too. */
export function track(child: ChildProcess): ChildProcess {
  if (child.pid === undefined) throw new Error("Cannot track a process that did not start");
  started.set(child.pid, child);
  child.once("exit", () => started.delete(child.pid!));
  return child;
}

/** Spawns a tracked process; its output goes to `logPath`. */
export function spawnTracked(command: string, args: string[], logPath: string): ChildProcess {
  const log = fs.openSync(logPath, "a");
  const child = spawn(command, args, { stdio: ["ignore", log, log] });
  fs.closeSync(log);
  return track(child);
}

export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

/** A port that was free a moment ago (bind to 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on `port`; rejects after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.createConnection({ host: "127.0.0.1", port });
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  throw new Error(`Nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

function handle(name: string, children: ChildProcess[], ports: number[]): ServerHandle {
  return {
    name,
    pid: children[0].pid!,
    pids: children.map((child) => child.pid!),
    ports,
    stop: async () => {
      await Promise.all(children.map((child) => stopChild(child)));
    },
  };
}

export type MetaqFlush = "threshold" | "group";

/**
 * `metaq serve` on a free port. `threshold`: unflushThreshold=1000000, unflushInterval=1000
 * (ack after the write, fsync once a second, like Redis's everysec; MetaQ's default threshold of
 * 1000 would fsync before nearly every ack of a 1024-message window); `group`: group commit, fsync before
 * every ack (metaq's default).
 */
export async function startMetaq(
  options: {
    binary: string;
    dir: string;
    flush: MetaqFlush;
    waitMs?: number;
    /** More `serve` flags (`--partitions N`, say). */
    args?: readonly string[];
  },
): Promise<ServerHandle> {
  fs.mkdirSync(options.dir, { recursive: true });
  const config = path.join(options.dir, "server.ini");
  fs.writeFileSync(
    config,
    options.flush === "threshold"
      ? "[system]\nunflushThreshold=1000000\nunflushInterval=1000\n"
      : "[system]\nunflushThreshold=0\n",
  );
  const port = await freePort();
  const child = spawnTracked(options.binary, [
    "serve",
    "--config",
    config,
    "--port",
    String(port),
    "--data",
    path.join(options.dir, "data"),
    "--no-http",
    "--log-level",
    "warn",
    ...(options.args ?? []),
  ], path.join(options.dir, "metaq.log"));
  await waitForPort(port, options.waitMs ?? 20_000);
  return handle(`metaq (${options.flush})`, [child], [port]);
}

/** Whether this metaq binary has the replicated `serve --node-id N --peers ...` command line. */
export function metaqHasReplication(binary: string): boolean {
  const help = spawnSync(binary, ["serve", "--help"], { encoding: "utf8", timeout: 10_000 });
  return (help.stdout ?? "").includes("--node-id") && (help.stdout ?? "").includes("--peers");
}

/**
 * Three `metaq serve --node-id N --port P --peer-port Q --data DIR --peers ...` nodes on loopback
 * (every partition on all three: `--replicas 3`), plus `args` (e.g. `--fsync interval:1000`).
 */
export async function startMetaqCluster(
  options: { binary: string; dir: string; args?: readonly string[] },
): Promise<ServerHandle> {
  const ports = [await freePort(), await freePort(), await freePort()];
  const peerPorts = [await freePort(), await freePort(), await freePort()];
  const peers = peerPorts.map((port, index) => `${index + 1}=127.0.0.1:${port}`).join(",");
  const children = ports.map((port, index) => {
    const dir = path.join(options.dir, `node${index + 1}`);
    fs.mkdirSync(dir, { recursive: true });
    return spawnTracked(options.binary, [
      "serve",
      "--node-id",
      String(index + 1),
      "--port",
      String(port),
      "--peer-port",
      String(peerPorts[index]),
      "--data",
      dir,
      "--peers",
      peers,
      "--replicas",
      "3",
      "--no-http",
      "--log-level",
      "warn",
      ...(options.args ?? []),
    ], path.join(dir, "metaq.log"));
  });
  await Promise.all(ports.map((port) => waitForPort(port, 30_000)));
  return handle("metaq R=3", children, ports);
}

/** The nats-server binary: bench/install_peers.sh's unpacked 2.10 (METAQ_BENCH_NATS), else PATH's. */
export function natsBinary(): string {
  return process.env.METAQ_BENCH_NATS || "nats-server";
}

/**
 * JetStream's file-store sync: `always` fsyncs every write before the PubAck (2.10+), `default`
 * leaves it to the store's periodic sync (every 2 minutes in 2.10) and the OS.
 */
export type NatsSync = "default" | "always";

function jetstreamBlock(storeDir: string, sync: NatsSync): string {
  const syncLine = sync === "always" ? ", sync_interval: always" : "";
  return `jetstream { store_dir: ${JSON.stringify(storeDir)}${syncLine} }`;
}

/** `nats-server` with JetStream on file storage, bound to 127.0.0.1. */
export async function startNats(
  options: { dir: string; sync?: NatsSync; waitMs?: number },
): Promise<ServerHandle> {
  fs.mkdirSync(options.dir, { recursive: true });
  const port = await freePort();
  const config = path.join(options.dir, "nats.conf");
  fs.writeFileSync(
    config,
    [
      "host: 127.0.0.1",
      `port: ${port}`,
      jetstreamBlock(path.join(options.dir, "js"), options.sync ?? "default"),
      "",
    ].join("\n"),
  );
  const child = spawnTracked(natsBinary(), ["-c", config], path.join(options.dir, "nats.log"));
  await waitForPort(port, options.waitMs ?? 20_000);
  return handle(`nats (${options.sync ?? "default"})`, [child], [port]);
}

/** Three `nats-server` nodes in one JetStream cluster on loopback. */
export async function startNatsCluster(
  options: { dir: string; sync?: NatsSync },
): Promise<ServerHandle> {
  const ports = [await freePort(), await freePort(), await freePort()];
  const routes = [await freePort(), await freePort(), await freePort()];
  const children = ports.map((port, index) => {
    const dir = path.join(options.dir, `n${index + 1}`);
    fs.mkdirSync(dir, { recursive: true });
    const config = path.join(dir, "nats.conf");
    fs.writeFileSync(
      config,
      [
        `server_name: n${index + 1}`,
        "host: 127.0.0.1",
        `port: ${port}`,
        jetstreamBlock(path.join(dir, "js"), options.sync ?? "default"),
        "cluster {",
        "  name: bench",
        `  listen: 127.0.0.1:${routes[index]}`,
        `  routes: [${routes.map((route) => `nats-route://127.0.0.1:${route}`).join(", ")}]`,
        "}",
        "",
      ].join("\n"),
    );
    return spawnTracked(natsBinary(), ["-c", config], path.join(dir, "nats.log"));
  });
  await Promise.all(ports.map((port) => waitForPort(port, 30_000)));
  return handle("nats R=3", children, ports);
}

export type RedisFsync = "everysec" | "always";

/** `redis-server` with the append-only file on, RDB snapshots off, bound to 127.0.0.1. */
export async function startRedis(
  options: { dir: string; fsync: RedisFsync; waitMs?: number },
): Promise<ServerHandle> {
  fs.mkdirSync(options.dir, { recursive: true });
  const port = await freePort();
  const child = spawnTracked("redis-server", [
    "--bind",
    "127.0.0.1",
    "--port",
    String(port),
    "--dir",
    options.dir,
    "--appendonly",
    "yes",
    "--appendfsync",
    options.fsync,
    "--save",
    "",
    "--daemonize",
    "no",
    "--protected-mode",
    "no",
  ], path.join(options.dir, "redis.log"));
  await waitForPort(port, options.waitMs ?? 20_000);
  return handle(`redis (${options.fsync})`, [child], [port]);
}

/**
 * The original MetaQ (Java) broker that bench/install_metaq_java.sh built: its directory
 * (METAQ_JAVA_HOME, holding `classpath` and `VERSION`), or undefined when it is not installed.
 */
export function metaqJavaHome(): string | undefined {
  const home = process.env.METAQ_JAVA_HOME;
  return home && fs.existsSync(path.join(home, "classpath")) ? home : undefined;
}

/** ZooKeeper's jar (Debian's libzookeeper-java; its manifest names the jars it needs). */
const ZOOKEEPER_JAR = process.env.ZOOKEEPER_JAR ?? "/usr/share/java/zookeeper.jar";

/**
 * MetaQ's brokers register in ZooKeeper and will not start without one (its ZkClient connects in
 * the broker's constructor): a ZooKeeper server on a free port with its data in `dir`, as the
 * Java broker's own "local" mode would start in-process. A process of its own, so the broker's
 * RSS and CPU rows count the broker alone.
 */
export async function startZooKeeper(dir: string): Promise<{ port: number; child: ChildProcess }> {
  fs.mkdirSync(path.join(dir, "data"), { recursive: true });
  const port = await freePort();
  const config = path.join(dir, "zoo.cfg");
  fs.writeFileSync(
    config,
    [
      "tickTime=2000",
      `dataDir=${path.join(dir, "data")}`,
      `clientPort=${port}`,
      "clientPortAddress=127.0.0.1",
      "admin.enableServer=false",
      "maxClientCnxns=0",
      "",
    ].join("\n"),
  );
  const child = spawnTracked("java", [
    "-Xmx128m",
    "-XX:+UseSerialGC",
    "-Dzookeeper.jmx.log4j.disable=true",
    "-cp",
    ZOOKEEPER_JAR,
    "org.apache.zookeeper.server.ZooKeeperServerMain",
    config,
  ], path.join(dir, "zookeeper.log"));
  try {
    await waitForPort(port, 60_000);
  } catch (error) {
    await stopChild(child);
    throw error;
  }
  return { port, child };
}

/**
 * The Java broker's server.ini: the values of the `conf/server.ini` MetaQ ships (group commit:
 * unflushThreshold=0; stat=true; 1 GiB segments; 1 MiB transfers) with this run's port, data
 * dir and ZooKeeper, one pattern topic `.*` (MetaQ serves only topics its config names, as
 * regular expressions), and in `threshold` mode metaq's fastest-mode settings
 * (unflushThreshold=1000000, unflushInterval=1000: ack after the write, fsync once a second).
 * MetaQ's unflushThreshold=1 is not "fsync before every ack": its store fsyncs when more than
 * the threshold are unflushed, that is every second put, and acks the first one unflushed;
 * values <= 0 select its group commit, where every ack waits for the fsync that covers it.
 */
export function metaqJavaConfig(
  options: { port: number; dataDir: string; zkPort: number; flush: MetaqFlush },
): string {
  const flush = options.flush === "threshold"
    ? ["unflushThreshold=1000000", "unflushInterval=1000"]
    : ["unflushThreshold=0", "unflushInterval=10000"];
  return [
    "[system]",
    "brokerId=0",
    "hostName=127.0.0.1",
    `serverPort=${options.port}`,
    `dataPath=${options.dataDir}`,
    "numPartitions=1",
    ...flush,
    "maxSegmentSize=1073741824",
    "maxTransferSize=1048576",
    "deletePolicy=delete,168",
    "deleteWhen=0 0 6,18 * * ?",
    "flushTxLogAtCommit=1",
    "stat=true",
    "updateConsumerOffsets=true",
    "",
    "[zookeeper]",
    `zk.zkConnect=127.0.0.1:${options.zkPort}`,
    "zk.zkSessionTimeoutMs=30000",
    "zk.zkConnectionTimeoutMs=30000",
    "zk.zkSyncTimeMs=5000",
    "",
    "[topic=.*]",
    "",
  ].join("\n");
}

/**
 * Spawns the Java broker (untracked until it has a PID) with MetaQ's own JVM settings from its
 * bin/env.sh (`-Xmx512m -Xms512m -server`); its log goes to `dir`.
 */
export function spawnMetaqJava(
  options: { home: string; dir: string; port: number; zkPort: number; flush: MetaqFlush },
): ChildProcess {
  fs.mkdirSync(path.join(options.dir, "data"), { recursive: true });
  // MetaConfig looks for ../provided next to the file, so the path must have two parents.
  const config = path.resolve(options.dir, "server.ini");
  fs.writeFileSync(
    config,
    metaqJavaConfig({
      port: options.port,
      dataDir: path.resolve(options.dir, "data"),
      zkPort: options.zkPort,
      flush: options.flush,
    }),
  );
  const log4j = path.resolve(options.dir, "log4j.properties");
  fs.writeFileSync(
    log4j,
    [
      "log4j.rootLogger=WARN, out",
      "log4j.appender.out=org.apache.log4j.ConsoleAppender",
      "log4j.appender.out.layout=org.apache.log4j.PatternLayout",
      "log4j.appender.out.layout.ConversionPattern=[%d] %p %m (%c)%n",
      "",
    ].join("\n"),
  );
  const classpath = fs.readFileSync(path.join(options.home, "classpath"), "utf8").trim();
  return spawnTracked("java", [
    "-Xmx512m",
    "-Xms512m",
    "-server",
    `-Dlog4j.configuration=file:${log4j}`,
    "-cp",
    classpath,
    "com.taobao.metamorphosis.server.MetamorphosisStartup",
    "-f",
    config,
  ], path.join(options.dir, "broker.log"));
}

/**
 * The original MetaQ broker on a free port, with a ZooKeeper of its own. The handle's `pid` is
 * the broker's (the rows that read a server's memory and CPU read the broker's); `stop` stops
 * the broker, then its ZooKeeper.
 */
export async function startMetaqJava(
  options: { home: string; dir: string; flush: MetaqFlush; waitMs?: number },
): Promise<ServerHandle> {
  fs.mkdirSync(options.dir, { recursive: true });
  const zk = await startZooKeeper(path.join(options.dir, "zookeeper"));
  const port = await freePort();
  const broker = spawnMetaqJava({ ...options, port, zkPort: zk.port });
  try {
    await waitForPort(port, options.waitMs ?? 60_000);
  } catch (error) {
    await stopChild(broker);
    await stopChild(zk.child);
    throw error;
  }
  return {
    name: `metaq-java (${options.flush})`,
    pid: broker.pid!,
    pids: [broker.pid!],
    ports: [port],
    stop: async () => {
      await stopChild(broker);
      await stopChild(zk.child);
    },
  };
}

/** First line of `command --version` (or "?"). */
export function versionOf(command: string, args = ["--version"]): string {
  const result = spawnSync(command, args, { encoding: "utf8", timeout: 10_000 });
  return (result.stdout || result.stderr || "?").trim().split("\n")[0];
}

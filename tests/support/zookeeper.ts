/**
 * @module A real ZooKeeper server for tests: Debian's ZooKeeper 3.8 (package `zookeeperd`) run as
 * a child process from the jar that package installs, on a free port of 127.0.0.1 with its own
 * temporary data directory, never the system service. When the jar is missing and this runs as
 * root with apt-get, it installs the package (once), as `.ci/run` does; otherwise it fails with
 * what to install.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import process from "node:process";
import { freePorts } from "./free_port.ts";
import { type TempDir, tempDir } from "./temp_dir.ts";
import { waitFor } from "./wait.ts";

const ZOOKEEPER_JAR = process.env.ZOOKEEPER_JAR ?? "/usr/share/java/zookeeper.jar";
const JAVA = process.env.JAVA ?? "java";
/** Installing Java and ZooKeeper from Debian takes a minute or two on a fresh machine. */
const INSTALL_TIMEOUT_MS = 10 * 60_000;
const START_TIMEOUT_MS = 60_000;

/** Makes sure Debian's ZooKeeper jar (and a Java to run it) is here, installing it if it can. */
export function ensureZooKeeper(): void {
  if (fs.existsSync(ZOOKEEPER_JAR) && hasJava()) return;
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  const aptGet = fs.existsSync("/usr/bin/apt-get");
  if (!root || !aptGet) {
    throw new Error(
      `Cannot run the ZooKeeper tests: ${ZOOKEEPER_JAR} or java is missing. Install them with ` +
        "'apt-get install -y zookeeperd' (.ci/run does), or set ZOOKEEPER_JAR and JAVA.",
    );
  }
  console.error("ZooKeeper is missing: installing Debian's zookeeperd (apt-get)...");
  for (const args of [["update"], ["install", "-y", "zookeeperd"]]) {
    const result = spawnSync("apt-get", args, {
      stdio: ["ignore", "ignore", "inherit"],
      timeout: INSTALL_TIMEOUT_MS,
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    if (result.status !== 0) {
      throw new Error(
        `Cannot install zookeeperd: apt-get ${args.join(" ")} exited ${result.status}`,
      );
    }
  }
  if (!fs.existsSync(ZOOKEEPER_JAR)) throw new Error(`zookeeperd installed no ${ZOOKEEPER_JAR}`);
}

function hasJava(): boolean {
  return spawnSync(JAVA, ["-version"], { stdio: "ignore" }).status === 0;
}

export interface ZooKeeperServer extends AsyncDisposable {
  readonly port: number;
  /** `127.0.0.1:<port>`, for --zk-connect. */
  readonly connect: string;
  readonly running: boolean;
  /** Kills the server (SIGKILL); its data directory stays, so `start` resumes its sessions. */
  kill(): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface ZooKeeperOptions {
  /** ZooKeeper's tick; the session timeouts it grants are bounded by min/max below. */
  readonly tickMs?: number;
  readonly minSessionTimeoutMs?: number;
  readonly maxSessionTimeoutMs?: number;
}

/** Starts a ZooKeeper server and waits until it answers a client handshake. */
export async function startZooKeeper(options: ZooKeeperOptions = {}): Promise<ZooKeeperServer> {
  ensureZooKeeper();
  const [port] = await freePorts(1);
  const dir: TempDir = tempDir("metaq-zk-");
  const config = path.join(dir.path, "zoo.cfg");
  fs.mkdirSync(path.join(dir.path, "data"));
  fs.writeFileSync(
    config,
    [
      `tickTime=${options.tickMs ?? 250}`,
      `minSessionTimeout=${options.minSessionTimeoutMs ?? 500}`,
      `maxSessionTimeout=${options.maxSessionTimeoutMs ?? 60_000}`,
      `dataDir=${path.join(dir.path, "data")}`,
      `clientPort=${port}`,
      "clientPortAddress=127.0.0.1",
      "admin.enableServer=false",
      "maxClientCnxns=0",
      "",
    ].join("\n"),
  );
  const logPath = path.join(dir.path, "server.log");
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const start = async () => {
    const log = fs.openSync(logPath, "a");
    child = spawn(
      JAVA,
      [
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Dzookeeper.jmx.log4j.disable=true",
        "-cp",
        ZOOKEEPER_JAR,
        "org.apache.zookeeper.server.ZooKeeperServerMain",
        config,
      ],
      { stdio: ["ignore", log, log] },
    );
    fs.closeSync(log);
    const done = Promise.withResolvers<void>();
    child.once("exit", () => done.resolve());
    exited = done.promise;
    const current = child;
    await waitFor("ZooKeeper to answer on its port", async () => {
      if (current.exitCode !== null) {
        throw new Error(`ZooKeeper exited ${current.exitCode}: ${tail(logPath)}`);
      }
      return await answersHandshake(port);
    }, { timeoutMs: START_TIMEOUT_MS, everyMs: 100 });
  };
  const kill = async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
    child = undefined;
  };
  await start();
  return {
    port,
    connect: `127.0.0.1:${port}`,
    get running() {
      return child !== undefined;
    },
    kill,
    start,
    stop: kill,
    async [Symbol.asyncDispose]() {
      await kill();
      dir[Symbol.dispose]();
    },
  };
}

/** True when a server on `port` completes ZooKeeper's handshake (a listening port is not enough). */
async function answersHandshake(port: number): Promise<boolean> {
  const { encodeConnectRequest } = await import("../../lib/zk/protocol.ts");
  return await new Promise<boolean>((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    const timer = setTimeout(() => finish(false), 2000);
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    socket.once("error", () => finish(false));
    socket.once("connect", () =>
      socket.write(encodeConnectRequest({
        lastZxidSeen: 0n,
        timeoutMs: 1000,
        sessionId: 0n,
        password: new Uint8Array(16),
      })));
    // Any reply of at least the frame length and a protocol version means it serves sessions.
    socket.once("data", (chunk: Uint8Array) => finish(chunk.length >= 8));
  });
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, "utf8").slice(-2000);
  } catch {
    return "(no log)";
  }
}

/**
 * Ends the session `sessionId` from outside, as an operator or a long pause would have it end:
 * a second connection resumes it with its password and closes it. The client holding it learns
 * on its next contact that it has expired.
 */
export async function expireSession(
  server: ZooKeeperServer,
  sessionId: bigint,
  password: Uint8Array,
): Promise<void> {
  const { encodeConnectRequest, encodeRequest, FrameSplitter, decodeConnectResponse } =
    await import(
      "../../lib/zk/protocol.ts"
    );
  await new Promise<void>((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port: server.port });
    const splitter = new FrameSplitter();
    let stage = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("Cannot expire the session: no answer"));
    }, 10_000);
    socket.once("error", reject);
    socket.once(
      "connect",
      () =>
        socket.write(
          encodeConnectRequest({ lastZxidSeen: 0n, timeoutMs: 30_000, sessionId, password }),
        ),
    );
    socket.on("data", (chunk: Uint8Array) => {
      for (const body of splitter.push(chunk)) {
        if (stage++ === 0) {
          if (decodeConnectResponse(body).sessionId !== sessionId) {
            reject(new Error("Cannot expire the session: the server gave a different one"));
          }
          socket.write(encodeRequest(1, { op: "closeSession" }));
        } else {
          clearTimeout(timer);
          socket.destroy();
          resolve();
        }
      }
    });
  });
}

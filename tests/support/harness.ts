/**
 * @module Spawns the compiled `dist/metaq` (or any metaq command line) as a child process for
 * end-to-end tests: a broker on a free port with its data in a temp dir, its output collected,
 * killable with any signal and restartable on the same data. Only PIDs it started are signalled.
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export const REPO_ROOT = path.resolve(import.meta.dirname ?? ".", "../..");
export const METAQ_BINARY = process.env.METAQ_BINARY ?? path.join(REPO_ROOT, "dist/metaq");

export interface ProcessResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  /** stdout as the bytes written (binary output). */
  readonly stdoutBytes: Uint8Array;
  readonly stderr: string;
}

/** Runs `metaq ARGS` to completion (bounded by `timeoutMs`), feeding `input` on stdin. */
export function runMetaq(
  args: string[],
  options: { input?: string | Uint8Array; timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(METAQ_BINARY, args, {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, ...options.env },
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout!.on("data", (chunk) => stdout.push(chunk));
    child.stderr!.on("data", (chunk) => stderr.push(chunk));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(
          `metaq ${args.join(" ")} did not finish in ${options.timeoutMs ?? 60_000} ms; stderr: ${
            Buffer.concat(stderr)
          }`,
        ),
      );
    }, options.timeoutMs ?? 60_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(stdout).toString(),
        stdoutBytes: new Uint8Array(Buffer.concat(stdout)),
        stderr: Buffer.concat(stderr).toString(),
      });
    });
    child.stdin!.on("error", () => {}); // the child may exit before reading everything
    if (options.input !== undefined) child.stdin!.end(options.input);
    else child.stdin!.end();
  });
}

export interface BrokerProcessOptions {
  readonly dataDir: string;
  /** Extra `metaq serve` flags. */
  readonly args?: readonly string[];
  /** Extra environment variables for the first start. */
  readonly env?: Readonly<Record<string, string>>;
  /** Serve HTTP on a free port (default: `--no-http`). */
  readonly http?: boolean;
  readonly startTimeoutMs?: number;
}

/** A `metaq serve` child process. */
export class BrokerProcess implements AsyncDisposable {
  readonly options: BrokerProcessOptions;
  child: ChildProcess | undefined;
  port = 0;
  httpPort: number | null = null;
  /** The peer port, when it runs as a cluster node. */
  peerPort: number | null = null;
  stdout = "";
  stderr = "";
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;

  private constructor(options: BrokerProcessOptions) {
    this.options = options;
  }

  static async start(options: BrokerProcessOptions): Promise<BrokerProcess> {
    const broker = new BrokerProcess(options);
    await broker.restart([], options.env);
    return broker;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** `127.0.0.1:<peer port>` of a cluster node. */
  get peerAddress(): string {
    if (this.peerPort === null) throw new Error("this broker is not a cluster node");
    return `127.0.0.1:${this.peerPort}`;
  }

  /** `http://127.0.0.1:<httpPort>`; only when started with `http: true`. */
  get httpBase(): string {
    if (this.httpPort === null) throw new Error("this broker was started without HTTP");
    return `http://127.0.0.1:${this.httpPort}`;
  }

  /** Starts (again) on the same data directory; waits until the ports file appears. */
  async restart(
    extraArgs: readonly string[] = [],
    env: Readonly<Record<string, string>> = {},
  ): Promise<void> {
    const portsFile = path.join(
      this.options.dataDir,
      `.ports-${Date.now()}-${Math.random().toString(36).slice(2)}`,
    );
    fs.mkdirSync(this.options.dataDir, { recursive: true });
    const args = [
      "serve",
      "--port",
      "0",
      "--data",
      this.options.dataDir,
      "--ports-file",
      portsFile,
      ...(this.options.http ? ["--http-port", "0"] : ["--no-http"]),
      ...(this.options.args ?? []),
      ...extraArgs,
    ];
    const child = spawn(METAQ_BINARY, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...env },
    });
    this.child = child;
    child.stdout!.on("data", (chunk) => (this.stdout += chunk));
    child.stderr!.on("data", (chunk) => (this.stderr += chunk));
    this.exit = new Promise((resolve) =>
      child.on("exit", (code, signal) => resolve({ code, signal }))
    );
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 20_000);
    let exited = false;
    void this.exit.then(() => (exited = true));
    while (!fs.existsSync(portsFile) || fs.readFileSync(portsFile, "utf8").length === 0) {
      if (exited) throw new Error(`metaq serve exited during start-up: ${this.stderr}`);
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new Error(`metaq serve did not start in time: ${this.stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const ports = JSON.parse(fs.readFileSync(portsFile, "utf8"));
    fs.rmSync(portsFile, { force: true });
    this.port = ports.port;
    this.httpPort = ports.httpPort;
    this.peerPort = ports.peerPort ?? null;
  }

  /** Sends `signal` and waits for the process to exit. */
  async kill(
    signal: NodeJS.Signals = "SIGKILL",
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      return { code: child?.exitCode ?? null, signal: child?.signalCode ?? null };
    }
    child.kill(signal);
    return await this.exit!;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill("SIGKILL");
  }
}

/** A broker reading `config` (a server.ini's text, written to `dir`) with its data in `dir/data`. */
export async function startWithConfig(
  dir: string,
  config: string,
  options: { http?: boolean } = {},
): Promise<BrokerProcess> {
  const file = path.join(dir, "server.ini");
  fs.writeFileSync(file, config);
  return await BrokerProcess.start({
    dataDir: path.join(dir, "data"),
    args: ["--config", file],
    http: options.http,
  });
}

/** Reads `<dataDir>/<topic>-<partition>` segment files back to back (for byte-level checks). */
export function readPartitionBytes(dataDir: string, topic: string, partition: number): Uint8Array {
  const dir = path.join(dataDir, `${topic}-${partition}`);
  const names = fs.readdirSync(dir).filter((name) => name.endsWith(".meta")).sort();
  return Buffer.concat(names.map((name) => fs.readFileSync(path.join(dir, name))));
}

/**
 * @module A long-running `dist/metaq` child (a consumer, typically) for end-to-end tests: its
 * stdout lines and stderr collected as they arrive, signals sent only to its own PID, and its
 * exit awaited. `metaq_process.ts` complements harness.ts, which runs commands to completion.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { METAQ_BINARY } from "./harness.ts";

export class MetaqProcess implements AsyncDisposable {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  stderr = "";
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #partial = "";

  /** With `options.stdin`, the child's stdin is a pipe the test writes (`child.stdin`). */
  constructor(
    args: string[],
    env: Record<string, string> = {},
    options: { stdin?: boolean } = {},
  ) {
    this.child = spawn(METAQ_BINARY, args, {
      stdio: [options.stdin ? "pipe" : "ignore", "pipe", "pipe"],
      env: { ...process.env, ...env },
    });
    this.child.stdout!.setEncoding("utf8");
    this.child.stdout!.on("data", (chunk: string) => {
      const text = this.#partial + chunk;
      const parts = text.split("\n");
      this.#partial = parts.pop()!;
      for (const line of parts) this.lines.push(line);
    });
    this.child.stderr!.on("data", (chunk) => (this.stderr += chunk));
    this.exit = new Promise((resolve) =>
      this.child.on("exit", (code, signal) => resolve({ code, signal }))
    );
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** Sends `signal` to this child (and only it) and waits for it to exit. */
  async stop(signal: NodeJS.Signals = "SIGTERM") {
    if (!this.exited) this.child.kill(signal);
    return await this.exit;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
  }
}

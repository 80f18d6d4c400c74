/** @module The command table and top-level help; `main.ts` hands argv here. */
import process from "node:process";
import { describeError } from "../lib/errors.ts";
import { bench } from "./bench.ts";
import { cert } from "./cert.ts";
import { CLI_VERSION, CliError, type CommandSpec, didYouMean } from "./common.ts";
import { cluster } from "./cluster.ts";
import { consume } from "./consume.ts";
import { groups } from "./groups.ts";
import { produce } from "./produce.ts";
import { schedule } from "./schedule.ts";
import { serve } from "./serve.ts";
import { stats } from "./stats.ts";
import { topics } from "./topics.ts";
import { tx } from "./tx.ts";
import { verify } from "./verify.ts";
import { version } from "./version.ts";
import { zk } from "./zk.ts";

export const COMMANDS: readonly CommandSpec[] = [
  serve,
  produce,
  consume,
  groups,
  topics,
  stats,
  tx,
  schedule,
  cluster,
  zk,
  verify,
  version,
  bench,
  cert,
];

function help(): string {
  const width = Math.max(...COMMANDS.map((command) => command.name.length));
  return [
    `metaq ${CLI_VERSION}: a single-binary, MetaQ-compatible message broker`,
    "",
    "Usage: metaq COMMAND [options]     (metaq help COMMAND, or metaq COMMAND --help)",
    "",
    "Commands:",
    ...COMMANDS.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`),
    "",
    "Examples:",
    "  metaq serve --data ./data",
    "  echo hello | metaq produce orders",
    "  metaq consume orders --from-beginning",
    "  metaq consume orders --group billing",
  ].join("\n");
}

/**
 * A throw that escapes every handler (a broken invariant, an assertion) ends the process: a
 * broker never keeps serving after one (STYLE: recovery runs on the next start). Runtimes differ
 * on whether an error thrown in an event handler is fatal, so metaq decides for itself.
 */
function exitOnUncaughtErrors(): void {
  const die = (kind: string) => (error: unknown) => {
    const detail = error instanceof Error
      ? (error.stack ?? `${error.name}: ${error.message}`)
      : String(error);
    console.error(`metaq: fatal ${kind}: ${detail}`);
    process.exit(70);
  };
  process.on("uncaughtException", die("uncaught exception"));
  process.on("unhandledRejection", die("unhandled rejection"));
}

/** Runs one command; returns the process exit code. Operating errors print one line. */
export async function runCli(args: string[]): Promise<number> {
  exitOnUncaughtErrors();
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h") {
    console.log(help());
    return name === undefined ? 2 : 0;
  }
  if (name === "help") {
    if (rest[0] === undefined) {
      console.log(help());
      return 0;
    }
    const command = findCommand(rest[0]);
    if (typeof command === "string") {
      console.error(command);
      return 2;
    }
    console.log(command.usage);
    return 0;
  }
  if (name === "--version" || name === "-V") {
    console.log(`metaq ${CLI_VERSION}`);
    return 0;
  }
  const command = findCommand(name);
  if (typeof command === "string") {
    console.error(command);
    return 2;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    if (error instanceof CliError) {
      console.error(`metaq ${name}: ${error.message}`);
      return error.exitCode;
    }
    const system = systemErrorLine(error);
    if (system) {
      console.error(`metaq ${name}: ${system}`);
      return 1;
    }
    console.error(
      `metaq ${name}: unexpected error: ${describeError(error)} (a bug in metaq: METAQ_DEBUG=1 ` +
        "prints the stack)",
    );
    if (process.env.METAQ_DEBUG) console.error(error);
    return 70;
  }
}

/** The command named `name`, or the one-line error for a name that is none. */
function findCommand(name: string): CommandSpec | string {
  const command = COMMANDS.find((candidate) => candidate.name === name);
  if (command) return command;
  const suggestion = didYouMean(name, COMMANDS.map((candidate) => candidate.name));
  return `metaq: unknown command '${name}'${
    suggestion ? ` (did you mean '${suggestion}'?)` : ""
  } (see 'metaq --help')`;
}

/** What an operating system error means for the user, with a hint; undefined for others. */
const SYSTEM_HINTS: Record<string, string> = {
  EEXIST: "a file is where a directory should be: check the paths given",
  ENOTDIR: "a file is where a directory should be: check the paths given",
  EISDIR: "a directory is where a file should be: check the paths given",
  ENOENT: "no such file or directory: check the paths given",
  EACCES: "permission denied: check the owner and mode of the path, or run as its owner",
  EPERM: "operation not permitted: check the owner and mode of the path",
  EROFS: "the file system is read-only",
  ENOSPC: "the disk is full: free space or point --data elsewhere",
  EMFILE: "too many open files: raise the limit (ulimit -n)",
  EADDRINUSE: "the address is in use: stop what listens there or pick another port",
  EADDRNOTAVAIL: "the address is not one of this machine's: check --host",
};

function systemErrorLine(error: unknown): string | undefined {
  const code = (error as { code?: unknown }).code;
  if (!(error instanceof Error) || typeof code !== "string" || !(code in SYSTEM_HINTS)) {
    return undefined;
  }
  const { syscall, path } = error as { syscall?: string; path?: string };
  const action = syscall && path ? `Cannot ${syscall} ${path}` : "Cannot go on";
  return `${action}: ${SYSTEM_HINTS[code]} (${code})`;
}

/**
 * @module The command table and top-level help; `main.ts` hands argv here. Each command's module
 * is imported only when that command runs (or its help is asked for): `metaq serve` does not
 * load the HTTP client, the bench or readline, and `metaq --version` loads none of them (the
 * start-up time of a broker is mostly module loading; bench/README.md "Start-up").
 */
import process from "node:process";
import { describeError } from "../lib/errors.ts";
import { CLI_VERSION, CliError, type CommandSpec, didYouMean } from "./common.ts";

/** A command as the table lists it: its name, its one-line summary, and how to load it. */
export interface CommandEntry {
  readonly name: string;
  readonly summary: string;
  readonly load: () => Promise<CommandSpec>;
}

export const COMMANDS: readonly CommandEntry[] = [
  {
    name: "serve",
    summary: "run a broker",
    load: async () => (await import("./serve.ts")).serve,
  },
  {
    name: "produce",
    summary: "send messages, one per line",
    load: async () => (await import("./produce.ts")).produce,
  },
  {
    name: "consume",
    summary: "print messages of a topic",
    load: async () => (await import("./consume.ts")).consume,
  },
  {
    name: "groups",
    summary: "list consumer groups; reset their offsets; delete them",
    load: async () => (await import("./groups.ts")).groups,
  },
  {
    name: "topics",
    summary: "list topics; describe one's partitions",
    load: async () => (await import("./topics.ts")).topics,
  },
  {
    name: "stats",
    summary: "print broker statistics",
    load: async () => (await import("./stats.ts")).stats,
  },
  {
    name: "tx",
    summary: "list, commit or roll back prepared XA transactions",
    load: async () => (await import("./tx.ts")).tx,
  },
  {
    name: "schedule",
    summary: "list, add, pause, resume or remove cron schedules",
    load: async () => (await import("./schedule.ts")).schedule,
  },
  {
    name: "cluster",
    summary: "cluster status, scrub, membership, rebalancing, node replacement and force-recover",
    load: async () => (await import("./cluster.ts")).cluster,
  },
  {
    name: "zk",
    summary: "a MetaQ fleet as ZooKeeper sees it (brokers, topics, groups)",
    load: async () => (await import("./zk.ts")).zk,
  },
  {
    name: "verify",
    summary: "check (and repair) the data on disk",
    load: async () => (await import("./verify.ts")).verify,
  },
  {
    name: "version",
    summary: "print the version",
    load: async () => (await import("./version.ts")).version,
  },
  {
    name: "bench",
    summary: "measure a broker: produce, consume, latency",
    load: async () => (await import("./bench.ts")).bench,
  },
  {
    name: "cert",
    summary: "make a self-signed TLS certificate and key",
    load: async () => (await import("./cert.ts")).cert,
  },
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
    const entry = findCommand(rest[0]);
    if (typeof entry === "string") {
      console.error(entry);
      return 2;
    }
    console.log((await entry.load()).usage);
    return 0;
  }
  if (name === "--version" || name === "-V") {
    console.log(`metaq ${CLI_VERSION}`);
    return 0;
  }
  const entry = findCommand(name);
  if (typeof entry === "string") {
    console.error(entry);
    return 2;
  }
  try {
    return await (await entry.load()).run(rest);
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
function findCommand(name: string): CommandEntry | string {
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

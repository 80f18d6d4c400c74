/** @module The command table and top-level help; `main.ts` hands argv here. */
import process from "node:process";
import { describeError } from "../lib/errors.ts";
import { bench } from "./bench.ts";
import { cert } from "./cert.ts";
import { CLI_VERSION, CliError, type CommandSpec } from "./common.ts";
import { cluster } from "./cluster.ts";
import { consume } from "./consume.ts";
import { groups } from "./groups.ts";
import { produce } from "./produce.ts";
import { serve } from "./serve.ts";
import { stats } from "./stats.ts";
import { topics } from "./topics.ts";
import { tx } from "./tx.ts";
import { verify } from "./verify.ts";
import { version } from "./version.ts";

export const COMMANDS: readonly CommandSpec[] = [
  serve,
  produce,
  consume,
  groups,
  topics,
  stats,
  tx,
  cluster,
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
    "Usage: metaq COMMAND [options]     (metaq COMMAND --help for details)",
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
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(help());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-V") {
    console.log(`metaq ${CLI_VERSION}`);
    return 0;
  }
  const command = COMMANDS.find((candidate) => candidate.name === name);
  if (!command) {
    console.error(`metaq: unknown command '${name}' (see 'metaq --help')`);
    return 2;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    if (error instanceof CliError) {
      console.error(`metaq ${name}: ${error.message}`);
      return error.exitCode;
    }
    console.error(`metaq ${name}: unexpected error: ${describeError(error)}`);
    if (process.env.METAQ_DEBUG) console.error(error);
    return 70;
  }
}

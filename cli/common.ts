/**
 * @module What every command shares: flag parsing on node:util parseArgs (the design card's
 * @std/cli is JSR-only, which this build cannot reach), one-line operating errors, progress lines
 * on a TTY, and the broker address list.
 */
import * as fs from "node:fs";
import process from "node:process";
import { parseArgs } from "node:util";
import type { ClientAuth, ClientTls } from "../lib/client/connection.ts";

export const CLI_VERSION = "0.1.0";

/** An operating error: printed as one line on stderr, never as a stack trace. */
export class CliError extends Error {
  override readonly name = "CliError";
  readonly exitCode: number;

  constructor(message: string, exitCode = 2) {
    super(message);
    this.exitCode = exitCode;
  }
}

export interface CommandSpec {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  readonly run: (args: string[]) => Promise<number>;
}

type OptionSpec = {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  default?: string | boolean;
};

/** Parses `args` strictly; unknown or malformed flags become a CliError naming the command. */
export function parseFlags<T extends Record<string, OptionSpec>>(
  command: string,
  args: string[],
  options: T,
  positionalsMax = 0,
) {
  try {
    const parsed = parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
    if (parsed.positionals.length > positionalsMax) {
      throw new CliError(
        `Cannot run '${command}': unexpected argument '${
          parsed.positionals[positionalsMax]
        }' (see 'metaq ${command} --help')`,
      );
    }
    return parsed;
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new CliError(
      `Cannot run '${command}': ${(error as Error).message} (see 'metaq ${command} --help')`,
    );
  }
}

/** Parses a flag value as an integer in [min, max]. */
export function integerFlag(
  name: string,
  value: string | undefined,
  range: { min: number; max: number },
): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value)) {
    throw new CliError(`Cannot use --${name} ${value}: expected an integer`);
  }
  const number = Number(value);
  if (number < range.min || number > range.max) {
    throw new CliError(
      `Cannot use --${name} ${value}: must be between ${range.min} and ${range.max}`,
    );
  }
  return number;
}

export const DEFAULT_BROKER = "127.0.0.1:8123";

/** `--broker h1:p1,h2:p2` into a list. */
export function brokerList(value: string | undefined): string[] {
  const list = (value ?? process.env.METAQ_BROKER ?? DEFAULT_BROKER).split(",").map((entry) =>
    entry.trim()
  ).filter(Boolean);
  if (list.length === 0) throw new CliError("Cannot use --broker: give host:port[,host:port...]");
  for (const entry of list) {
    if (!/^[^:\s]+:\d{1,5}$/.test(entry)) {
      throw new CliError(`Cannot use broker address '${entry}': expected host:port`);
    }
  }
  return list;
}

/** Flags every command that talks to a broker accepts (see docs/security.md). */
export const SECURITY_FLAGS = {
  user: { type: "string" },
  token: { type: "string" },
  "token-file": { type: "string" },
  tls: { type: "boolean" },
  ca: { type: "string" },
  "tls-insecure": { type: "boolean" },
} as const;

export const SECURITY_USAGE = `Security (or METAQ_USER, METAQ_TOKEN, METAQ_TLS=1, METAQ_CA):
  --user NAME          authenticate as this [user=NAME] of the broker's config
  --token TOKEN        its token (visible in 'ps': prefer METAQ_TOKEN or --token-file)
  --token-file FILE    read the token from the first line of FILE
  --tls                speak TLS to the broker
  --ca FILE            PEM CA to trust (implies --tls); default: the system's roots
  --tls-insecure       accept any certificate (testing only)`;

export interface SecurityValues {
  readonly user?: string;
  readonly token?: string;
  readonly "token-file"?: string;
  readonly tls?: boolean;
  readonly ca?: string;
  readonly "tls-insecure"?: boolean;
}

/** Client `auth` and `tls` options from the flags, falling back to the environment. */
export function clientSecurity(values: SecurityValues): { auth?: ClientAuth; tls?: ClientTls } {
  const env = process.env;
  const user = values.user ?? env.METAQ_USER;
  let token = values.token ?? env.METAQ_TOKEN;
  if (values["token-file"] !== undefined) {
    try {
      token = fs.readFileSync(values["token-file"], "utf8").split(/\r?\n/)[0].trim();
    } catch (error) {
      throw new CliError(
        `Cannot read --token-file ${values["token-file"]}: ${(error as Error).message}`,
      );
    }
  }
  if ((user === undefined) !== (token === undefined)) {
    throw new CliError(
      "Cannot authenticate: give both --user and --token (or METAQ_USER and METAQ_TOKEN)",
    );
  }
  const caFile = values.ca ?? env.METAQ_CA;
  const wantTls = values.tls || values["tls-insecure"] || caFile !== undefined ||
    env.METAQ_TLS === "1" || env.METAQ_TLS === "true";
  let ca: string | undefined;
  if (caFile !== undefined) {
    try {
      ca = fs.readFileSync(caFile, "utf8");
    } catch (error) {
      throw new CliError(`Cannot read --ca ${caFile}: ${(error as Error).message}`);
    }
  }
  return {
    auth: user !== undefined ? { user, token: token! } : undefined,
    tls: wantTls ? { ca, insecure: values["tls-insecure"] === true } : undefined,
  };
}

/** A live progress line on stderr when it is a terminal; nothing otherwise. */
export class Progress {
  readonly #enabled = Boolean(process.stderr.isTTY);
  #lastMs = 0;

  update(text: () => string): void {
    if (!this.#enabled) return;
    const now = performance.now();
    if (now - this.#lastMs < 200) return;
    this.#lastMs = now;
    process.stderr.write(`\r\x1b[2K${text()}`);
  }

  done(): void {
    if (this.#enabled) process.stderr.write("\r\x1b[2K");
  }
}

export function formatRate(count: number, seconds: number): string {
  return seconds > 0 ? Math.round(count / seconds).toLocaleString("en-US") : "-";
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

/** Writes to stdout, resolving when the data is handed off (respects pipe backpressure). */
export function writeStdout(text: string | Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const ok = process.stdout.write(text, (error) => (error ? reject(error) : undefined));
    if (ok) resolve();
    else process.stdout.once("drain", () => resolve());
  });
}

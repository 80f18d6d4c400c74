/**
 * @module What every command shares: flag parsing on node:util parseArgs (the design card's
 * @std/cli is JSR-only, which this build cannot reach), one-line operating errors, progress lines
 * on a TTY, and the broker address list.
 */
import * as fs from "node:fs";
import process from "node:process";
import { parseArgs } from "node:util";
import type { MetaqClient } from "../lib/client/client.ts";
import type { ClientAuth, ClientTls } from "../lib/client/connection.ts";
import type { TopicMetadata } from "../lib/broker/commands.ts";
import { topicNameProblem } from "../lib/config/names.ts";
import { BrokerError } from "../lib/errors.ts";
import { groupNameProblem } from "../lib/protocol/names.ts";
import { applyProfile } from "./profile.ts";

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

/** A command's module exports one of these (its one-line summary is in cli/mod.ts's table). */
export interface CommandSpec {
  readonly name: string;
  readonly usage: string;
  readonly run: (args: string[]) => Promise<number>;
}

type OptionSpec = {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  default?: string | boolean;
};

/**
 * Parses `args` strictly. A flag error is one line naming the flag as typed, with a
 * did-you-mean for a misspelt one; a negative number after a flag that takes a value is that
 * value (`--offset -10`), not a flag.
 */
export function parseFlags<T extends Record<string, OptionSpec>>(
  command: string,
  args: string[],
  options: T,
  positionalsMax = 0,
) {
  const known = { ...options, help: { type: "boolean" as const, short: "h" } };
  const see = `(see 'metaq ${command} --help')`;
  let parsed;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(args, known),
      options: known,
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new CliError(`Cannot run '${command}': ${flagProblem(error, known)} ${see}`);
  }
  if ("profile" in options && !(parsed.values as Record<string, unknown>).help) {
    applyProfile(parsed.values as Record<string, unknown>);
  }
  if (parsed.positionals.length > positionalsMax) {
    throw new CliError(
      `Cannot run '${command}': unexpected argument '${parsed.positionals[positionalsMax]}' ${see}`,
    );
  }
  return parsed;
}

/** `--flag -10` as `--flag=-10` for flags that take a value, so the value is not a flag. */
function joinNegativeValues(args: string[], options: Record<string, OptionSpec>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = /^--([^=]+)$/.exec(args[i])?.[1];
    const next = args[i + 1];
    if (name && options[name]?.type === "string" && next !== undefined && /^-\d/.test(next)) {
      out.push(`${args[i]}=${next}`);
      i += 1;
    } else {
      out.push(args[i]);
    }
    if (args[i] === "--") {
      out.push(...args.slice(i + 1));
      break;
    }
  }
  return out;
}

/** node:util parseArgs's error as one clause naming the flag the user typed. */
function flagProblem(error: unknown, options: Record<string, OptionSpec>): string {
  const message = (error as Error).message;
  const flag = /'(-[^' ]*)/.exec(message)?.[1] ?? "";
  const code = (error as { code?: string }).code ?? "";
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" || /^Unknown option/.test(message)) {
    const name = flag.replace(/^-+/, "");
    const suggestion = didYouMean(name, Object.keys(options));
    return `unknown flag ${flag}${suggestion ? ` (did you mean --${suggestion}?)` : ""}`;
  }
  if (/argument missing/.test(message)) return `flag ${flag} needs a value`;
  if (/does not take an argument/.test(message)) return `flag ${flag} takes no value`;
  return message.split("\n")[0];
}

/** The candidate closest to `input` (edit distance at most 2, or a prefix), if any. */
export function didYouMean(input: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of candidates) {
    const distance = candidate.startsWith(input) && input.length >= 3
      ? 1
      : editDistance(input, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost);
    }
    previous = current;
  }
  return previous[b.length];
}

/** `--format`: text (the default) or json. */
export function formatFlag(value: string | undefined): "text" | "json" {
  if (value === undefined || value === "text" || value === "json") return value ?? "text";
  throw new CliError(`Cannot use --format ${value}: expected text or json`);
}

/** The TOPIC argument of `command`, checked as the broker would check it. */
export function topicArgument(command: string, value: string | undefined): string {
  if (value === undefined) {
    throw new CliError(`Cannot run '${command}': give a TOPIC (see 'metaq ${command} --help')`);
  }
  const problem = topicNameProblem(value);
  if (problem) throw new CliError(`Cannot use topic: ${problem}`);
  return value;
}

/** The GROUP argument or flag, checked as the broker would check it. */
export function groupArgument(value: string): string {
  const problem = groupNameProblem(value);
  if (problem) throw new CliError(`Cannot use group: ${problem}`);
  return value;
}

/**
 * What the broker says about `topic` (`meta`): partition count and whether it exists. A topic
 * the broker refuses is a one-line error with its reason.
 */
export async function topicMetadata(
  client: MetaqClient,
  topic: string,
  action: string,
): Promise<TopicMetadata> {
  try {
    return await client.topicMetadata(topic) as unknown as TopicMetadata;
  } catch (error) {
    if (error instanceof BrokerError && error.kind === "topicNotAccepted") {
      throw new CliError(`Cannot ${action} ${topic}: ${error.message}`, 1);
    }
    throw error;
  }
}

/** A topic must exist to be read: a typo is an error, not an empty result. */
export function checkTopicExists(meta: TopicMetadata, action: string, hint: string): void {
  if (meta.exists) return;
  throw new CliError(
    `Cannot ${action} ${meta.topic}: no such topic (no partition holds a message, and no ` +
      `[topic=${meta.topic}] section names it)${hint}`,
    1,
  );
}

/** A partition must be one of the topic's. */
export function checkPartition(meta: TopicMetadata, partition: number, action: string): void {
  if (partition < meta.partitions) return;
  throw new CliError(
    `Cannot ${action} ${meta.topic}: partition ${partition} does not exist (${meta.topic} has ` +
      `partitions 0 to ${meta.partitions - 1})`,
    1,
  );
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

export const DEFAULT_PORT = 8123;
export const DEFAULT_BROKER = `127.0.0.1:${DEFAULT_PORT}`;

/** `--broker h1:p1,h2,[::1]:p3` into a list of host:port; a host alone gets port 8123. */
export function brokerList(value: string | undefined): string[] {
  const list = (value ?? process.env.METAQ_BROKER ?? DEFAULT_BROKER).split(",").map((entry) =>
    entry.trim()
  ).filter(Boolean);
  if (list.length === 0) {
    throw new CliError("Cannot use --broker: give host[:port][,host[:port]...]");
  }
  return list.map((entry) => {
    if (/^[^:\s\[\]]+$/.test(entry) || /^\[[0-9a-fA-F:.]+\]$/.test(entry)) {
      return `${entry}:${DEFAULT_PORT}`;
    }
    if (!/^([^:\s\[\]]+|\[[0-9a-fA-F:.]+\]):\d{1,5}$/.test(entry)) {
      throw new CliError(`Cannot use broker address '${entry}': expected host or host:port`);
    }
    return entry;
  });
}

/** Flags every command that talks to a broker accepts (see docs/security.md). */
export const SECURITY_FLAGS = {
  profile: { type: "string" },
  user: { type: "string" },
  token: { type: "string" },
  "token-file": { type: "string" },
  tls: { type: "boolean" },
  ca: { type: "string" },
  "tls-insecure": { type: "boolean" },
} as const;

/** The help text of `--broker` and SECURITY_FLAGS, in every client command's usage. */
export const CONNECTION_USAGE =
  `Connection (or $METAQ_BROKER, $METAQ_USER, $METAQ_TOKEN, METAQ_TLS=1, $METAQ_CA, or a profile):
  --broker HOST[:PORT][,...]  broker(s) to talk to, first reachable first (default
                            127.0.0.1:8123; a host alone means port 8123)
  --profile NAME            connection settings from [profile=NAME] of
                            ~/.config/metaq/config.ini (or $METAQ_PROFILE; [profile=default]
                            when none is named); flags and variables override it
  --user NAME               authenticate as this [user=NAME] of the broker's config
  --token TOKEN             its token (visible in 'ps': prefer METAQ_TOKEN or --token-file)
  --token-file FILE         read the token from the first line of FILE
  --tls                     speak TLS to the broker
  --ca FILE                 PEM CA to trust (implies --tls); default: the system's roots
  --tls-insecure            accept any certificate (testing only)`;

export interface SecurityValues {
  readonly profile?: string;
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

/**
 * @module Connection profiles: named sets of connection flags in
 * `$XDG_CONFIG_HOME/metaq/config.ini` (default `~/.config/metaq/config.ini`), picked with
 * `--profile NAME` or `$METAQ_PROFILE`; a `[profile=default]` section applies when none is
 * named. What a profile gives is used only where neither a flag nor the flag's environment
 * variable says otherwise: flags, then environment, then the profile, then built-in defaults.
 *
 * ```ini
 * [profile=prod]
 * broker = mq1.example.com,mq2.example.com:9000
 * user = alice
 * token-file = ~/.config/metaq/prod.token
 * tls = true
 * ca = /etc/metaq/ca.pem
 * ```
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { IniError, parseIni } from "../lib/config/ini.ts";
import { CliError, didYouMean } from "./common.ts";

/** Keys a profile may set, each the flag of the same name, and the variable a flag falls back to. */
const PROFILE_KEYS: Readonly<Record<string, { type: "string" | "boolean"; env?: string }>> = {
  broker: { type: "string", env: "METAQ_BROKER" },
  user: { type: "string", env: "METAQ_USER" },
  token: { type: "string", env: "METAQ_TOKEN" },
  "token-file": { type: "string" },
  tls: { type: "boolean", env: "METAQ_TLS" },
  ca: { type: "string", env: "METAQ_CA" },
  "tls-insecure": { type: "boolean" },
};

/** The profiles file this process reads. */
export function profilesPath(): string {
  const base = process.env.XDG_CONFIG_HOME || path.join(os.homedir(), ".config");
  return path.join(base, "metaq", "config.ini");
}

/**
 * Fills `values` (parsed flags) from the chosen profile where neither the flag nor its
 * environment variable is set. Names the file and line of a bad entry.
 */
export function applyProfile(values: Record<string, unknown>): void {
  const flagName = values.profile as string | undefined;
  const name = flagName ?? (process.env.METAQ_PROFILE || undefined);
  const file = profilesPath();
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (error) {
    if ((error as { code?: string }).code !== "ENOENT") {
      throw new CliError(`Cannot read ${file}: ${(error as Error).message}`, 1);
    }
    if (name !== undefined) {
      throw new CliError(
        `Cannot use profile ${name}${flagName ? "" : " (from METAQ_PROFILE)"}: ${file} does ` +
          "not exist (see docs/cli.md, 'Profiles')",
      );
    }
    return;
  }
  let sections;
  try {
    sections = parseIni(text);
  } catch (error) {
    if (error instanceof IniError) throw new CliError(`Cannot read ${file}: ${error.message}`);
    throw error;
  }
  const profiles = new Map(
    sections.filter((section) => section.name.startsWith("profile="))
      .map((section) => [section.name.slice("profile=".length).trim(), section]),
  );
  const section = profiles.get(name ?? "default");
  if (!section) {
    if (name === undefined) return;
    const suggestion = didYouMean(name, [...profiles.keys()]);
    throw new CliError(
      `Cannot use profile ${name}: ${file} has no [profile=${name}] section${
        suggestion ? ` (did you mean ${suggestion}?)` : ""
      } (profiles: ${[...profiles.keys()].join(", ") || "none"})`,
    );
  }
  for (const entry of section.entries) {
    const key = PROFILE_KEYS[entry.key];
    const where = `${file} line ${entry.line}`;
    if (!key) {
      const suggestion = didYouMean(entry.key, Object.keys(PROFILE_KEYS));
      throw new CliError(
        `Cannot use ${where}: unknown key ${entry.key}${
          suggestion ? ` (did you mean ${suggestion}?)` : ""
        } (keys: ${Object.keys(PROFILE_KEYS).join(", ")})`,
      );
    }
    if (values[entry.key] !== undefined) continue; // the flag wins
    if (entry.key === "broker" && values["zk-connect"] !== undefined) continue; // ZooKeeper names them
    if (key.env && process.env[key.env] !== undefined) continue; // then the environment
    if (key.type === "boolean") {
      if (!/^(true|false|yes|no|1|0)$/i.test(entry.value)) {
        throw new CliError(`Cannot use ${where}: ${entry.key} must be true or false`);
      }
      values[entry.key] = /^(true|yes|1)$/i.test(entry.value);
    } else {
      values[entry.key] = entry.key === "token-file" || entry.key === "ca"
        ? entry.value.replace(/^~(?=\/)/, os.homedir())
        : entry.value;
    }
  }
}

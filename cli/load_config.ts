/** @module Turns `--config FILE` and the flags that override it into a Config. */
import * as fs from "node:fs";
import { buildConfig, type Config, ConfigError } from "../lib/config/config.ts";
import { CliError } from "./common.ts";

/** Flags that map onto `[system]` keys; shared by serve and verify. */
export interface ConfigFlags {
  readonly config?: string;
  readonly host?: string;
  readonly port?: string;
  readonly data?: string;
  readonly partitions?: string;
  readonly "broker-id"?: string;
  readonly "http-port"?: string;
  readonly "no-http"?: boolean;
}

/** Reads --config (if given) and applies the flags over it. */
export function loadConfig(values: ConfigFlags): Config {
  const overrides: Record<string, string> = {};
  const map: [keyof ConfigFlags, string][] = [
    ["host", "host"],
    ["port", "serverPort"],
    ["data", "dataPath"],
    ["partitions", "numPartitions"],
    ["broker-id", "brokerId"],
    ["http-port", "dashboardHttpPort"],
  ];
  for (const [flag, key] of map) {
    const value = values[flag];
    if (typeof value === "string") overrides[key] = value;
  }
  if (values["no-http"]) overrides.httpEnabled = "false";
  let fileText: string | undefined;
  if (values.config) {
    try {
      fileText = fs.readFileSync(values.config, "utf8");
    } catch (error) {
      throw new CliError(`Cannot read config file ${values.config}: ${(error as Error).message}`);
    }
  }
  try {
    return buildConfig({ fileText, filePath: values.config, overrides });
  } catch (error) {
    if (error instanceof ConfigError) {
      throw new CliError(
        `${error.message}${values.config ? ` (in ${values.config} or the flags)` : ""}`,
      );
    }
    throw error;
  }
}

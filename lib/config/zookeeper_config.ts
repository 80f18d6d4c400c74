/**
 * @module MetaQ's `[zookeeper]` section, read as MetaQ's MetaConfig.populateZookeeperConfig reads
 * it: the six `zk.*` keys of ZkUtils.ZKConfig with their defaults, a blank value meaning the
 * default, integers evaluated as expressions and booleans as MetaQ's getBoolean; the section may
 * also carry `[system]` keys, which MetaQ accepts there and ignores. ZooKeeper mode is on when
 * `zk.zkConnect` is set and `zk.zkEnable` is not false. Pure.
 */
import { evaluateInteger, parseBoolean } from "./expression.ts";

export interface ZooKeeperConfig {
  /** `zk.zkEnable`: with false, a broker never talks to ZooKeeper. */
  readonly enable: boolean;
  /** `zk.zkConnect`: `host:port[,host:port...][/chroot]`; empty means no ZooKeeper. */
  readonly connect: string;
  /** `zk.zkRoot`, normalized as MetaZookeeper does: a leading `/`, no trailing one. */
  readonly root: string;
  readonly sessionTimeoutMs: number;
  readonly connectionTimeoutMs: number;
  /** `zk.zkSyncTimeMs`: how far a ZooKeeper follower may lag; a consumer's rebalance backoff. */
  readonly syncTimeMs: number;
}

export const DEFAULT_ZOOKEEPER: ZooKeeperConfig = Object.freeze({
  enable: true,
  connect: "",
  root: "/meta",
  sessionTimeoutMs: 30000,
  connectionTimeoutMs: 30000,
  syncTimeMs: 5000,
});

export const ZOOKEEPER_KEYS = [
  "zk.zkEnable",
  "zk.zkConnect",
  "zk.zkRoot",
  "zk.zkSessionTimeoutMs",
  "zk.zkConnectionTimeoutMs",
  "zk.zkSyncTimeMs",
] as const;
export type ZooKeeperKey = (typeof ZOOKEEPER_KEYS)[number];

/** Thrown for a value that cannot be used; the caller adds where it came from. */
export class ZooKeeperConfigError extends Error {
  override readonly name = "ZooKeeperConfigError";
}

/** Applies `values` (key -> raw text, later wins) over `base` (the defaults). */
export function buildZooKeeperConfig(
  values: Iterable<readonly [ZooKeeperKey, string]>,
  base: ZooKeeperConfig = DEFAULT_ZOOKEEPER,
): ZooKeeperConfig {
  const config: { -readonly [K in keyof ZooKeeperConfig]: ZooKeeperConfig[K] } = { ...base };
  for (const [key, raw] of values) {
    const value = raw.trim();
    if (value === "") continue; // MetaQ: StringUtils.isBlank means "keep the default"
    switch (key) {
      case "zk.zkEnable":
        config.enable = parse(key, raw, () => parseBoolean(value));
        break;
      case "zk.zkConnect":
        config.connect = value;
        break;
      case "zk.zkRoot":
        config.root = normalizeRoot(value);
        break;
      case "zk.zkSessionTimeoutMs":
        config.sessionTimeoutMs = milliseconds(key, raw);
        break;
      case "zk.zkConnectionTimeoutMs":
        config.connectionTimeoutMs = milliseconds(key, raw);
        break;
      case "zk.zkSyncTimeMs":
        config.syncTimeMs = milliseconds(key, raw);
        break;
    }
  }
  return Object.freeze(config);
}

/** True when a broker or client with this config registers in / reads from ZooKeeper. */
export function zooKeeperEnabled(config: ZooKeeperConfig): boolean {
  return config.enable && config.connect !== "";
}

/** MetaZookeeper.normalize: `meta/` and `/meta/` both become `/meta`. */
export function normalizeRoot(root: string): string {
  const trimmed = root.endsWith("/") ? root.slice(0, -1) : root;
  return trimmed.startsWith("/") ? trimmed : `/${trimmed}`;
}

function milliseconds(key: string, raw: string): number {
  const value = parse(key, raw, () => evaluateInteger(raw));
  if (value < 1 || value > 2 ** 31 - 1) {
    throw new ZooKeeperConfigError(
      `Cannot use ${key}=${raw}: must be between 1 and ${2 ** 31 - 1}`,
    );
  }
  return value;
}

function parse<T>(key: string, raw: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    throw new ZooKeeperConfigError(`Cannot use ${key}=${raw}: ${(error as Error).message}`);
  }
}

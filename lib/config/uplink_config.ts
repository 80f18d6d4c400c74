/**
 * @module The `[uplink]` section of server.ini (and `metaq serve --uplink`): which topics an
 * edge broker forwards to a central hub, under which names, how it reaches the hub, and what it
 * may drop when the hub stays away too long. Pure: entries in, a frozen UplinkConfig out, or a
 * ConfigError naming the key. Reading the token and CA files is the uplink's business at start.
 */
import { evaluateInteger, parseBoolean } from "./expression.ts";
import { TOPIC_NAME_BYTES_MAX, UPLINK_BATCH_BYTES_MAX } from "../limits.ts";

export class UplinkConfigError extends Error {
  override readonly name = "UplinkConfigError";
}

export interface UplinkConfig {
  /** Hub brokers as `host:port`; the first reachable one is used, the others on failure. */
  readonly hubs: readonly string[];
  /** MetaQ topic patterns (`*` wildcard) of the topics that go up; internal topics never do. */
  readonly topics: readonly string[];
  /** Put in front of the topic's name at the hub (`site-17.` sends `orders` to `site-17.orders`). */
  readonly prefix: string;
  /** Each message goes to the same partition number at the hub (else one chosen per source partition). */
  readonly keepPartition: boolean;
  /** This edge's name in every origin; empty: one generated at first start and kept. */
  readonly site: string;
  /** Credentials at the hub (its `[user=...]`); empty user: the hub has authentication off. */
  readonly user: string;
  readonly token: string;
  readonly tokenFile: string;
  /** Speak TLS to the hub, trusting `tlsCaFile` (default: the runtime's roots). */
  readonly tls: boolean;
  readonly tlsCaFile: string;
  /** Name the hub's certificate must be valid for (default: the host dialed). */
  readonly tlsServerName: string;
  /** Largest batch one request carries (also bounded by what the hub says it takes). */
  readonly batchBytes: number;
  /** Batch bytes read and not yet acknowledged, over all partitions together. */
  readonly maxInFlightBytes: number;
  /** Bytes a partition may hold that the hub has not acknowledged; beyond: the oldest are dropped. 0: no cap. */
  readonly maxBacklogBytes: number;
  /** Age of the oldest message not acknowledged; beyond: dropped. 0: no cap. */
  readonly maxBacklogAgeMs: number;
  /** A request to the hub unanswered this long counts as a broken link. */
  readonly requestTimeoutMs: number;
  /** Reconnection back-off: first delay and cap (each draw is uniform below the doubling bound). */
  readonly retryMinMs: number;
  readonly retryMaxMs: number;
}

export const UPLINK_DEFAULTS: Omit<UplinkConfig, "hubs"> = Object.freeze({
  topics: Object.freeze(["*"]),
  prefix: "",
  keepPartition: true,
  site: "",
  user: "",
  token: "",
  tokenFile: "",
  tls: false,
  tlsCaFile: "",
  tlsServerName: "",
  batchBytes: 4 * 1024 * 1024,
  maxInFlightBytes: 16 * 1024 * 1024,
  maxBacklogBytes: 0,
  maxBacklogAgeMs: 0,
  requestTimeoutMs: 10_000,
  retryMinMs: 100,
  retryMaxMs: 30_000,
});

export const UPLINK_KEYS: readonly string[] = ["hubs", ...Object.keys(UPLINK_DEFAULTS)];

const SITE = /^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$/;
const PREFIX = /^([A-Za-z0-9_][A-Za-z0-9_.\-]*)?$/;
const PATTERN = /^[A-Za-z0-9_.\-*]+$/;

/**
 * Builds the section from its `key=value` entries (later ones win). `hubs` may be missing here:
 * `--uplink` can give it (uplinkWithHubs); the uplink refuses to start without one.
 */
export function buildUplinkConfig(entries: ReadonlyMap<string, string>): UplinkConfig {
  const hubs = list(entries.get("hubs") ?? "");
  for (const hub of hubs) checkAddress(hub);
  const config: Record<string, unknown> = { ...UPLINK_DEFAULTS, hubs: Object.freeze(hubs) };
  for (const [key, value] of entries) {
    if (key === "hubs") continue;
    config[key] = parseValue(key, value);
  }
  const built = config as unknown as UplinkConfig;
  checkRelations(built);
  return Object.freeze(built);
}

/** `section` (or the defaults) with the hubs of `metaq serve --uplink host:port[,...]`. */
export function uplinkWithHubs(section: UplinkConfig | undefined, hubsText: string): UplinkConfig {
  const hubs = list(hubsText);
  if (hubs.length === 0) {
    throw new UplinkConfigError("Cannot use --uplink: expected host:port[,...]");
  }
  for (const hub of hubs) checkAddress(hub);
  return Object.freeze({ ...(section ?? UPLINK_DEFAULTS), hubs: Object.freeze(hubs) });
}

function parseValue(key: string, value: string): unknown {
  const fail = (why: string) =>
    new UplinkConfigError(`Cannot use [uplink] ${key}=${value}: ${why}`);
  const integer = (min: number, max: number) => {
    let number: number;
    try {
      number = evaluateInteger(value);
    } catch (error) {
      throw fail((error as Error).message);
    }
    if (number < min || number > max) throw fail(`must be between ${min} and ${max}`);
    return number;
  };
  switch (key) {
    case "topics": {
      const patterns = list(value);
      if (patterns.length === 0 || patterns.some((pattern) => !PATTERN.test(pattern))) {
        throw fail(
          "expected topic patterns (letters, digits, '_', '.', '-', '*'), comma-separated",
        );
      }
      return Object.freeze(patterns);
    }
    case "prefix":
      if (!PREFIX.test(value) || value.length > TOPIC_NAME_BYTES_MAX / 2) {
        throw fail(
          "a prefix is letters, digits, '_', '.', '-', at most 100, not starting with . or -",
        );
      }
      return value;
    case "site":
      if (value !== "" && !SITE.test(value)) {
        throw fail("a site is 1-64 letters, digits, '_', '.', '-', not starting with . or -");
      }
      return value;
    case "keepPartition":
    case "tls":
      try {
        return parseBoolean(value);
      } catch (error) {
        throw fail((error as Error).message);
      }
    case "user":
    case "token":
    case "tokenFile":
    case "tlsCaFile":
    case "tlsServerName":
      return value;
    case "batchBytes":
      return integer(1024, UPLINK_BATCH_BYTES_MAX);
    case "maxInFlightBytes":
      return integer(1024, 1024 * 1024 * 1024);
    case "maxBacklogBytes":
      return integer(0, Number.MAX_SAFE_INTEGER);
    case "maxBacklogAgeMs":
    case "requestTimeoutMs":
    case "retryMinMs":
    case "retryMaxMs":
      return integer(key === "requestTimeoutMs" ? 100 : key === "maxBacklogAgeMs" ? 0 : 1, 2 ** 31);
    default:
      throw new UplinkConfigError(`Cannot use unknown key '${key}' in [uplink]`);
  }
}

function checkRelations(config: UplinkConfig): void {
  if (config.token !== "" && config.tokenFile !== "") {
    throw new UplinkConfigError("Cannot use [uplink]: give token= or tokenFile=, not both");
  }
  const hasToken = config.token !== "" || config.tokenFile !== "";
  if ((config.user !== "") !== hasToken) {
    throw new UplinkConfigError(
      "Cannot use [uplink]: give user= together with token= or tokenFile=",
    );
  }
  if (!config.tls && (config.tlsCaFile !== "" || config.tlsServerName !== "")) {
    throw new UplinkConfigError("Cannot use [uplink] tlsCaFile or tlsServerName without tls=true");
  }
  if (config.retryMinMs > config.retryMaxMs) {
    throw new UplinkConfigError("Cannot use [uplink]: retryMinMs is above retryMaxMs");
  }
  if (config.batchBytes > config.maxInFlightBytes) {
    throw new UplinkConfigError("Cannot use [uplink]: batchBytes is above maxInFlightBytes");
  }
}

function checkAddress(address: string): void {
  const colon = address.lastIndexOf(":");
  const port = Number(address.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UplinkConfigError(`Cannot use hub address '${address}': expected host:port`);
  }
}

function list(text: string): string[] {
  return text.split(",").map((part) => part.trim()).filter(Boolean);
}

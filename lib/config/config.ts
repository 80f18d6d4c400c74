/**
 * @module The broker's configuration: MetaQ's server.ini keys (sections `[system]`,
 * `[zookeeper]` and `[topic=<pattern>]`) plus metaq's own, their defaults, and how a topic's
 * effective settings are resolved. Pure: `buildConfig(fileText, overrides)` returns a frozen
 * Config or throws ConfigError; reading the file is the caller's business (load.ts).
 */
import {
  AUTH_FAILURES_MAX,
  BROKER_ID_MAX,
  COMMAND_LINE_BYTES_MAX,
  COMMAND_LINE_BYTES_MIN,
  CONNECTIONS_MAX,
  CONNECTIONS_PER_IP_MAX,
  FRAME_TIMEOUT_MS,
  IDLE_TIMEOUT_MS,
  MESSAGE_BYTES_LIMIT_MAX,
  MESSAGE_BYTES_MAX,
  META_SEGMENT_BYTES_DEFAULT,
  OUTPUT_BYTES_PER_CONNECTION_MAX,
  PARTITIONS_MAX,
  PARTITIONS_PER_TOPIC_MAX,
  PENDING_REQUESTS_PER_CONNECTION_MAX,
  RECORD_HEADER_BYTES,
  SEGMENT_BYTES_DEFAULT,
  SEGMENT_BYTES_MIN,
  TOPICS_MAX,
  TRANSFER_BYTES_DEFAULT,
  TRANSFER_BYTES_LIMIT_MAX,
} from "../limits.ts";
import { type CronSchedule, parseCron } from "./cron.ts";
import { evaluateInteger, parseBoolean } from "./expression.ts";
import { parseIni } from "./ini.ts";
import { type DeletePolicy, parseDeletePolicy } from "./retention_policy.ts";
import {
  buildZooKeeperConfig,
  ZOOKEEPER_KEYS,
  type ZooKeeperConfig,
  ZooKeeperConfigError,
  type ZooKeeperKey,
} from "./zookeeper_config.ts";
import { buildUplinkConfig, UPLINK_KEYS, type UplinkConfig } from "./uplink_config.ts";
import { nodeCrypto } from "../runtime/node_crypto.ts";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

export interface SystemConfig {
  readonly brokerId: number;
  /** Address the client port binds to (metaq; MetaQ bound every interface). */
  readonly host: string;
  readonly serverPort: number;
  readonly dashboardHttpPort: number;
  /** Serve the HTTP API and dashboard (metaq). */
  readonly httpEnabled: boolean;
  /** Host advertised to clients; empty means the bind host. */
  readonly hostName: string;
  readonly numPartitions: number;
  readonly dataPath: string;
  readonly dataLogPath: string;
  readonly unflushThreshold: number;
  readonly unflushInterval: number;
  readonly maxSegmentSize: number;
  readonly maxTransferSize: number;
  /** Largest message data a put may carry (metaq). */
  readonly maxMessageSize: number;
  readonly getProcessThreadCount: number;
  readonly putProcessThreadCount: number;
  readonly deletePolicy: DeletePolicy;
  readonly deleteWhen: CronSchedule;
  readonly quartzThreadCount: number;
  readonly maxCheckpoints: number;
  readonly checkpointInterval: number;
  readonly maxTxTimeoutTimerCapacity: number;
  readonly maxTxTimeoutInSeconds: number;
  readonly flushTxLogAtCommit: number;
  readonly acceptPublish: boolean;
  readonly acceptSubscribe: boolean;
  readonly stat: boolean;
  readonly updateConsumerOffsets: boolean;
  readonly loadMessageStoresInParallel: boolean;
  readonly appClassPath: string;
  /** Consumer-group session timeout in ms (metaq). */
  readonly groupSessionTimeoutMs: number;
  /** Cluster (metaq): this node's id; 0 with no peers means a cluster of one. */
  readonly nodeId: number;
  /** Cluster: port for traffic between nodes. */
  readonly peerPort: number;
  /** Cluster: every voter as `id=host:port` (peer ports), comma-separated; empty = no cluster. */
  readonly peers: string;
  /**
   * Cluster: `host:port` (peer port) of a member of an existing cluster this node joins with an
   * empty data directory; it waits to be added (`metaq cluster add`). Empty: not joining.
   */
  readonly join: string;
  /** Cluster: copies of each partition (1, 3 or 5). */
  readonly replicas: number;
  /** Cluster: `quorum` (ack when a majority stored it) or `leader` (ack when the leader did). */
  readonly ack: string;
  /** Cluster: `always` (fsync before counting an ack) or `interval:<ms>`. */
  readonly fsync: string;
  readonly raftHeartbeatMs: number;
  /** Election timeout range `<min>-<max>` in ms, randomized per attempt. */
  readonly raftElectionMs: string;
  readonly raftCheckQuorumMs: number;
  /** Cluster: segment size of `__meta-0`; a snapshot of group offsets every quarter of it. */
  readonly metaSegmentSize: number;
  /** Limits (metaq): client connections at once, in total and from one IP address. */
  readonly maxConnections: number;
  readonly maxConnectionsPerIp: number;
  /** Requests read from one connection and not yet answered; beyond it reading pauses. */
  readonly maxPendingRequests: number;
  /** Reply bytes buffered for one connection; beyond it reading pauses. */
  readonly maxConnectionBufferBytes: number;
  /** Longest command line accepted (CRLF included); longer closes the connection. */
  readonly maxCommandLineBytes: number;
  /** Close a client connection silent this long with nothing pending; 0 = never. */
  readonly idleTimeoutMs: number;
  /** Close a connection that leaves a frame (or a TLS handshake) unfinished this long; 0 = never. */
  readonly frameTimeoutMs: number;
  /** Topics and partitions (all topics together) this broker holds at most. */
  readonly maxTopics: number;
  readonly maxPartitions: number;
  /** Failed `auth` attempts or unauthenticated commands before the connection is closed. */
  readonly maxAuthFailures: number;
  /** TLS (metaq): PEM certificate chain and private key; both empty = no TLS. */
  readonly tlsCertFile: string;
  readonly tlsKeyFile: string;
  /** PEM CA that peer certificates must chain to; empty = the certificate itself. */
  readonly tlsCaFile: string;
  /** Which ports speak TLS when a certificate is set: any of client, http, peer. */
  readonly tlsPorts: string;
  /** Cluster: shared secret every node proves (HMAC over a challenge) on every peer link. */
  readonly clusterSecret: string;
  /** Cluster: file holding the secret instead (first line). */
  readonly clusterSecretFile: string;
  /**
   * The MetaQ broker id registered in ZooKeeper (metaq); -1 means brokerId. The nodes of one
   * cluster set the same value so the cluster appears as one MetaQ broker (docs/zookeeper.md),
   * while each keeps its own brokerId for message ids.
   */
  readonly zkBrokerId: number;
}

/** A `[user=<name>]` section: who may authenticate and what they may do. */
export interface UserSection {
  readonly name: string;
  /** SHA-256 of the token (from `token=` or `tokenSha256=`); never the token itself. */
  readonly tokenSha256: Uint8Array;
  /** Topic patterns (MetaQ's `*` wildcard) this user may put to. */
  readonly produce: readonly string[];
  /** Topic patterns this user may get, offset and consume in groups from. */
  readonly consume: readonly string[];
  /** Stats reset, group resets, transaction heuristics, cluster commands, topic creation. */
  readonly admin: boolean;
}

/** A `[topic=<pattern>]` section. Unset fields inherit from `[system]`. */
export interface TopicSection {
  readonly pattern: string;
  readonly matcher: RegExp;
  readonly numPartitions?: number;
  readonly stat?: boolean;
  readonly deletePolicy?: DeletePolicy;
  readonly deleteWhen?: CronSchedule;
  readonly dataPath?: string;
  readonly unflushInterval?: number;
  readonly unflushThreshold?: number;
  readonly acceptPublish?: boolean;
  readonly acceptSubscribe?: boolean;
  /** `group.<name>=<filter>` entries: server-side filters per consumer group. */
  readonly groupFilters: ReadonlyMap<string, string>;
}

/** A topic's effective settings after inheritance. */
export interface TopicSettings {
  readonly topic: string;
  readonly numPartitions: number;
  readonly stat: boolean;
  readonly deletePolicy: DeletePolicy;
  readonly deleteWhen: CronSchedule;
  readonly dataPath: string;
  readonly unflushInterval: number;
  readonly unflushThreshold: number;
  readonly acceptPublish: boolean;
  readonly acceptSubscribe: boolean;
  readonly groupFilters: ReadonlyMap<string, string>;
}

export interface Config {
  readonly system: SystemConfig;
  readonly topics: readonly TopicSection[];
  /** `[user=<name>]` sections; empty means authentication is off. */
  readonly users: readonly UserSection[];
  /** `[zookeeper]`: where this broker registers as a MetaQ broker (off without zk.zkConnect). */
  readonly zookeeper: ZooKeeperConfig;
  /** `[uplink]`: forward topics to a hub (docs/uplink.md); absent when there is none. */
  readonly uplink?: UplinkConfig;
  /** The config file as read, for `stats config` and `config_checksum`. */
  readonly fileText?: string;
  readonly filePath?: string;
}

type Parse<T> = (raw: string, key: string) => T;

const integer = (min: number, max = Number.MAX_SAFE_INTEGER): Parse<number> => (raw, key) => {
  const value = wrap(key, () => evaluateInteger(raw));
  if (value < min || value > max) {
    throw new ConfigError(`Cannot use ${key}=${raw}: must be between ${min} and ${max}`);
  }
  return value;
};
const boolean: Parse<boolean> = (raw, key) => wrap(key, () => parseBoolean(raw));
const text: Parse<string> = (raw) => raw;
const policy: Parse<DeletePolicy> = (raw, key) => wrap(key, () => parseDeletePolicy(raw));
const cron: Parse<CronSchedule> = (raw, key) => wrap(key, () => parseCron(raw));

const SYSTEM_KEYS: { readonly [K in keyof SystemConfig]: Parse<SystemConfig[K]> } = {
  brokerId: integer(0, BROKER_ID_MAX),
  host: text,
  serverPort: integer(0, 65535),
  dashboardHttpPort: integer(0, 65535),
  httpEnabled: boolean,
  hostName: text,
  numPartitions: integer(1, PARTITIONS_PER_TOPIC_MAX),
  dataPath: text,
  dataLogPath: text,
  unflushThreshold: integer(-2147483648, 2147483647),
  unflushInterval: integer(1),
  maxSegmentSize: integer(SEGMENT_BYTES_MIN, 2 ** 40),
  maxTransferSize: integer(1024, TRANSFER_BYTES_LIMIT_MAX),
  maxMessageSize: integer(1, MESSAGE_BYTES_LIMIT_MAX),
  getProcessThreadCount: integer(1),
  putProcessThreadCount: integer(1),
  deletePolicy: policy,
  deleteWhen: cron,
  quartzThreadCount: integer(1),
  maxCheckpoints: integer(1),
  checkpointInterval: integer(1),
  maxTxTimeoutTimerCapacity: integer(1),
  maxTxTimeoutInSeconds: integer(0),
  flushTxLogAtCommit: integer(0, 2),
  acceptPublish: boolean,
  acceptSubscribe: boolean,
  stat: boolean,
  updateConsumerOffsets: boolean,
  loadMessageStoresInParallel: boolean,
  appClassPath: text,
  groupSessionTimeoutMs: integer(100, 3_600_000),
  nodeId: integer(0, 1023),
  peerPort: integer(0, 65535),
  peers: text,
  join: text,
  replicas: integer(1, 7),
  ack: text,
  fsync: text,
  raftHeartbeatMs: integer(10, 10_000),
  raftElectionMs: text,
  raftCheckQuorumMs: integer(10, 60_000),
  metaSegmentSize: integer(SEGMENT_BYTES_MIN, 1024 * 1024 * 1024),
  maxConnections: integer(1, 1_000_000),
  maxConnectionsPerIp: integer(1, 1_000_000),
  maxPendingRequests: integer(1, 1_000_000),
  maxConnectionBufferBytes: integer(64 * 1024, 2 ** 31),
  maxCommandLineBytes: integer(COMMAND_LINE_BYTES_MIN, 1024 * 1024),
  idleTimeoutMs: integer(0, 2 ** 31),
  frameTimeoutMs: integer(0, 2 ** 31),
  maxTopics: integer(1, 10_000_000),
  maxPartitions: integer(1, 10_000_000),
  maxAuthFailures: integer(1, 1000),
  tlsCertFile: text,
  tlsKeyFile: text,
  tlsCaFile: text,
  tlsPorts: text,
  clusterSecret: text,
  clusterSecretFile: text,
  zkBrokerId: integer(-1, BROKER_ID_MAX),
};

type TopicKey = Exclude<keyof TopicSection, "pattern" | "matcher" | "groupFilters">;
const TOPIC_KEYS: { readonly [K in TopicKey]-?: Parse<NonNullable<TopicSection[K]>> } = {
  numPartitions: integer(1, PARTITIONS_PER_TOPIC_MAX),
  stat: boolean,
  deletePolicy: policy,
  deleteWhen: cron,
  dataPath: text,
  unflushInterval: integer(1),
  unflushThreshold: integer(-2147483648, 2147483647),
  acceptPublish: boolean,
  acceptSubscribe: boolean,
};

export const DEFAULT_SYSTEM: SystemConfig = Object.freeze({
  brokerId: 0,
  host: "127.0.0.1",
  serverPort: 8123,
  dashboardHttpPort: 8120,
  httpEnabled: true,
  hostName: "",
  numPartitions: 1,
  dataPath: "./data",
  dataLogPath: "",
  unflushThreshold: 0,
  unflushInterval: 10000,
  maxSegmentSize: SEGMENT_BYTES_DEFAULT,
  maxTransferSize: TRANSFER_BYTES_DEFAULT,
  maxMessageSize: MESSAGE_BYTES_MAX,
  getProcessThreadCount: 20,
  putProcessThreadCount: 20,
  deletePolicy: parseDeletePolicy("delete,168"),
  deleteWhen: parseCron("0 0 6,18 * * ?"),
  quartzThreadCount: 5,
  maxCheckpoints: 3,
  checkpointInterval: 3600000,
  maxTxTimeoutTimerCapacity: 30000,
  maxTxTimeoutInSeconds: 60,
  flushTxLogAtCommit: 1,
  acceptPublish: true,
  acceptSubscribe: true,
  stat: false,
  updateConsumerOffsets: false,
  loadMessageStoresInParallel: false,
  appClassPath: "",
  groupSessionTimeoutMs: 10000,
  nodeId: 0,
  peerPort: 8124,
  peers: "",
  join: "",
  replicas: 3,
  ack: "quorum",
  fsync: "always",
  raftHeartbeatMs: 150,
  raftElectionMs: "1000-2000",
  raftCheckQuorumMs: 900,
  metaSegmentSize: META_SEGMENT_BYTES_DEFAULT,
  maxConnections: CONNECTIONS_MAX,
  maxConnectionsPerIp: CONNECTIONS_PER_IP_MAX,
  maxPendingRequests: PENDING_REQUESTS_PER_CONNECTION_MAX,
  maxConnectionBufferBytes: OUTPUT_BYTES_PER_CONNECTION_MAX,
  maxCommandLineBytes: COMMAND_LINE_BYTES_MAX,
  idleTimeoutMs: IDLE_TIMEOUT_MS,
  frameTimeoutMs: FRAME_TIMEOUT_MS,
  maxTopics: TOPICS_MAX,
  maxPartitions: PARTITIONS_MAX,
  maxAuthFailures: AUTH_FAILURES_MAX,
  tlsCertFile: "",
  tlsKeyFile: "",
  tlsCaFile: "",
  tlsPorts: "client,http,peer",
  clusterSecret: "",
  clusterSecretFile: "",
  zkBrokerId: -1,
});

export interface ConfigInput {
  /** Text of a server.ini file, if one was given. */
  readonly fileText?: string;
  readonly filePath?: string;
  /** `[system]` values from the command line, as text; they win over the file. */
  readonly overrides?: Readonly<Record<string, string>>;
}

/** Builds and validates a Config. Throws ConfigError naming the key (and line) at fault. */
export function buildConfig(input: ConfigInput): Config {
  const raw: Record<string, string> = {};
  const topics: TopicSection[] = [];
  const users: UserSection[] = [];
  const zookeeper: [ZooKeeperKey, string][] = [];
  let uplink: Map<string, string> | undefined;
  if (input.fileText !== undefined) {
    for (const section of wrapIni(input.fileText)) {
      if (section.name === "system") {
        for (const entry of section.entries) {
          checkKnown(entry.key, Object.keys(SYSTEM_KEYS), `[system] line ${entry.line}`);
          raw[entry.key] = entry.value;
        }
      } else if (section.name === "zookeeper") {
        // MetaQ accepts its [system] keys here too (and ignores them there).
        const known = [...ZOOKEEPER_KEYS, ...Object.keys(SYSTEM_KEYS)];
        for (const entry of section.entries) {
          checkKnown(entry.key, known, `[zookeeper] line ${entry.line}`);
          if (entry.key.startsWith("zk.")) zookeeper.push([entry.key as ZooKeeperKey, entry.value]);
        }
      } else if (section.name.startsWith("topic=")) {
        topics.push(buildTopicSection(section.name.slice(6).trim(), section.entries));
      } else if (section.name.startsWith("user=")) {
        const user = buildUserSection(section.name.slice(5).trim(), section.entries);
        if (users.some((other) => other.name === user.name)) {
          throw new ConfigError(`Cannot use [user=${user.name}] twice (line ${section.line})`);
        }
        users.push(user);
      } else if (section.name === "uplink") {
        uplink ??= new Map();
        for (const entry of section.entries) {
          checkKnown(entry.key, UPLINK_KEYS, `[uplink] line ${entry.line}`);
          uplink.set(entry.key, entry.value);
        }
      } else {
        throw new ConfigError(
          `Cannot read section [${section.name}] at line ${section.line}: ` +
            "expected [system], [zookeeper], [topic=<name>], [user=<name>] or [uplink]",
        );
      }
    }
  }
  for (const [key, value] of Object.entries(input.overrides ?? {})) {
    checkKnown(key, Object.keys(SYSTEM_KEYS), "command line");
    raw[key] = value;
  }
  const system: Record<string, unknown> = { ...DEFAULT_SYSTEM };
  for (const [key, value] of Object.entries(raw)) {
    system[key] = SYSTEM_KEYS[key as keyof SystemConfig](value, key);
  }
  if (!system.dataLogPath) system.dataLogPath = system.dataPath;
  // A message must fit in one `value` reply with its header, or no consumer could ever read it.
  const transferable = (system.maxTransferSize as number) - RECORD_HEADER_BYTES;
  if (raw.maxMessageSize === undefined) {
    system.maxMessageSize = Math.min(MESSAGE_BYTES_MAX, transferable);
  } else if ((system.maxMessageSize as number) > transferable) {
    throw new ConfigError(
      `Cannot use maxMessageSize=${system.maxMessageSize}: a record must fit in maxTransferSize ` +
        `(${system.maxTransferSize}) with its ${RECORD_HEADER_BYTES}-byte header`,
    );
  }
  if (topics.length === 0) topics.push(buildTopicSection("*", []));
  checkSecurity(system as unknown as SystemConfig);
  return Object.freeze({
    system: Object.freeze(system as unknown as SystemConfig),
    topics: Object.freeze(topics),
    users: Object.freeze(users),
    zookeeper: wrapZooKeeper(() => buildZooKeeperConfig(zookeeper)),
    ...(uplink ? { uplink: uplinkSection(uplink) } : {}),
    fileText: input.fileText,
    filePath: input.filePath,
  });
}

/** `metaq serve`'s ZooKeeper flags, as text; each one unset keeps what the file says. */
export interface ZooKeeperFlags {
  readonly connect?: string;
  readonly root?: string;
  readonly sessionTimeoutMs?: string;
  /** `zkBrokerId` of `[system]`. */
  readonly brokerId?: string;
}

/** `config` with the command line's ZooKeeper flags over its file's values, checked as those. */
export function withZooKeeperFlags(config: Config, flags: ZooKeeperFlags): Config {
  const values: [ZooKeeperKey, string | undefined][] = [
    ["zk.zkConnect", flags.connect],
    ["zk.zkRoot", flags.root],
    ["zk.zkSessionTimeoutMs", flags.sessionTimeoutMs],
  ];
  const given = values.filter((entry): entry is [ZooKeeperKey, string] => entry[1] !== undefined);
  if (given.length === 0 && flags.brokerId === undefined) return config;
  const zookeeper = wrapZooKeeper(() => buildZooKeeperConfig(given, config.zookeeper));
  const system = flags.brokerId === undefined ? config.system : Object.freeze({
    ...config.system,
    zkBrokerId: SYSTEM_KEYS.zkBrokerId(flags.brokerId, "zkBrokerId"),
  });
  return Object.freeze({ ...config, system, zookeeper });
}

/**
 * The effective settings of `topic`, or undefined when no `[topic=...]` section accepts it.
 * An exact name wins over patterns; among patterns the first in the file wins.
 */
export function topicSettings(config: Config, topic: string): TopicSettings | undefined {
  const section = config.topics.find((candidate) => candidate.pattern === topic) ??
    config.topics.find((candidate) => candidate.matcher.test(topic));
  return section ? settingsOf(config, topic, section) : undefined;
}

/**
 * The settings of a topic no section accepts but an operator created (the topic catalogue,
 * lib/broker/topic_catalogue.ts): the `[system]` defaults.
 */
export function defaultTopicSettings(config: Config, topic: string): TopicSettings {
  return settingsOf(config, topic, undefined);
}

function settingsOf(
  config: Config,
  topic: string,
  section: TopicSection | undefined,
): TopicSettings {
  const system = config.system;
  return {
    topic,
    numPartitions: section?.numPartitions ?? system.numPartitions,
    stat: section?.stat ?? system.stat,
    deletePolicy: section?.deletePolicy ?? system.deletePolicy,
    deleteWhen: section?.deleteWhen ?? system.deleteWhen,
    dataPath: section?.dataPath ?? system.dataPath,
    unflushInterval: section?.unflushInterval ?? system.unflushInterval,
    unflushThreshold: section?.unflushThreshold ?? system.unflushThreshold,
    acceptPublish: section?.acceptPublish ?? system.acceptPublish,
    acceptSubscribe: section?.acceptSubscribe ?? system.acceptSubscribe,
    groupFilters: section?.groupFilters ?? new Map(),
  };
}

/** Every `[system]` key metaq understands, for help texts. */
export const SYSTEM_KEY_NAMES: readonly string[] = Object.keys(SYSTEM_KEYS);

function buildTopicSection(
  pattern: string,
  entries: readonly { key: string; value: string; line: number }[],
): TopicSection {
  if (pattern === "" || /[\s/\\]/.test(pattern)) {
    throw new ConfigError(`Cannot use topic section [topic=${pattern}]: invalid name`);
  }
  const section: Record<string, unknown> = { pattern, matcher: patternToRegExp(pattern) };
  const groupFilters = new Map<string, string>();
  for (const entry of entries) {
    if (entry.key.startsWith("group.")) {
      groupFilters.set(entry.key.slice(6), entry.value);
      continue;
    }
    checkKnown(entry.key, Object.keys(TOPIC_KEYS), `[topic=${pattern}] line ${entry.line}`);
    if (entry.value === "") continue; // MetaQ: blank means inherit
    section[entry.key] = TOPIC_KEYS[entry.key as TopicKey](entry.value, entry.key);
  }
  section.groupFilters = groupFilters;
  return Object.freeze(section as unknown as TopicSection);
}

const USER_KEYS = ["token", "tokenSha256", "produce", "consume", "admin"];

/**
 * A `[user=<name>]` section. The token is kept only as its SHA-256 digest, so a config loaded in
 * memory (or a file holding `tokenSha256=`) never gives the secret away.
 */
function buildUserSection(
  name: string,
  entries: readonly { key: string; value: string; line: number }[],
): UserSection {
  if (!/^[A-Za-z0-9_.@-]{1,64}$/.test(name)) {
    throw new ConfigError(
      `Cannot use user section [user=${name}]: a name is 1-64 letters, digits, '_', '.', '@', '-'`,
    );
  }
  const values = new Map<string, string>();
  for (const entry of entries) {
    checkKnown(entry.key, USER_KEYS, `[user=${name}] line ${entry.line}`);
    values.set(entry.key, entry.value);
  }
  const token = values.get("token");
  const digestHex = values.get("tokenSha256")?.toLowerCase();
  if ((token === undefined) === (digestHex === undefined)) {
    throw new ConfigError(`Cannot use [user=${name}]: give exactly one of token= or tokenSha256=`);
  }
  if (token !== undefined && !/^[\x21-\x7e]{16,256}$/.test(token)) {
    throw new ConfigError(
      `Cannot use the token of [user=${name}]: use 16-256 printable characters without spaces`,
    );
  }
  if (digestHex !== undefined && !/^[0-9a-f]{64}$/.test(digestHex)) {
    throw new ConfigError(`Cannot use tokenSha256 of [user=${name}]: expected 64 hex digits`);
  }
  const tokenSha256 = token !== undefined
    ? new Uint8Array(nodeCrypto().createHash("sha256").update(token).digest())
    : Uint8Array.from(digestHex!.match(/../g)!.map((pair) => parseInt(pair, 16)));
  const patterns = (key: string) =>
    (values.get(key) ?? "").split(",").map((part) => part.trim()).filter(Boolean);
  const admin = values.has("admin") ? boolean(values.get("admin")!, "admin") : false;
  return Object.freeze({
    name,
    tokenSha256,
    produce: Object.freeze(patterns("produce")),
    consume: Object.freeze(patterns("consume")),
    admin,
  });
}

/** TLS needs both files; a cluster secret comes from one place only. */
function checkSecurity(system: SystemConfig): void {
  if ((system.tlsCertFile === "") !== (system.tlsKeyFile === "")) {
    throw new ConfigError("Cannot use TLS: give both tlsCertFile and tlsKeyFile");
  }
  for (const port of system.tlsPorts.split(",").map((part) => part.trim()).filter(Boolean)) {
    if (!["client", "http", "peer"].includes(port)) {
      throw new ConfigError(
        `Cannot use tlsPorts=${system.tlsPorts}: '${port}' is not client, http or peer`,
      );
    }
  }
  if (system.clusterSecret !== "" && system.clusterSecretFile !== "") {
    throw new ConfigError("Cannot use both clusterSecret and clusterSecretFile");
  }
  if (system.clusterSecret !== "" && system.clusterSecret.length < 16) {
    throw new ConfigError("Cannot use clusterSecret: it must be at least 16 characters");
  }
}

/** Whether `topic` matches a MetaQ topic pattern (`*` matches any run of characters). */
export function topicMatches(pattern: string, topic: string): boolean {
  if (pattern === topic || pattern === "*") return true;
  if (!pattern.includes("*")) return false;
  let matcher = PATTERN_CACHE.get(pattern);
  if (!matcher) {
    if (PATTERN_CACHE.size >= 1024) PATTERN_CACHE.clear();
    PATTERN_CACHE.set(pattern, matcher = patternToRegExp(pattern));
  }
  return matcher.test(topic);
}

const PATTERN_CACHE = new Map<string, RegExp>();

/** MetaQ turns `*` into `.*` and matches the whole name; other characters are literal here. */
function patternToRegExp(pattern: string): RegExp {
  const escaped = pattern.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${escaped.join(".*")}$`);
}

function checkKnown(key: string, known: readonly string[], where: string): void {
  if (known.includes(key)) return;
  const suggestion = closest(key, known);
  const hint = suggestion ? ` (did you mean '${suggestion}'?)` : "";
  throw new ConfigError(`Cannot use unknown key '${key}' in ${where}${hint}`);
}

function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j] + 1, current[j - 1] + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length];
}

function wrapZooKeeper<T>(build: () => T): T {
  try {
    return build();
  } catch (error) {
    if (error instanceof ZooKeeperConfigError) throw new ConfigError(error.message);
    throw error;
  }
}

function wrap<T>(key: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new ConfigError(`Cannot use ${key}: ${(error as Error).message}`);
  }
}

function uplinkSection(entries: ReadonlyMap<string, string>): UplinkConfig {
  try {
    return buildUplinkConfig(entries);
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
}

function wrapIni(text: string) {
  try {
    return parseIni(text);
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
}

/**
 * @module The cluster part of the configuration, parsed and checked: who the voters are, how
 * many copies a partition has, when a put is acknowledged, and Raft's timing. Pure: reads the
 * `[system]` keys of a Config, throws ConfigError with the key at fault.
 */
import { type Config, ConfigError } from "../config/config.ts";

export interface PeerAddress {
  readonly id: number;
  readonly host: string;
  readonly port: number;
}

export type AckMode = "quorum" | "leader";
export type FsyncMode = { readonly kind: "always" } | {
  readonly kind: "interval";
  readonly intervalMs: number;
};

export interface ClusterSettings {
  readonly nodeId: number;
  /**
   * The seed members, this node included, sorted by id: `--peers` (only this node when
   * joining). Once the cluster's metadata is applied, its members replace them.
   */
  readonly peers: readonly PeerAddress[];
  /** `host:port` of a member of the cluster this node joins (empty data directory). */
  readonly join?: string;
  readonly replicas: number;
  readonly ack: AckMode;
  readonly fsync: FsyncMode;
  readonly heartbeatMs: number;
  readonly electionMinMs: number;
  readonly electionMaxMs: number;
  readonly checkQuorumMs: number;
}

/** The cluster settings, or undefined when `peers` is empty (a cluster of one, as before). */
export function clusterSettings(config: Config): ClusterSettings | undefined {
  const system = config.system;
  const join = system.join.trim();
  if (system.peers.trim() === "" && join === "") return undefined;
  if (join !== "" && system.peers.trim() !== "") {
    throw new ConfigError(
      "Cannot use both peers and join: peers seeds a new cluster, join enters one",
    );
  }
  if (join !== "" && !/^.+:\d{1,5}$/.test(join)) {
    throw new ConfigError(`Cannot use join=${join}: expected <host>:<peer port>`);
  }
  if (join !== "" && system.nodeId < 1) {
    throw new ConfigError("Cannot join a cluster without a nodeId (1-1023)");
  }
  const host = system.host === "0.0.0.0" ? "127.0.0.1" : system.host;
  const peers = join !== ""
    ? [{ id: system.nodeId, host, port: system.peerPort }]
    : parsePeers(system.peers);
  const self = peers.find((peer) => peer.id === system.nodeId);
  if (!self) {
    throw new ConfigError(
      `Cannot use nodeId=${system.nodeId}: it is not one of the peers (${system.peers})`,
    );
  }
  const [electionMinMs, electionMaxMs] = parseRange("raftElectionMs", system.raftElectionMs);
  const settings: ClusterSettings = {
    nodeId: system.nodeId,
    peers,
    ...(join !== "" ? { join } : {}),
    replicas: Math.min(system.replicas, peers.length),
    ack: parseAck(system.ack),
    fsync: parseFsync(system.fsync),
    heartbeatMs: system.raftHeartbeatMs,
    electionMinMs,
    electionMaxMs,
    checkQuorumMs: system.raftCheckQuorumMs,
  };
  checkRelations(settings, system.replicas);
  return settings;
}

export function parsePeers(text: string): PeerAddress[] {
  const peers: PeerAddress[] = [];
  for (const entry of text.split(",").map((part) => part.trim()).filter(Boolean)) {
    const match = /^(\d+)=(.+):(\d{1,5})$/.exec(entry);
    if (!match) throw new ConfigError(`Cannot parse peer '${entry}': expected <id>=<host>:<port>`);
    const [id, host, port] = [Number(match[1]), match[2], Number(match[3])];
    if (id < 1 || id > 1023) {
      throw new ConfigError(`Cannot use peer id ${id}: must be between 1 and 1023`);
    }
    if (port < 1 || port > 65535) {
      throw new ConfigError(`Cannot use peer port ${port} of node ${id}`);
    }
    if (peers.some((peer) => peer.id === id)) {
      throw new ConfigError(`Cannot list node ${id} twice in peers`);
    }
    peers.push({ id, host, port });
  }
  if (peers.length === 0) throw new ConfigError("Cannot use an empty peers list");
  return peers.sort((a, b) => a.id - b.id);
}

export function parseAck(text: string): AckMode {
  if (text === "quorum" || text === "leader") return text;
  throw new ConfigError(`Cannot use ack=${text}: expected quorum or leader`);
}

export function parseFsync(text: string): FsyncMode {
  if (text === "always") return { kind: "always" };
  const match = /^interval:(\d+)$/.exec(text);
  if (match && Number(match[1]) > 0) return { kind: "interval", intervalMs: Number(match[1]) };
  throw new ConfigError(`Cannot use fsync=${text}: expected always or interval:<ms>`);
}

function parseRange(key: string, text: string): [number, number] {
  const match = /^(\d+)-(\d+)$/.exec(text.trim());
  if (!match || Number(match[1]) <= 0 || Number(match[1]) > Number(match[2])) {
    throw new ConfigError(`Cannot use ${key}=${text}: expected <min>-<max> in ms, min <= max`);
  }
  return [Number(match[1]), Number(match[2])];
}

function checkRelations(settings: ClusterSettings, requestedReplicas: number): void {
  if (requestedReplicas % 2 === 0) {
    throw new ConfigError(
      `Cannot use replicas=${requestedReplicas}: use an odd number (1, 3 or 5) so a majority is well defined`,
    );
  }
  if (settings.checkQuorumMs >= settings.electionMinMs) {
    // A deposed leader must give up before anyone else can be elected (replication.md 2.6).
    throw new ConfigError(
      `Cannot use raftCheckQuorumMs=${settings.checkQuorumMs}: it must be below the minimum election timeout ${settings.electionMinMs}`,
    );
  }
  if (settings.heartbeatMs * 2 > settings.checkQuorumMs) {
    throw new ConfigError(
      `Cannot use raftHeartbeatMs=${settings.heartbeatMs}: it must be at most half of raftCheckQuorumMs`,
    );
  }
}

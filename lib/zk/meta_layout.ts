/**
 * @module MetaQ's layout in ZooKeeper (shared/spec/zookeeper-layout.md): every path and every
 * node's data exactly as the original broker and Java client write them. Pure: names and text in,
 * names and text out. Who writes them when is registrar.ts (brokers) and lib/client (consumers).
 *
 * ```text
 * <root>/brokers/ids/<id>                         persistent; data meta://host:port (old clients)
 * <root>/brokers/ids/<id>/master | slave<n>       ephemeral; meta://host:port
 * <root>/brokers/ids/<id>/master_config_checksum  ephemeral; CRC32 of server.ini, decimal
 * <root>/brokers/topics/<topic>/<id>-m | -s<n>    ephemeral; numPartitions, decimal (old)
 * <root>/brokers/topics-pub/<topic>/<id>-m|-s<n>  ephemeral; {"numParts":N,"broker":"<id>-m"}
 * <root>/brokers/topics-sub/<topic>/<id>-m|-s<n>  ephemeral; same JSON
 * <root>/consumers/<group>/ids/<consumerId>       ephemeral; topics, comma-joined
 * <root>/consumers/<group>/owners/<topic>/<b>-<p> ephemeral; the owner's consumerId
 * <root>/consumers/<group>/offsets/<topic>/<b>-<p> persistent; <msgId>-<offset>
 * ```
 */

/** A broker's role under its MetaQ broker id: the master, or slave number `slaveId` (>= 0). */
export type BrokerRole = { readonly kind: "master" } | {
  readonly kind: "slave";
  readonly slaveId: number;
};

export const MASTER: BrokerRole = Object.freeze({ kind: "master" });

export class MetaLayout {
  readonly root: string;
  readonly consumers: string;
  readonly brokerIds: string;
  /** Deprecated since MetaQ 1.4.3, still written for Python/Ruby producers and old clients. */
  readonly brokerTopics: string;
  readonly brokerTopicsPub: string;
  readonly brokerTopicsSub: string;

  constructor(root = "/meta") {
    this.root = root;
    this.consumers = `${root}/consumers`;
    this.brokerIds = `${root}/brokers/ids`;
    this.brokerTopics = `${root}/brokers/topics`;
    this.brokerTopicsPub = `${root}/brokers/topics-pub`;
    this.brokerTopicsSub = `${root}/brokers/topics-sub`;
  }

  /** `ids/<id>`: the persistent parent that old clients read the master's address from. */
  brokerIdPath(brokerId: number): string {
    return `${this.brokerIds}/${brokerId}`;
  }

  /** `ids/<id>/master` or `ids/<id>/slave<n>` (MetaZookeeper.brokerIdsPathOf). */
  brokerPath(brokerId: number, role: BrokerRole): string {
    return `${this.brokerIds}/${brokerId}/${
      role.kind === "master" ? "master" : `slave${role.slaveId}`
    }`;
  }

  masterConfigChecksumPath(brokerId: number): string {
    return `${this.brokerIds}/${brokerId}/master_config_checksum`;
  }

  /** `topics/<topic>/<id>-m`: the pre-1.4.3 topic node. */
  legacyTopicPath(topic: string, brokerId: number, role: BrokerRole): string {
    return `${this.brokerTopics}/${topic}/${topicBrokerName(brokerId, role)}`;
  }

  topicPath(kind: "pub" | "sub", topic: string, brokerId: number, role: BrokerRole): string {
    const parent = kind === "pub" ? this.brokerTopicsPub : this.brokerTopicsSub;
    return `${parent}/${topic}/${topicBrokerName(brokerId, role)}`;
  }

  groupIdsPath(group: string): string {
    return `${this.consumers}/${group}/ids`;
  }

  groupOwnersPath(group: string, topic: string): string {
    return `${this.consumers}/${group}/owners/${topic}`;
  }

  groupOffsetsPath(group: string, topic: string): string {
    return `${this.consumers}/${group}/offsets/${topic}`;
  }
}

/** `<id>-m` or `<id>-s<n>`: a broker's name under a topic. */
export function topicBrokerName(brokerId: number, role: BrokerRole): string {
  return `${brokerId}${role.kind === "master" ? "-m" : `-s${role.slaveId}`}`;
}

/** Broker.getZKString: `meta://host:port`, an IPv6 host in brackets. */
export function brokerUri(host: string, port: number): string {
  if (host.includes(":") && !host.startsWith("[")) return `meta://[${host}]:${port}`;
  return `meta://${host}:${port}`;
}

/**
 * TopicBroker.toJson as Jackson writes it: `{"numParts":N,"broker":"<id>-m"}`, these two
 * properties in this order, no spaces.
 */
export function topicBrokerJson(numPartitions: number, brokerId: number, role: BrokerRole): string {
  return JSON.stringify({ numParts: numPartitions, broker: topicBrokerName(brokerId, role) });
}

/** A parsed `meta://host:port[?slaveId=n]` (Broker(id, uri)); undefined when it is not one. */
export function parseBrokerUri(uri: string): { host: string; port: number } | undefined {
  const match = /^meta:\/\/(\[[^\]]+\]|[^:/?]+):(\d+)/.exec(uri.trim());
  if (!match) return undefined;
  return { host: match[1].replace(/^\[|\]$/g, ""), port: Number(match[2]) };
}

/** `<id>-m` / `<id>-s<n>` back to its parts; undefined for any other name. */
export function parseTopicBrokerName(
  name: string,
): { brokerId: number; role: BrokerRole } | undefined {
  const match = /^(\d+)-(m|s(\d+))$/.exec(name);
  if (!match) return undefined;
  const brokerId = Number(match[1]);
  return match[2] === "m"
    ? { brokerId, role: MASTER }
    : { brokerId, role: { kind: "slave", slaveId: Number(match[3]) } };
}

/** TopicBroker.parse: the partition count of a topics-pub/-sub node, or undefined. */
export function parseTopicBrokerJson(
  json: string,
): { numParts: number; broker: string } | undefined {
  try {
    const value = JSON.parse(json) as { numParts?: unknown; broker?: unknown };
    if (!Number.isSafeInteger(value.numParts) || typeof value.broker !== "string") return undefined;
    return { numParts: value.numParts as number, broker: value.broker };
  } catch {
    return undefined;
  }
}

/** ZkOffsetStorage's text: `<msgId>-<offset>`. */
export function formatZkOffset(messageId: bigint | number, offset: number): string {
  return `${messageId}-${offset}`;
}

/**
 * ZkOffsetStorage.load: split at the last `-` (a message id may be negative); text without one is
 * a pre-1.4 offset alone, with message id -1. Undefined when it is neither.
 */
export function parseZkOffset(text: string): { messageId: bigint; offset: number } | undefined {
  const trimmed = text.trim();
  const at = trimmed.lastIndexOf("-");
  const idText = at > 0 ? trimmed.slice(0, at) : "-1";
  const offsetText = at > 0 ? trimmed.slice(at + 1) : trimmed;
  if (!/^-?\d+$/.test(idText) || !/^\d+$/.test(offsetText)) return undefined;
  const offset = Number(offsetText);
  if (!Number.isSafeInteger(offset)) return undefined;
  return { messageId: BigInt(idText), offset };
}

/** `<brokerId>-<partition>`, the name of a partition across the fleet (Partition.toString). */
export function partitionName(brokerId: number, partition: number): string {
  return `${brokerId}-${partition}`;
}

export function parsePartitionName(
  name: string,
): { brokerId: number; partition: number } | undefined {
  const match = /^(\d+)-(\d+)$/.exec(name);
  return match ? { brokerId: Number(match[1]), partition: Number(match[2]) } : undefined;
}

/**
 * @module ZooKeeper mode for one broker: opens a ZooKeeper session and starts the registrar with
 * what it needs from the other parts (the address bound, the topics, the role in a cluster).
 * Off, and nothing changes, unless `zk.zkConnect` is set (and `zk.zkEnable` is not false).
 *
 * In a cluster the nodes present themselves as one MetaQ broker id (zkBrokerId): the leader of
 * `__meta-0` (the group coordinator's partition, so the node every group request goes to anyway)
 * registers as `master`, every other node as `slave<nodeId>`. Any node serves any partition (the
 * edge forwards to the partition's leader), and a follower serves only committed records, so an
 * original client may use either.
 */
import { crc32 } from "../crc32.ts";
import type { ClusterNode } from "../cluster/cluster_node.ts";
import { META_TOPIC } from "../cluster/placement.ts";
import type { Config, TopicSettings } from "../config/config.ts";
import { topicSettings } from "../config/config.ts";
import { zooKeeperEnabled } from "../config/zookeeper_config.ts";
import type { Logger } from "../log.ts";
import type { Logs } from "../store/log.ts";
import { ZkClient } from "../zk/client.ts";
import { type BrokerRole, MASTER, MetaLayout } from "../zk/meta_layout.ts";
import { advertisedHost, BrokerRegistrar } from "../zk/registrar.ts";

export interface ZooKeeperPartOptions {
  readonly config: Config;
  readonly logs: Logs;
  readonly cluster: ClusterNode | undefined;
  /** The client port actually bound. */
  readonly port: number;
  readonly logger: Logger;
  /**
   * A topic's settings as the broker has them (the topic catalogue included: a grown count is
   * registered at the next check, a deleted topic's nodes go); the configuration's by default.
   */
  readonly topicSettings?: (topic: string) => TopicSettings | undefined;
}

/** Registers this broker in ZooKeeper; undefined when ZooKeeper mode is off. */
export async function startZooKeeperPart(
  options: ZooKeeperPartOptions,
): Promise<BrokerRegistrar | undefined> {
  const { config, logs, cluster, port, logger } = options;
  const zk = config.zookeeper;
  if (!zooKeeperEnabled(zk)) return undefined;
  const system = config.system;
  const brokerId = system.zkBrokerId >= 0 ? system.zkBrokerId : system.brokerId;
  const client = await ZkClient.open({
    connect: zk.connect,
    sessionTimeoutMs: zk.sessionTimeoutMs,
    connectionTimeoutMs: zk.connectionTimeoutMs,
    logger,
  });
  const registrar = new BrokerRegistrar({
    client,
    layout: new MetaLayout(zk.root),
    brokerId,
    host: advertisedHost(system.hostName, system.host),
    port,
    configChecksum: String(
      config.fileText === undefined ? 0 : crc32(new TextEncoder().encode(config.fileText)),
    ),
    role: cluster ? () => clusterRole(cluster) : () => MASTER,
    roleChanged: cluster ? (timeoutMs) => cluster.roleChanged(timeoutMs) : undefined,
    topics: () => registrableTopics(config, logs),
    onTopic: (listener) => logs.onOpen((entry) => listener(entry.topic)),
    topicSettings: options.topicSettings ?? ((topic) => topicSettings(config, topic)),
    exclusive: !cluster,
    checkEveryMs: zk.syncTimeMs,
    logger,
  });
  try {
    await registrar.start();
  } catch (error) {
    await client.close();
    throw error;
  }
  logger.log("info", "Registered in ZooKeeper", {
    connect: zk.connect,
    root: zk.root,
    brokerId,
    as: registrar.uri,
    role: registrar.role.kind === "master" ? "master" : `slave${registrar.role.slaveId}`,
  });
  return registrar;
}

/** The leader of `__meta-0` is the master; every other node a slave numbered by its node id. */
function clusterRole(cluster: ClusterNode): BrokerRole {
  return cluster.leaderOf(`${META_TOPIC}-0`)?.nodeId === cluster.nodeId
    ? MASTER
    : { kind: "slave", slaveId: cluster.nodeId };
}

/**
 * Topics named in server.ini (a pattern with `*` names no topic) and every topic with a log here,
 * as MetaQ registers its configured topics and its message stores.
 */
function registrableTopics(config: Config, logs: Logs): string[] {
  const topics = new Set<string>();
  for (const section of config.topics) {
    if (!section.pattern.includes("*")) topics.add(section.pattern);
  }
  for (const entry of logs.list()) topics.add(entry.topic);
  return [...topics];
}

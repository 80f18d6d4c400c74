/**
 * @module What a MetaQ fleet looks like in ZooKeeper, read as the original Java client reads it
 * (MetaZookeeper): brokers by id (master and slaves), the partitions a topic offers to consumers
 * (`topics-sub`, masters and slaves alike) and to producers (`topics-pub`, masters only), and the
 * address to read a partition from (the master, else a random slave: Cluster.getBrokerRandom).
 */
import type { ZkClient } from "../zk/client.ts";
import {
  MASTER,
  type MetaLayout,
  parseBrokerUri,
  parseTopicBrokerJson,
  parseTopicBrokerName,
} from "../zk/meta_layout.ts";
import { childrenOf, readText } from "../zk/nodes.ts";

/** A broker id's registered addresses, `host:port`. */
export interface BrokerEntry {
  readonly brokerId: number;
  readonly master?: string;
  readonly slaves: ReadonlyMap<number, string>;
}

/** A partition across the fleet: broker id, partition number there, and its name `b-p`. */
export interface FleetPartition {
  readonly brokerId: number;
  readonly partition: number;
  readonly name: string;
}

/** Every registered broker id with its master and slaves (MetaZookeeper.getCluster). */
export async function readBrokers(
  zk: ZkClient,
  layout: MetaLayout,
): Promise<Map<number, BrokerEntry>> {
  const brokers = new Map<number, BrokerEntry>();
  for (const child of await childrenOf(zk, layout.brokerIds)) {
    if (!/^\d+$/.test(child)) continue;
    const brokerId = Number(child);
    const entry = await readBroker(zk, layout, brokerId);
    if (entry.master !== undefined || entry.slaves.size > 0) brokers.set(brokerId, entry);
  }
  return brokers;
}

export async function readBroker(
  zk: ZkClient,
  layout: MetaLayout,
  brokerId: number,
): Promise<BrokerEntry> {
  const master = address(await readText(zk, layout.brokerPath(brokerId, MASTER)));
  const slaves = new Map<number, string>();
  for (const child of await childrenOf(zk, layout.brokerIdPath(brokerId))) {
    const match = /^slave(\d+)$/.exec(child);
    if (!match) continue;
    const slave = address(await readText(zk, `${layout.brokerIdPath(brokerId)}/${child}`));
    if (slave !== undefined) slaves.set(Number(match[1]), slave);
  }
  return { brokerId, master, slaves };
}

/**
 * Where to read `brokerId`'s partitions: its master, or a random slave while it has none.
 * `random` picks an index below its argument.
 */
export function readAddress(
  entry: BrokerEntry | undefined,
  random: (count: number) => number,
): string | undefined {
  if (!entry) return undefined;
  if (entry.master !== undefined) return entry.master;
  const slaves = [...entry.slaves.values()];
  return slaves.length === 0 ? undefined : slaves[random(slaves.length)];
}

/**
 * The partitions a topic offers to consumers, sorted as strings (`0-10` before `0-2`), as
 * MetaZookeeper.getPartitionStringsForSubTopics lists them.
 */
export async function subscribablePartitions(
  zk: ZkClient,
  layout: MetaLayout,
  topic: string,
): Promise<string[]> {
  const names = new Set<string>();
  const dir = `${layout.brokerTopicsSub}/${topic}`;
  for (const child of await childrenOf(zk, dir)) {
    const parsed = parseTopicBrokerName(child);
    if (!parsed) continue;
    const json = await readText(zk, `${dir}/${child}`);
    const topicBroker = json === undefined ? undefined : parseTopicBrokerJson(json);
    if (!topicBroker) continue;
    for (let partition = 0; partition < topicBroker.numParts; partition++) {
      names.add(`${parsed.brokerId}-${partition}`);
    }
  }
  return [...names].sort();
}

/**
 * The partitions producers may write, masters only, sorted by broker id then partition (as
 * MetaZookeeper.getPartitionsForTopicsFromMaster sorts Partition objects), each with the master's
 * address.
 */
export async function publishablePartitions(
  zk: ZkClient,
  layout: MetaLayout,
  topic: string,
): Promise<(FleetPartition & { address: string })[]> {
  const out: (FleetPartition & { address: string })[] = [];
  const dir = `${layout.brokerTopicsPub}/${topic}`;
  for (const child of await childrenOf(zk, dir)) {
    const parsed = parseTopicBrokerName(child);
    if (!parsed || parsed.role.kind !== "master") continue;
    const json = await readText(zk, `${dir}/${child}`);
    const topicBroker = json === undefined ? undefined : parseTopicBrokerJson(json);
    const master = address(await readText(zk, layout.brokerPath(parsed.brokerId, MASTER)));
    if (!topicBroker || master === undefined) continue;
    for (let partition = 0; partition < topicBroker.numParts; partition++) {
      out.push({
        brokerId: parsed.brokerId,
        partition,
        name: `${parsed.brokerId}-${partition}`,
        address: master,
      });
    }
  }
  return out.sort((a, b) => a.brokerId - b.brokerId || a.partition - b.partition);
}

/** `meta://host:port` to `host:port` (IPv6 in brackets); undefined for anything else. */
function address(uri: string | undefined): string | undefined {
  if (uri === undefined || uri.trim() === "") return undefined;
  const parsed = parseBrokerUri(uri);
  if (!parsed) return undefined;
  return parsed.host.includes(":")
    ? `[${parsed.host}]:${parsed.port}`
    : `${parsed.host}:${parsed.port}`;
}

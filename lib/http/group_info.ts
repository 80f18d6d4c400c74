/**
 * @module Consumer groups as the API shows them: the provider's members and committed offsets,
 * with the lag of each partition (bytes between the committed offset and the readable end)
 * computed here, where the partition ends are known.
 */
import type { Broker } from "../broker/broker.ts";
import type { LagSample } from "./metrics.ts";
import type { GroupDescription, GroupMember, GroupsView } from "./views.ts";

export interface GroupPartitionInfo extends LagSample {
  readonly endOffset: number;
  readonly owner: string | null;
}

export interface GroupInfo {
  readonly group: string;
  readonly members: readonly GroupMember[];
  readonly lagBytes: number;
  readonly partitions: readonly GroupPartitionInfo[];
}

export function groupInfo(broker: Broker, description: GroupDescription): GroupInfo {
  const partitions = description.offsets.map((entry): GroupPartitionInfo => {
    const log = broker.store.get(entry.topic, entry.partition);
    const end = log ? broker.readLimit(entry.topic, entry.partition, log) : 0;
    return {
      group: description.group,
      topic: entry.topic,
      partition: entry.partition,
      committedOffset: entry.offset,
      endOffset: end,
      lagBytes: Math.max(0, end - entry.offset),
      owner: entry.owner ?? null,
    };
  });
  partitions.sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
  return {
    group: description.group,
    members: description.members,
    lagBytes: partitions.reduce((total, entry) => total + entry.lagBytes, 0),
    partitions,
  };
}

/** Every group the provider knows, described, in name order. */
export async function allGroups(broker: Broker, groups: GroupsView): Promise<GroupInfo[]> {
  const names = [...await groups.list()].sort();
  const infos: GroupInfo[] = [];
  for (const name of names) {
    const description = await groups.describe(name);
    if (description) infos.push(groupInfo(broker, description));
  }
  return infos;
}

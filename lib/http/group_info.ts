/**
 * @module Consumer groups as the API shows them: the provider's members and committed offsets,
 * with the lag of each partition (bytes between the committed offset and the readable end)
 * computed here. The end is the furthest one known on this node: its own copy's, the one the
 * partition's leader shares (partition_facts.ts), or the one the group coordinator saw, so
 * every node of a cluster shows the same lag once the figures have gone round.
 */
import { isInternalTopic } from "../store/log.ts";
import type { AdminContext } from "./context.ts";
import type { LagSample } from "./metrics.ts";
import { endsOf, partitionFacts } from "./partition_facts.ts";
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

/** Readable ends by `<topic>-<partition>`, as groupInfo wants them. */
export type PartitionEnds = ReadonlyMap<string, number>;

/** The ends of every partition this node knows of, now. */
export function partitionEnds(context: AdminContext): PartitionEnds {
  return endsOf(partitionFacts(context));
}

export function groupInfo(ends: PartitionEnds, description: GroupDescription): GroupInfo {
  const partitions = description.offsets
    .filter((entry) => !isInternalTopic(entry.topic))
    .map((entry): GroupPartitionInfo => {
      const end = Math.max(ends.get(`${entry.topic}-${entry.partition}`) ?? 0, entry.end ?? 0);
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
export async function allGroups(ends: PartitionEnds, groups: GroupsView): Promise<GroupInfo[]> {
  if (groups.describeAll) {
    const descriptions = [...await groups.describeAll()];
    descriptions.sort((a, b) => a.group < b.group ? -1 : a.group > b.group ? 1 : 0);
    return descriptions.map((description) => groupInfo(ends, description));
  }
  const names = [...await groups.list()].sort();
  const infos: GroupInfo[] = [];
  for (const name of names) {
    const description = await groups.describe(name);
    if (description) infos.push(groupInfo(ends, description));
  }
  return infos;
}

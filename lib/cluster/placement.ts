/**
 * @module Which nodes hold a partition: rendezvous hashing over the static voter list, so every
 * node computes the same answer from the shared configuration with no coordinator. With as many
 * replicas as nodes (the default for 3 nodes), every node holds every partition.
 */
import { crc32 } from "../crc32.ts";

import { isInternalTopic } from "../store/log.ts";

/** Name of the internal group holding cluster-wide state (consumer groups, node identities). */
export const META_TOPIC = "__meta";
export const META_GROUP = `${META_TOPIC}-0`;

export { isInternalTopic };

/** The `replicas` nodes holding `topic`-`partition`, sorted by id; all nodes for the `__` logs. */
export function replicasOf(
  topic: string,
  partition: number,
  nodeIds: readonly number[],
  replicas: number,
): number[] {
  if (isInternalTopic(topic) || replicas >= nodeIds.length) {
    return [...nodeIds].sort((a, b) => a - b);
  }
  const encoder = new TextEncoder();
  const scored = nodeIds.map((id) => ({
    id,
    score: crc32(encoder.encode(`${topic}\u0000${partition}\u0000${id}`)),
  }));
  scored.sort((a, b) => b.score - a.score || a.id - b.id);
  return scored.slice(0, replicas).map((entry) => entry.id).sort((a, b) => a - b);
}

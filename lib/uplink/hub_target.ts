/**
 * @module Where a source partition's messages go at the hub: the hub topic (`prefix` + name)
 * and partition (the same number when `keepPartition`, else one fixed per source partition so
 * its order is kept), and the hub's partition counts behind that choice, asked with `meta` and
 * remembered for a while. Pure apart from the cache's clock and the link it asks.
 */
import { crc32 } from "../crc32.ts";
import { topicNameProblem } from "../config/names.ts";
import type { UplinkConfig } from "../config/uplink_config.ts";
import type { HubLink } from "./hub_link.ts";

export interface HubTarget {
  readonly topic: string;
  readonly partition: number;
}

/** How long a hub topic's partition count is trusted before asking again. */
const PARTITIONS_TTL_MS = 30_000;

const encoder = new TextEncoder();

/**
 * The hub partition for source `topic`-`partition`, or why it cannot be forwarded (a name the
 * hub cannot have, or a hub topic with fewer partitions than the edge's when they are kept).
 */
export function hubTarget(
  config: Pick<UplinkConfig, "prefix" | "keepPartition">,
  source: { site: string; topic: string; partition: number; edgePartitions: number },
  hubPartitions: number,
): HubTarget | string {
  const topic = config.prefix + source.topic;
  const problem = topicNameProblem(topic);
  if (problem) return `Cannot forward ${source.topic} as ${topic}: ${problem}`;
  if (config.keepPartition) {
    if (hubPartitions < source.edgePartitions || source.partition >= hubPartitions) {
      return `Cannot forward ${source.topic} with its partitions kept: the hub's ${topic} has ` +
        `${hubPartitions} partitions, the edge's has ${source.edgePartitions}`;
    }
    return { topic, partition: source.partition };
  }
  if (hubPartitions < 1) {
    return `Cannot forward ${source.topic}: the hub's ${topic} has no partitions`;
  }
  const key = encoder.encode(`${source.site}/${source.topic}/${source.partition}`);
  return { topic, partition: crc32(key) % hubPartitions };
}

/** Partition counts of hub topics, from `meta`, for a while; forgotten when the link comes up. */
export class HubTopics {
  readonly #link: HubLink;
  readonly #now: () => number;
  readonly #known = new Map<string, { partitions: number; atMs: number }>();

  constructor(link: HubLink, now: () => number) {
    this.#link = link;
    this.#now = now;
    link.onUp(() => this.#known.clear());
  }

  async partitions(topic: string): Promise<number> {
    const known = this.#known.get(topic);
    if (known && this.#now() - known.atMs < PARTITIONS_TTL_MS) return known.partitions;
    const meta = JSON.parse(await this.#link.request("meta", [topic])) as { partitions: number };
    if (this.#known.size >= 10_000) this.#known.clear();
    this.#known.set(topic, { partitions: meta.partitions, atMs: this.#now() });
    return meta.partitions;
  }
}

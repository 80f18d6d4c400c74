/**
 * @module Consumer offsets in ZooKeeper, as MetaQ's ZkOffsetStorage keeps them: one persistent
 * node per partition, `<root>/consumers/<group>/offsets/<topic>/<brokerId>-<partition>`, holding
 * `<msgId>-<offset>` (MetaQ before 1.4 wrote the offset alone; both are read). Original Java
 * consumers and metaq's ZooKeeper consumers share these nodes, so either resumes where the other
 * committed.
 */
import type { ZkClient } from "../zk/client.ts";
import { formatZkOffset, type MetaLayout, parseZkOffset } from "../zk/meta_layout.ts";
import { readText, writePersistent } from "../zk/nodes.ts";

export interface ZkOffset {
  readonly offset: number;
  /** The id of the last message consumed before `offset`; -1 when unknown. */
  readonly messageId: bigint;
}

export class ZkOffsetStore {
  readonly #zk: ZkClient;
  readonly #layout: MetaLayout;

  constructor(zk: ZkClient, layout: MetaLayout) {
    this.#zk = zk;
    this.#layout = layout;
  }

  /** The committed offset of `group` on `topic` partition `name` (`b-p`), or undefined. */
  async load(group: string, topic: string, name: string): Promise<ZkOffset | undefined> {
    const text = await readText(this.#zk, this.path(group, topic, name));
    if (text === undefined) return undefined;
    const parsed = parseZkOffset(text);
    if (!parsed) {
      throw new Error(`Cannot read the offset of ${group} ${topic} ${name}: "${text}"`);
    }
    return parsed;
  }

  /** Writes the node (creating it and its parents when missing). */
  async commit(group: string, topic: string, name: string, offset: ZkOffset): Promise<void> {
    await writePersistent(
      this.#zk,
      this.path(group, topic, name),
      formatZkOffset(offset.messageId, offset.offset),
    );
  }

  path(group: string, topic: string, name: string): string {
    return `${this.#layout.groupOffsetsPath(group, topic)}/${name}`;
  }
}

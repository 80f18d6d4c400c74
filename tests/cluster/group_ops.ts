/**
 * @module The hook between the harness and consumer groups (being built in lib/groups): the
 * consumer-group workload (W2), the offset probe (W3) and T15 call only this interface. Until
 * `GROUP_OPS` is set to an implementation on top of the real group commands, W3 does not run and
 * T15 is skipped with that reason. `memoryGroupOps()` is a stand-in that keeps offsets in this
 * process, so the workloads and the checker can be exercised against a plain broker meanwhile.
 */
import type { MetaqClient } from "../../lib/client/client.ts";

export interface GroupPartition {
  readonly group: string;
  readonly topic: string;
  readonly partition: number;
}

export interface Assignment {
  /** Bumped by every rebalance; a commit from an older generation must be refused. */
  readonly generation: number;
  readonly partitions: readonly number[];
}

export interface GroupOps {
  /** The committed offset, or undefined when the group never committed on that partition. */
  readCommitted(client: MetaqClient, at: GroupPartition): Promise<number | undefined>;
  /** Commits `offset`; resolves once the broker acknowledged it (throws otherwise). */
  commit(
    client: MetaqClient,
    at: GroupPartition & { readonly offset: number; readonly generation: number },
  ): Promise<void>;
  /** Joins or heartbeats `member` in `group`; returns the current generation and its partitions. */
  join(
    client: MetaqClient,
    at: { readonly group: string; readonly topic: string; readonly member: string },
  ): Promise<Assignment>;
  /** Leaves the group (a clean consumer stop); a killed consumer never calls it. */
  leave(
    client: MetaqClient,
    at: { readonly group: string; readonly member: string },
  ): Promise<void>;
}

/**
 * The real implementation, once lib/groups lands (for example the `metaq` group commands through
 * `client.extension(...)`). Left undefined on purpose: see tests/chaos/README.md.
 */
export const GROUP_OPS: GroupOps | undefined = undefined;

/**
 * Offsets and membership kept in this process (no broker involved): every partition goes to
 * the member that joined last, commits below the stored offset are refused, as the real
 * coordinator must. For harness self-tests only; it proves nothing about the broker.
 */
export function memoryGroupOps(partitions: number): GroupOps {
  const offsets = new Map<string, number>();
  const members: string[] = [];
  let generation = 0;
  const key = (at: GroupPartition) => `${at.group}/${at.topic}-${at.partition}`;
  return {
    readCommitted: (_client, at) => Promise.resolve(offsets.get(key(at))),
    commit(_client, at) {
      if (at.generation !== generation) {
        return Promise.reject(new Error(`Cannot commit: generation ${at.generation} is stale`));
      }
      offsets.set(key(at), Math.max(offsets.get(key(at)) ?? 0, at.offset));
      return Promise.resolve();
    },
    join(_client, at) {
      if (members[members.length - 1] !== at.member) {
        members.splice(0, members.length, ...members.filter((m) => m !== at.member), at.member);
        generation += 1;
      }
      const owner = members[members.length - 1] === at.member;
      const all = Array.from({ length: partitions }, (_, p) => p);
      return Promise.resolve({ generation, partitions: owner ? all : [] });
    },
    leave(_client, at) {
      const index = members.indexOf(at.member);
      if (index >= 0) {
        members.splice(index, 1);
        generation += 1;
      }
      return Promise.resolve();
    },
  };
}

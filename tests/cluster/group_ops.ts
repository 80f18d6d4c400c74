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
    at: GroupPartition & {
      readonly offset: number;
      readonly generation: number;
      readonly member?: string;
    },
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
 * The real implementation: metaq's group commands (docs/protocol.md, "Consumer groups") through
 * `client.extension(...)`. `join` joins once per member, then heartbeats with the generation it
 * last handed out (which tells the coordinator the member applied it, so released partitions can
 * move) and fetches the assignment; a member the coordinator forgot (after a coordinator
 * failover) joins again.
 */
export const GROUP_OPS: GroupOps = realGroupOps();

function realGroupOps(): GroupOps {
  const applied = new Map<string, number>();
  const memberKey = (group: string, member: string) => `${group}\u0000${member}`;
  return {
    async readCommitted(client, at) {
      try {
        return Number(await client.extension("committed", [at.group, at.topic, at.partition]));
      } catch (error) {
        if ((error as { status?: number }).status === 404) return undefined;
        throw error;
      }
    },
    async commit(client, at) {
      const member = at.member ?? "-";
      await client.extension(
        "commit",
        [at.group, member, at.generation, at.topic, at.partition, at.offset].map(String),
      );
    },
    async join(client, at) {
      const key = memberKey(at.group, at.member);
      if (!applied.has(key)) {
        try {
          await client.extension("join", [at.group, at.member, at.topic, "DEFAULT"]);
        } catch (error) {
          if (process.env.CHAOS_DEBUG_GROUPS) {
            console.error(`join(first) ${at.member}: ${(error as Error).message}`);
          }
          throw error;
        }
        applied.set(key, 0);
      }
      try {
        await client.extension("heartbeat", [at.group, at.member, String(applied.get(key))]);
        const [head, ...lines] = (await client.extension("assignment", [at.group, at.member]))
          .split("\r\n");
        const generation = Number(head.split(" ")[0]);
        applied.set(key, generation);
        const partitions = lines.filter(Boolean).map((line) => Number(line.split(" ")[1]));
        return { generation, partitions };
      } catch (error) {
        if (process.env.CHAOS_DEBUG_GROUPS) {
          console.error(`join ${at.member}: ${(error as Error).message}`);
        }
        // Forgotten by a new coordinator (404 unknown member) or too old: join again next time.
        if ((error as { status?: number }).status === 404) applied.delete(key);
        throw error;
      }
    },
    async leave(client, at) {
      applied.delete(memberKey(at.group, at.member));
      await client.extension("leave", [at.group, at.member]);
    },
  };
}

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

/**
 * @module GroupClient: the consumer-group extension commands (docs/protocol.md, "Consumer
 * groups") as typed calls over a MetaqClient. Requests and replies only; the membership loop
 * that uses them is group_member.ts, and the CLI's `metaq groups` uses the admin calls.
 */
import type {
  Assignment,
  GroupReport,
  HeartbeatReply,
  JoinReply,
  OffsetEntry,
  ResetTarget,
  Strategy,
} from "../protocol/group_wire.ts";
import type { MetaqClient } from "./client.ts";
import { BrokerError } from "./errors.ts";

export class GroupClient {
  readonly client: MetaqClient;

  constructor(client: MetaqClient) {
    this.client = client;
  }

  async join(
    request: { group: string; memberId: string; topics: readonly string[]; strategy: Strategy },
  ): Promise<JoinReply> {
    const text = await this.client.extension("join", [
      request.group,
      request.memberId,
      request.topics.join(","),
      request.strategy,
    ]);
    const [generation, sessionTimeoutMs] = numbers(text, 2);
    return { generation, sessionTimeoutMs };
  }

  async heartbeat(
    request: { group: string; memberId: string; generation: number },
  ): Promise<HeartbeatReply> {
    const text = await this.client.extension("heartbeat", [
      request.group,
      request.memberId,
      request.generation,
    ]);
    const [generation, pending] = numbers(text, 2);
    return { generation, pending };
  }

  async assignment(request: { group: string; memberId: string }): Promise<Assignment> {
    const text = await this.client.extension("assignment", [request.group, request.memberId]);
    const [head, ...lines] = text.split("\r\n");
    const [generation, pending] = numbers(head, 2);
    const partitions = lines.filter(Boolean).map((line) => {
      const [topic, ...rest] = line.split(" ");
      const [partition, grantedAt, offset] = numbers(rest.join(" "), 3);
      return { topic, partition, grantedAt, offset: offset < 0 ? undefined : offset };
    });
    return { generation, pending, partitions };
  }

  async leave(request: { group: string; memberId: string }): Promise<void> {
    await this.client.extension("leave", [request.group, request.memberId]);
  }

  async commit(
    request: {
      group: string;
      memberId: string;
      generation: number;
      topic: string;
      partition: number;
      offset: number;
    },
  ): Promise<number> {
    const text = await this.client.extension("commit", [
      request.group,
      request.memberId,
      request.generation,
      request.topic,
      request.partition,
      request.offset,
    ]);
    return numbers(text, 1)[0];
  }

  /** The group's committed offset, or undefined when it has none. */
  async committed(group: string, topic: string, partition: number): Promise<number | undefined> {
    try {
      return numbers(await this.client.extension("committed", [group, topic, partition]), 1)[0];
    } catch (error) {
      if (error instanceof BrokerError && error.status === 404) return undefined;
      throw error;
    }
  }

  /** One group, or every group the broker knows. */
  async describe(group?: string): Promise<GroupReport[]> {
    return JSON.parse(await this.client.extension("describe", [group ?? "*"])).groups;
  }

  /** Deletes a group without members; resolves with the committed offsets it had. */
  async delete(group: string): Promise<OffsetEntry[]> {
    return JSON.parse(await this.client.extension("forget", [group])).offsets;
  }

  async reset(
    request: {
      group: string;
      topic: string;
      partition?: number;
      to: ResetTarget;
      force: boolean;
    },
  ): Promise<OffsetEntry[]> {
    const text = await this.client.extension("adjust", [
      request.group,
      request.topic,
      request.partition ?? "*",
      request.to,
      request.force ? "force" : "safe",
    ]);
    return JSON.parse(text).offsets;
  }
}

function numbers(text: string, count: number): number[] {
  const parts = text.trim().split(" ");
  const values = parts.map(Number);
  if (parts.length !== count || values.some((value) => !Number.isSafeInteger(value))) {
    throw new BrokerError("internal", `Cannot parse group reply '${text.slice(0, 80)}'`);
  }
  return values;
}

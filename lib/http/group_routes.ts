/**
 * @module The `/v1/groups` and `/v1/cluster` routes, answered from the GroupsView and
 * ClusterView providers (views.ts). Without a provider they answer 503 `unavailable`, so a
 * client can tell "not enabled here" from "no such group" (404).
 */
import type { Hono } from "hono";
import { groupNameProblem } from "../protocol/names.ts";
import { offsetForTime } from "../protocol/record_seek.ts";
import { isInternalTopic } from "../store/log.ts";
import { BrokerError } from "../errors.ts";
import type { AdminContext } from "./context.ts";
import { allGroups, groupInfo, partitionEnds } from "./group_info.ts";
import {
  describe,
  jsonResponse,
  offsetParam,
  partitionParam,
  readJson,
  timeParam,
  topicParam,
} from "./respond.ts";
import type { ClusterView, GroupOffsetReset, GroupsView } from "./views.ts";

const RESET_BODY_BYTES_MAX = 64 * 1024;
const RESET_FIELDS = ["topic", "partition", "to", "toTime", "dryRun"];

export function registerGroupRoutes(app: Hono, context: AdminContext): void {
  app.get("/v1/groups", async () => {
    const groups = requireGroups(context.groups);
    return jsonResponse(200, { groups: await allGroups(partitionEnds(context), groups) });
  });

  app.get("/v1/groups/:group", async (c) => {
    const groups = requireGroups(context.groups);
    const group = groupParam(c.req.param("group"));
    const description = await groups.describe(group);
    if (!description) throw new BrokerError("notFound", `no consumer group ${group}`);
    return jsonResponse(200, groupInfo(partitionEnds(context), description));
  });

  app.post("/v1/groups/:group/reset", async (c) => {
    const groups = requireGroups(context.groups);
    const group = groupParam(c.req.param("group"));
    const body = await readJson(c.req.raw, RESET_BODY_BYTES_MAX);
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw new BrokerError("badRequest", 'Cannot reset: send {"topic", "partition"?, "to"}');
    }
    const input = body as Record<string, unknown>;
    const unknown = Object.keys(input).find((key) => !RESET_FIELDS.includes(key));
    if (unknown) throw new BrokerError("badRequest", `unknown field ${describe(unknown)}`);
    if (input.dryRun !== undefined && typeof input.dryRun !== "boolean") {
      throw new BrokerError(
        "badRequest",
        `dryRun ${describe(input.dryRun)}: expected true or false`,
      );
    }
    const targets = await resetTargets(context, group, input);
    if (!await groups.describe(group)) {
      throw new BrokerError("notFound", `no consumer group ${group}`);
    }
    // A dry run answers what a reset would set, and changes nothing.
    if (input.dryRun === true) return jsonResponse(200, { group, reset: targets, dryRun: true });
    for (const target of targets) await groups.reset(target);
    return jsonResponse(200, { group, reset: targets });
  });

  app.delete("/v1/groups/:group", async (c) => {
    const groups = requireGroups(context.groups);
    const group = groupParam(c.req.param("group"));
    if (!groups.delete) throw new BrokerError("notSupported", "this broker cannot delete groups");
    await groups.delete(group);
    return jsonResponse(200, { group, deleted: true });
  });

  app.get("/v1/cluster", async () => {
    return jsonResponse(200, await requireCluster(context.cluster).status());
  });
}

/** Every (partition, offset) a reset request names, checked before any is applied. */
async function resetTargets(
  context: AdminContext,
  group: string,
  input: Record<string, unknown>,
): Promise<GroupOffsetReset[]> {
  const { broker } = context;
  const topic = topicParam(input.topic);
  const settings = isInternalTopic(topic) ? undefined : broker.topicSettings(topic);
  if (!settings) throw new BrokerError("topicNotFound", topic);
  const partitions = input.partition === undefined
    ? Array.from({ length: settings.numPartitions }, (_, index) => index)
    : [partitionParam(input.partition)];
  if (partitions.some((partition) => partition >= settings.numPartitions)) {
    throw new BrokerError(
      "wrongPartition",
      `${input.partition} (${topic} has ${settings.numPartitions})`,
    );
  }
  const to = resetPosition(input);
  const targets: GroupOffsetReset[] = [];
  for (const partition of partitions) {
    const bounds = await context.reads.bounds(topic, partition) ?? { start: 0, end: 0 };
    const offset = to === "beginning"
      ? bounds.start
      : to === "end"
      ? bounds.end
      : typeof to === "number"
      ? offsetParam(to)
      : await offsetForTime(
        context.reads.reader(topic, partition),
        bounds,
        to.timeMs,
        context.clock.wallMs(),
      );
    // A committed offset must be a record boundary.
    await context.reads.checkBoundary(topic, partition, offset, bounds);
    targets.push({ group, topic, partition, offset });
  }
  return targets;
}

/**
 * Where a reset goes: `to` (one spelling of positions across the CLI and HTTP: earliest|latest,
 * beginning|end as aliases, or a byte offset) or `toTime` (the first message written at or
 * after it, per partition), exactly one of them.
 */
function resetPosition(
  input: Record<string, unknown>,
): "beginning" | "end" | number | { timeMs: number } {
  if (input.toTime !== undefined) {
    if (input.to !== undefined) throw new BrokerError("badRequest", "give to or toTime, not both");
    return { timeMs: timeParam("toTime", input.toTime) };
  }
  const to = input.to === "earliest" ? "beginning" : input.to === "latest" ? "end" : input.to;
  if (to !== "beginning" && to !== "end" && typeof to !== "number") {
    throw new BrokerError(
      "invalidOffset",
      `to ${describe(to)}: expected "earliest", "latest" or an offset (or toTime)`,
    );
  }
  return to;
}

function groupParam(value: string): string {
  const problem = groupNameProblem(value);
  if (problem) throw new BrokerError("invalidName", problem);
  return value;
}

function requireGroups(groups: GroupsView | undefined): GroupsView {
  if (!groups) {
    throw new BrokerError("unavailable", "consumer groups are not enabled on this broker");
  }
  return groups;
}

function requireCluster(cluster: ClusterView | undefined): ClusterView {
  if (!cluster) {
    throw new BrokerError("unavailable", "this broker runs alone: no cluster is configured");
  }
  return cluster;
}

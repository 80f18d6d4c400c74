/**
 * @module Operations routes: `stats` as MetaQ's text (any item, exactly the TCP reply) and as
 * JSON, `/metrics` for Prometheus, an edge's uplink status at `/v1/uplink`, and the `/healthz`
 * and `/readyz` probes.
 */
import type { Hono } from "hono";
import { renderStats } from "../broker/stats_report.ts";
import { BrokerError, describeError } from "../errors.ts";
import type { AdminContext } from "./context.ts";
import { allGroups, partitionEnds } from "./group_info.ts";
import { type LagSample, renderMetrics } from "./metrics.ts";
import { endsOf } from "./partition_facts.ts";
import { jsonResponse, replyBody } from "./respond.ts";
import { sampleTopics } from "./topic_info.ts";
import type { ClusterStatus } from "./views.ts";

export function registerOpsRoutes(app: Hono, context: AdminContext): void {
  const { broker } = context;

  app.get("/v1/stats", () => jsonResponse(200, statsJson(context)));

  const statsText = (item: string | undefined) => {
    const reply = broker.statsReply(item, context.statsItems);
    if (reply.kind !== "result") throw new Error("stats replies are results");
    return new Response(replyBody(reply.text), {
      status: reply.code,
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  };
  app.get("/v1/stats/text", () => statsText(undefined));
  app.get("/v1/stats/text/:item", (c) => statsText(c.req.param("item")));

  app.get("/metrics", async () => {
    const { facts } = sampleTopics(context);
    const text = renderMetrics({
      broker,
      fsync: context.fsync,
      rates: context.rates.total(),
      facts,
      openStreams: context.streams.open,
      lags: await lagSamples(context, endsOf(facts)),
      cluster: await clusterStatus(context),
      uplink: context.uplink?.status(),
      delayed: context.delayed?.status(),
    });
    return new Response(text, {
      headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
    });
  });

  app.get("/v1/uplink", () => {
    if (!context.uplink) {
      throw new BrokerError("unavailable", "this broker has no uplink (metaq serve --uplink)");
    }
    return jsonResponse(200, context.uplink.status());
  });

  app.get("/healthz", () => jsonResponse(200, { status: "ok" }));

  app.get("/readyz", async () => {
    const reasons: string[] = [];
    if (context.shutdown.aborted) reasons.push("shutting down");
    const cluster = await clusterStatus(context);
    if (cluster && cluster.ready === false) reasons.push(`cluster node is ${cluster.role}`);
    const damaged = broker.logs.failures().size;
    return jsonResponse(reasons.length ? 503 : 200, {
      status: reasons.length ? "unavailable" : "ready",
      reasons,
      damagedPartitions: damaged,
    });
  });
}

/** Group lags for metrics; a failing provider is logged and left out, not fatal to a scrape. */
export async function lagSamples(
  context: AdminContext,
  ends = partitionEnds(context),
): Promise<LagSample[] | undefined> {
  if (!context.groups) return undefined;
  try {
    return (await allGroups(ends, context.groups)).flatMap((group) => group.partitions);
  } catch (error) {
    context.broker.logger.log("warn", "Cannot read consumer groups", {
      reason: describeError(error),
    });
    return undefined;
  }
}

export async function clusterStatus(context: AdminContext): Promise<ClusterStatus | undefined> {
  if (!context.cluster) return undefined;
  try {
    return await context.cluster.status();
  } catch (error) {
    context.broker.logger.log("warn", "Cannot read cluster status", {
      reason: describeError(error),
    });
    return undefined;
  }
}

type Value = string | number | boolean;

/** The general, topics, offsets and realtime items, parsed from the same text TCP serves. */
function statsJson(context: AdminContext) {
  const lines = (item: string | undefined) =>
    renderStats(context.broker, item, context.statsItems).split("\r\n").slice(1, -2).map((line) =>
      line.split(" ")
    );
  const values = (item: string | undefined) =>
    Object.fromEntries(lines(item).map(([key, ...rest]) => [key, value(rest.join(" "))]));
  return {
    general: values(undefined),
    topics: lines("topics").map(([topic, ...rest]) =>
      rest[0] === "*Empty*" ? { topic, empty: true } : { topic, ...pairs(rest) }
    ),
    offsets: lines("offsets").map(([topic, ...rest]) => {
      const fields = pairs(rest);
      return {
        topic,
        partition: fields.part,
        min_offset: fields.min_offset,
        max_offset: fields.max_offset,
      };
    }),
    realtime: values("realtime"),
  };
}

function pairs(tokens: string[]): Record<string, Value> {
  const out: Record<string, Value> = {};
  for (let index = 0; index + 1 < tokens.length; index += 2) {
    out[tokens[index]] = value(tokens[index + 1]);
  }
  return out;
}

function value(text: string): Value {
  if (text === "true" || text === "false") return text === "true";
  if (/^-?\d{1,15}$/.test(text)) return Number(text);
  return text;
}

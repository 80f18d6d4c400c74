/**
 * @module The `/v1/topics` routes: list, create and describe topics, produce messages, fetch
 * decoded records from a partition, and stream a topic live. Fetch follows `get` (reference 2.3):
 * an offset below the first stored one is a 301 to that offset, one past the end is a 404 (or a
 * 301 to the end with updateConsumerOffsets); unlike `get`, the end itself answers 200 with no
 * messages, which suits polling. Fetch and the stream read through PartitionReads (reads.ts):
 * on this node when it holds the partition, through the edge when it does not, so every node of
 * a cluster answers alike. The broker's own `__` topics are not topics here.
 */
import type { Hono } from "hono";
import type { Broker } from "../broker/broker.ts";
import { BrokerError } from "../errors.ts";
import { HTTP_FETCH_MESSAGES_MAX } from "../limits.ts";
import { offsetForTime, offsetOfLast } from "../protocol/record_seek.ts";
import { groupNameProblem } from "../protocol/names.ts";
import { isInternalTopic } from "../store/log.ts";
import { TOPIC_VERB } from "../broker/topic_admin.ts";
import { errorFromResult } from "../protocol/reply.ts";
import { ask } from "./wire_reply.ts";
import type { AdminContext } from "./context.ts";
import { putAll, readMessages } from "./produce.ts";
import type { PartitionReads } from "./reads.ts";
import { type PayloadEncoding, recordToJson } from "./records.ts";
import {
  describe,
  integerParam,
  jsonResponse,
  offsetParam,
  partitionParam,
  readJson,
  timeParam,
  topicParam,
} from "./respond.ts";
import { sseResponse } from "./sse.ts";
import { allTopics, sampleTopics, topicInfo } from "./topic_info.ts";
import { checkStartOffset, parseCursor, TopicStream } from "./topic_stream.ts";

/** Bytes a create-topic request body may have. */
const CREATE_BODY_BYTES_MAX = 64 * 1024;

export function registerTopicRoutes(app: Hono, context: AdminContext): void {
  const { broker } = context;

  app.get("/v1/topics", () => jsonResponse(200, { topics: allTopics(sampleTopics(context)) }));

  app.post("/v1/topics", async (c) => {
    const body = await readJson(c.req.raw, CREATE_BODY_BYTES_MAX);
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw new BrokerError("badRequest", 'Cannot create topic: send {"name": "<topic>"}');
    }
    const input = body as Record<string, unknown>;
    const unknown = Object.keys(input).find((key) => key !== "name" && key !== "partitions");
    if (unknown) throw new BrokerError("badRequest", `unknown field ${describe(unknown)}`);
    const created = await createTopic(context, topicParam(input.name), input.partitions);
    return jsonResponse(
      created.created ? 201 : 200,
      topicInfo(sampleTopics(context), created.topic),
    );
  });

  app.delete("/v1/topics/:topic", async (c) => {
    const topic = topicParam(c.req.param("topic"));
    checkRunning(context);
    const text = await catalogueCommand(context, ["delete", topic, "-"]);
    return jsonResponse(200, JSON.parse(text));
  });

  app.get("/v1/topics/:topic", (c) => {
    const topic = topicParam(c.req.param("topic"));
    const info = topicInfo(sampleTopics(context), topic);
    if (!info) throw new BrokerError("topicNotFound", topic);
    return jsonResponse(200, info);
  });

  app.post("/v1/topics/:topic/messages", async (c) => {
    const topic = topicParam(c.req.param("topic"));
    const settings = isInternalTopic(topic) ? undefined : broker.topicSettings(topic);
    if (!settings) throw notAccepted(broker, topic);
    const messages = await readMessages(broker, settings, c.req.raw);
    checkRunning(context);
    const results = await putAll(context.dispatch, topic, messages);
    const failed = results.find((result) => "error" in result);
    if (failed && "error" in failed) {
      const status = new BrokerError(failed.error.kind).status;
      return jsonResponse(status, { error: failed.error, topic, results });
    }
    return jsonResponse(200, { topic, results });
  });

  app.get("/v1/topics/:topic/partitions/:partition/messages", (c) => {
    const topic = userTopicParam(c.req.param("topic"));
    const partition = partitionParam(c.req.param("partition"));
    const start = fetchStartParam(c.req.query());
    const max = integerParam("max", c.req.query("max"), {
      min: 1,
      max: HTTP_FETCH_MESSAGES_MAX,
      // The last N messages come as one page when the page may hold them.
      default: start.kind === "last" ? Math.min(start.count, HTTP_FETCH_MESSAGES_MAX) : 100,
    });
    const encoding = encodingParam(c.req.query("encoding"));
    return fetchMessages(context, { topic, partition, start, max, encoding, url: c.req.url });
  });

  app.get("/v1/topics/:topic/stream", (c) =>
    openStream(context, {
      topic: userTopicParam(c.req.param("topic")),
      partition: c.req.query("partition"),
      from: c.req.query("from"),
      group: c.req.query("group"),
      encoding: encodingParam(c.req.query("encoding")),
      lastEventId: c.req.header("last-event-id"),
    }));
}

interface StreamRequest {
  readonly topic: string;
  readonly partition?: string;
  readonly from?: string;
  readonly group?: string;
  readonly encoding: PayloadEncoding | "auto";
  readonly lastEventId?: string;
}

/** Checks a stream request whole, then opens the stream (counted against the stream limit). */
async function openStream(context: AdminContext, request: StreamRequest): Promise<Response> {
  const { broker } = context;
  const { topic, group } = request;
  const settings = broker.topicSettings(topic);
  // As GET /v1/topics/:topic: a topic no partition holds and no section names is not there.
  if (!settings || !topicInfo(sampleTopics(context), topic)) {
    throw new BrokerError("topicNotFound", topic);
  }
  const partitions = request.partition === undefined
    ? Array.from({ length: settings.numPartitions }, (_, index) => index)
    : [partitionParam(request.partition)];
  if (partitions.some((partition) => partition >= settings.numPartitions)) {
    throw new BrokerError(
      "wrongPartition",
      `${request.partition} (${topic} has ${settings.numPartitions})`,
    );
  }
  const groupProblem = group === undefined ? undefined : groupNameProblem(group);
  if (groupProblem) throw new BrokerError("invalidName", groupProblem);
  const resumed = request.lastEventId
    ? parseCursor(request.lastEventId, partitions)
    : new Map<number, number>();
  const starts = await startOffsets(context, { topic, partitions, from: request.from, group });
  const cursor = new Map(partitions.map((p) => [p, resumed.get(p) ?? starts.get(p)!]));
  const release = context.streams.acquire();
  const stream = new TopicStream({
    broker,
    reads: context.reads,
    topic,
    cursor,
    encoding: request.encoding,
  });
  return sseResponse(stream, {
    shutdown: context.shutdown,
    heartbeatMs: context.heartbeatMs,
    onClose: release,
  });
}

/**
 * Creates or grows `topic` (the `catalogue` verb, through the edge: on a cluster it is served by
 * the metadata group's leader), then opens the partitions this node holds.
 */
async function createTopic(
  context: AdminContext,
  topic: string,
  partitions: unknown,
): Promise<{ topic: string; created: boolean }> {
  const { broker } = context;
  if (isInternalTopic(topic)) throw notAccepted(broker, topic);
  if (
    partitions !== undefined &&
    (typeof partitions !== "number" || !Number.isInteger(partitions) || partitions < 1)
  ) {
    throw new BrokerError(
      "badRequest",
      `Cannot create topic ${topic} with ${describe(partitions)} partitions: ` +
        "give a whole number of at least 1",
    );
  }
  checkRunning(context);
  // A topic the broker accepts with this count already needs no catalogue change: its
  // partitions are only opened here (on a cluster, without asking the metadata's leader).
  const accepted = broker.topicSettings(topic);
  let changed = false;
  if (!accepted || (partitions !== undefined && partitions !== accepted.numPartitions)) {
    const reply = await catalogueCommand(context, [
      "create",
      topic,
      partitions === undefined ? "-" : String(partitions),
    ]);
    changed = (JSON.parse(reply) as { changed: boolean }).changed;
  }
  const settings = broker.topicSettings(topic);
  if (!settings) throw notAccepted(broker, topic);
  let count = 0;
  for (let partition = 0; partition < settings.numPartitions; partition++) {
    if (broker.logs.get(topic, partition)) continue;
    const damaged = broker.logs.failure(topic, partition);
    if (damaged) throw new BrokerError("corruption", `${topic}-${partition}: ${damaged.message}`);
    checkRunning(context);
    try {
      await broker.logs.open(topic, partition);
      count += 1;
    } catch (error) {
      // In a cluster a node opens only the partitions it holds; the others open on theirs.
      if (!context.cluster || !(error instanceof BrokerError) || error.kind !== "unavailable") {
        throw error;
      }
    }
  }
  return { topic, created: changed || count > 0 };
}

/** Sends a `catalogue` command; its reply text, or its refusal thrown. */
async function catalogueCommand(context: AdminContext, args: string[]): Promise<string> {
  const answer = await ask(context.dispatch, {
    kind: "extension",
    verb: TOPIC_VERB,
    args,
    opaque: 0,
    body: new Uint8Array(0),
  });
  if (answer.kind !== "result") throw new BrokerError("internal", `${TOPIC_VERB}: a value`);
  if (answer.code !== 200) throw errorFromResult(answer.code, answer.text);
  return answer.text;
}

/** Where a fetch starts: a byte offset, the first stored record, the last N, or a time. */
type FetchStart =
  | { readonly kind: "offset"; readonly offset: number }
  | { readonly kind: "earliest" }
  | { readonly kind: "last"; readonly count: number; readonly before?: number }
  | { readonly kind: "time"; readonly timeMs: number };

/**
 * At most one of `offset`, `last` and `fromTime`; none starts at the first stored record.
 * `before=OFFSET` (with `last` only) counts the last N before that offset instead of the end:
 * the page before a page.
 */
function fetchStartParam(query: Record<string, string>): FetchStart {
  const { offset, last, fromTime, before } = query;
  const given = [["offset", offset], ["last", last], ["fromTime", fromTime]]
    .filter(([, value]) => value !== undefined).map(([name]) => name);
  if (given.length > 1) {
    throw new BrokerError("badRequest", `give one of ${given.join(", ")}, not several`);
  }
  if (offset !== undefined) return { kind: "offset", offset: offsetParam(offset) };
  if (last !== undefined) {
    const count = integerParam("last", last, { min: 1, max: 2 ** 31 - 1, default: 0 });
    if (count === 0) throw new BrokerError("badRequest", "last: give a number of messages");
    return { kind: "last", count, before: before === undefined ? undefined : offsetParam(before) };
  }
  if (fromTime !== undefined) return { kind: "time", timeMs: timeParam("fromTime", fromTime) };
  if (before !== undefined) throw new BrokerError("badRequest", "before goes with last=N only");
  return { kind: "earliest" };
}

/**
 * The byte offset a fetch starts at: the last N records and a time are searched for in the
 * partition's bytes (record_seek.ts), wherever the partition is read.
 */
async function startOffset(
  reads: PartitionReads,
  topic: string,
  partition: number,
  start: FetchStart,
  nowMs: number,
): Promise<number> {
  if (start.kind === "offset") return start.offset;
  const bounds = await reads.bounds(topic, partition) ?? { start: 0, end: 0 };
  if (start.kind === "earliest") return bounds.start;
  const reader = reads.reader(topic, partition);
  if (start.kind === "time") return await offsetForTime(reader, bounds, start.timeMs, nowMs);
  if (start.before === undefined) return await offsetOfLast(reader, bounds, start.count, nowMs);
  await reads.checkBoundary(topic, partition, start.before, bounds, "before");
  const before = { start: bounds.start, end: start.before };
  return await offsetOfLast(reader, before, start.count, nowMs);
}

interface FetchRequest {
  readonly topic: string;
  readonly partition: number;
  readonly start: FetchStart;
  readonly max: number;
  readonly encoding: PayloadEncoding | "auto";
  readonly url: string;
}

async function fetchMessages(context: AdminContext, request: FetchRequest): Promise<Response> {
  const { broker, reads } = context;
  const { topic, partition } = request;
  const local = reads.isLocal(topic, partition);
  if (local) broker.stats.counters.cmdGet += 1;
  const miss = () => {
    if (local) broker.stats.counters.getMiss += 1;
  };
  checkPartition(context, topic, partition);
  const offset = await startOffset(reads, topic, partition, request.start, context.clock.wallMs());
  const page = await reads.page({
    topic,
    partition,
    offset,
    countMax: request.max,
    bytesMax: broker.config.system.maxTransferSize,
  });
  if (
    page.kind === "refused" && page.error.status === 404 && offset === 0 &&
    topicInfo(sampleTopics(context), topic)
  ) {
    // A partition of an existing topic that nothing was written to yet: empty, at its end.
    return jsonResponse(200, {
      topic,
      partition,
      offset,
      nextOffset: offset,
      startOffset: 0,
      endOffset: 0,
      messages: [],
    });
  }
  if (page.kind === "refused") {
    if (page.error.status === 404) miss();
    throw readRefusal(topic, partition, page.error);
  }
  if (page.kind === "moved") {
    miss();
    const why = page.offset > offset ? "is before the first stored record" : "is past the end";
    return moved(request, page.offset, `offset ${offset} ${why}`);
  }
  const bounds = await reads.bounds(topic, partition);
  if (!bounds) throw readRefusal(topic, partition);
  // The page before a page ends where that page begins.
  const until = request.start.kind === "last" ? request.start.before : undefined;
  const records = page.kind !== "records"
    ? []
    : until === undefined
    ? page.records
    : page.records.filter((record) => record.offset < until);
  const nextOffset = page.kind !== "records"
    ? offset
    : records.length === page.records.length
    ? page.nextOffset
    : until!;
  if (page.kind === "end" && offset > bounds.end) {
    miss();
    throw BrokerError.verbatim("notFound", `Could not find message at position ${offset}`);
  }
  return jsonResponse(200, {
    topic,
    partition,
    offset,
    nextOffset,
    startOffset: bounds.start,
    endOffset: Math.max(bounds.end, nextOffset),
    messages: records.map((record) => recordToJson(record, request.encoding)),
  });
}

/**
 * A partition that is neither open here nor configured does not exist: answered here, so a
 * read never makes a node in a cluster open a partition the topic does not have.
 */
function checkPartition(context: AdminContext, topic: string, partition: number): void {
  if (context.broker.logs.get(topic, partition)) return;
  const settings = context.broker.topicSettings(topic);
  if (!settings || partition >= settings.numPartitions) throw readRefusal(topic, partition);
}

/** A refused read as the API reports it: a missing partition is `topicNotFound`. */
function readRefusal(topic: string, partition: number, error?: BrokerError): BrokerError {
  if (error && error.status !== 404) {
    return error.kind === "partitionClosed"
      ? new BrokerError("partitionClosed", `${topic}-${partition}`)
      : error;
  }
  return new BrokerError("topicNotFound", `no partition ${topic}-${partition} on this broker`);
}

/** MetaQ's 301 "Moved": the offset to use instead, as a Location the client may follow. */
function moved(request: FetchRequest, offset: number, reason: string): Response {
  const url = new URL(request.url);
  url.searchParams.set("offset", String(offset));
  // The offset replaces a position by count or time (one start per request).
  url.searchParams.delete("last");
  url.searchParams.delete("fromTime");
  return jsonResponse(301, { offset, message: `Moved: ${reason}; use offset ${offset}` }, {
    location: `${url.pathname}${url.search}`,
  });
}

async function startOffsets(
  context: AdminContext,
  request: { topic: string; partitions: number[]; from?: string; group?: string },
): Promise<Map<number, number>> {
  const { topic, partitions } = request;
  const from = request.from ?? (request.group && context.groups ? "committed" : "end");
  const starts = new Map<number, number>();
  const committed = new Map<number, number>();
  if (from === "committed" && request.group && context.groups) {
    const description = await context.groups.describe(request.group);
    for (const entry of description?.offsets ?? []) {
      if (entry.topic === topic) committed.set(entry.partition, entry.offset);
    }
  }
  for (const partition of partitions) {
    const bounds = await context.reads.bounds(topic, partition) ?? { start: 0, end: 0 };
    // earliest|latest as everywhere else; beginning|end are their aliases.
    if (from === "beginning" || from === "earliest") starts.set(partition, bounds.start);
    else if (from === "end" || from === "latest") starts.set(partition, bounds.end);
    else if (from === "committed") starts.set(partition, committed.get(partition) ?? bounds.end);
    else if (partitions.length === 1) {
      const offset = offsetParam(from);
      checkStartOffset(topic, partition, offset, bounds);
      starts.set(partition, offset);
    } else {
      throw new BrokerError(
        "invalidOffset",
        `from ${
          describe(from)
        }: an offset needs a partition; otherwise use beginning, end or committed`,
      );
    }
  }
  return starts;
}

/** A topic name whose records the API serves: a valid name, and not one of the broker's own. */
function userTopicParam(value: string): string {
  const topic = topicParam(value);
  if (isInternalTopic(topic)) throw new BrokerError("topicNotFound", topic);
  return topic;
}

function encodingParam(value: string | undefined): PayloadEncoding | "auto" {
  if (value === undefined || value === "auto" || value === "utf8" || value === "base64") {
    return value ?? "auto";
  }
  throw new BrokerError("badRequest", `encoding ${describe(value)}: expected utf8, base64 or auto`);
}

function notAccepted(broker: Broker, topic: string): BrokerError {
  const text = broker.topicRefusal(topic) ?? `The server do not accept topic ${topic}`;
  return BrokerError.verbatim("topicNotAccepted", text);
}

/** Writes must not reach the store once shutdown began: it may be closing under them. */
function checkRunning(context: AdminContext): void {
  if (context.shutdown.aborted) {
    throw new BrokerError("unavailable", "the broker is shutting down");
  }
}

/**
 * @module The broker's HTTP face as a Hono app: MetaQ's HTTP plugin (`/put`, `/get`, `/offset`),
 * the JSON API under `/v1`, `/metrics`, the health probes and the dashboard at `/`. The app never
 * listens: tests call `app.request()`, and http_part.ts serves it through lib/runtime.
 *
 * Errors have one shape, `{ "error": { "kind", "message" } }`, with the status of the kind in
 * lib/errors.ts (MetaQ's codes); MetaQ's plugin routes answer MetaQ's code and plain text instead.
 *
 * @example
 * ```ts
 * const app = createAdminApp(running.broker, { requests: running.edge });
 * const response = await app.request("/v1/topics");
 * ```
 */
import { Hono } from "hono";
import type { Broker } from "../broker/broker.ts";
import { type Clock, systemClock } from "../clock.ts";
import { AssertionError } from "../assert.ts";
import { BrokerError, describeError } from "../errors.ts";
import { SSE_STREAMS_MAX } from "../limits.ts";
import type { LogRing } from "../log_ring.ts";
import type { StatsItems } from "../broker/stats_report.ts";
import type { Command } from "../protocol/commands.ts";
import { errorReply, type Respond } from "../protocol/reply.ts";
import type { Requests } from "../server/edge.ts";
import type { AdminContext } from "./context.ts";
import { DASHBOARD_HTML } from "./dashboard_page.ts";
import { registerGroupRoutes } from "./group_routes.ts";
import type { AccessControl } from "../security/access.ts";
import { bearerAuth, identityOf } from "./auth.ts";
import { handleMetaqPlugin } from "./metaq_plugin.ts";
import { FsyncHistogram } from "./metrics.ts";
import { registerOpsRoutes } from "./ops_routes.ts";
import { registerDelayedRoutes } from "./delayed_routes.ts";
import { RateTracker } from "./rates.ts";
import { PartitionReads } from "./reads.ts";
import { errorBody, errorResponse, jsonResponse } from "./respond.ts";
import { buildSnapshot, SnapshotFeed } from "./snapshot.ts";
import { HEARTBEAT_MS, sseResponse, StreamLimit } from "./sse.ts";
import { registerTopicRoutes } from "./topic_routes.ts";
import type { ClusterView, DelayedView, GroupsView, UplinkView } from "./views.ts";
import { type Dispatch, HTTP_REQUEST_CONTEXT } from "./wire_reply.ts";

export interface AdminOptions {
  /** Consumer groups; without it the group routes answer 503. */
  readonly groups?: GroupsView;
  /**
   * The cluster as this node sees it; without it `/v1/cluster` answers 503. With it, partitions
   * are described by their leaders' figures, and (given `requests`) partitions not open here are
   * read through the edge.
   */
  readonly cluster?: ClusterView;
  /** An edge's uplink; without it `/v1/uplink` answers 503. */
  readonly uplink?: UplinkView;
  /** Delayed messages, for `/metrics` and the dashboard. */
  readonly delayed?: DelayedView;
  /** Recent warnings and errors for the dashboard. */
  readonly recentLog?: LogRing;
  readonly clock?: Clock;
  /** Aborting it ends every open event stream and detaches the app's hooks (at shutdown). */
  readonly signal?: AbortSignal;
  readonly heartbeatMs?: number;
  readonly snapshotIntervalMs?: number;
  readonly streamsMax?: number;
  /** Users and permissions; with users, every route but `/` and the probes needs a token. */
  readonly access?: AccessControl;
  /**
   * The edge (lib/server/edge.ts): puts and MetaQ's `/get` and `/offset` go through it, and in
   * a cluster so do reads of partitions this node does not hold, so each reaches a node that
   * must serve it. Without it the broker serves everything itself.
   */
  readonly requests?: Requests;
  /** `stats` items other parts contribute (`cluster`...). */
  readonly statsItems?: StatsItems;
}

export function createAdminApp(broker: Broker, options: AdminOptions = {}): Hono {
  const clock = options.clock ?? systemClock;
  const shutdown = options.signal ?? new AbortController().signal;
  const requests = options.requests;
  const dispatch: Dispatch = requests
    ? (command, respond) => requests.dispatch(command, HTTP_REQUEST_CONTEXT, respond)
    : (command, respond) => serveHere(broker, command, respond);
  const context: AdminContext = {
    broker,
    dispatch,
    reads: new PartitionReads({
      broker,
      remote: options.cluster && requests ? dispatch : undefined,
    }),
    clock,
    rates: new RateTracker(clock),
    fsync: new FsyncHistogram(),
    streams: new StreamLimit(options.streamsMax ?? SSE_STREAMS_MAX),
    shutdown,
    heartbeatMs: options.heartbeatMs ?? HEARTBEAT_MS,
    snapshotIntervalMs: options.snapshotIntervalMs ?? 1000,
    statsItems: options.statsItems ?? new Map(),
    groups: options.groups,
    cluster: options.cluster,
    uplink: options.uplink,
    delayed: options.delayed,
    recentLog: options.recentLog,
  };
  context.fsync.attach(broker.logs);
  shutdown.addEventListener("abort", () => context.fsync.detach(), { once: true });

  const app = new Hono();
  app.onError((error) => {
    if (error instanceof BrokerError) return errorResponse(error);
    broker.logger.log("error", "HTTP request failed", { reason: describeError(error) });
    // A broken invariant is a bug: let it crash the process (recovery runs on restart).
    if (error instanceof AssertionError) {
      queueMicrotask(() => {
        throw error;
      });
    }
    return errorResponse(new BrokerError("internal", describeError(error)));
  });

  if (options.access?.enabled) app.use("*", bearerAuth(options.access, broker));
  app.get("/", () =>
    new Response(DASHBOARD_HTML, {
      headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-cache" },
    }));
  app.get(
    "/v1/whoami",
    (c) => jsonResponse(200, identityOf(options.access, c.req.header("authorization"))),
  );
  app.get("/v1/overview", async () => jsonResponse(200, await buildSnapshot(context)));
  app.get("/v1/events", () => {
    const release = context.streams.acquire();
    return sseResponse(new SnapshotFeed(context), {
      shutdown,
      heartbeatMs: context.heartbeatMs,
      onClose: release,
    });
  });
  registerTopicRoutes(app, context);
  registerGroupRoutes(app, context);
  registerOpsRoutes(app, context);
  registerDelayedRoutes(app, context);
  const allowed = routeMethods(app);
  app.all("/v1/*", (c) => {
    const path = new URL(c.req.url).pathname;
    const methods = allowed(path);
    if (methods.length > 0) return methodNotAllowed(c.req.method, path, methods);
    throw new BrokerError("notFound", `no route ${c.req.method} ${path}`);
  });
  // Everything else is MetaQ's plugin: the first character after '/' picks put, get or offset.
  // (Bar `/` itself, which MetaQ answers "Invalid request", routes of ours with another method
  // are a 405.)
  app.all("*", (c) => {
    const path = new URL(c.req.url).pathname;
    const methods = path === "/" ? [] : allowed(path);
    if (methods.length > 0) return methodNotAllowed(c.req.method, path, methods);
    return handleMetaqPlugin(broker, dispatch, c.req.raw);
  });
  return app;
}

/**
 * The methods the app's own routes take for a path, read from the routes registered before the
 * catch-alls (asked only once every route is there): a path that exists with other methods is
 * a 405 with `Allow`, not a 404.
 */
function routeMethods(app: Hono): (path: string) => string[] {
  let routes: { pattern: RegExp; method: string }[] | undefined;
  return (path) => {
    routes ??= app.routes
      .filter((route) => route.method !== "ALL" && !route.path.includes("*"))
      .map((route) => ({ pattern: routePattern(route.path), method: route.method }));
    const methods = new Set(
      routes.filter((route) => route.pattern.test(path)).map((r) => r.method),
    );
    return [...methods].sort();
  };
}

function routePattern(path: string): RegExp {
  const parts = path.split("/").map((part) =>
    part.startsWith(":") ? "[^/]+" : part.replace(/[.+?^${}()|[\]\\]/g, "\\$&")
  );
  return new RegExp(`^${parts.join("/")}$`);
}

function methodNotAllowed(method: string, path: string, methods: string[]): Response {
  const error = new BrokerError("methodNotAllowed", `${method} ${path}: use ${methods.join(", ")}`);
  return jsonResponse(error.status, errorBody(error), { allow: methods.join(", ") });
}

/** The commands the app sends, served by the broker itself (an app without an edge). */
function serveHere(broker: Broker, command: Command, respond: Respond): void {
  switch (command.kind) {
    case "put":
      return broker.put(command, HTTP_REQUEST_CONTEXT, respond);
    case "get":
      return broker.get(command, respond);
    case "offset":
      return respond(broker.offset(command));
    default:
      respond(errorReply(new BrokerError("notSupported", `${command.kind} without an edge`)));
  }
}

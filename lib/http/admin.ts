/**
 * @module The broker's HTTP face as a Hono app: MetaQ's HTTP plugin (`/put`, `/get`, `/offset`),
 * the JSON API under `/v1`, `/metrics`, the health probes and the dashboard at `/`. The app never
 * listens: tests call `app.request()`, and lib/http/plugin.ts serves it through lib/runtime.
 *
 * Errors have one shape, `{ "error": { "kind", "message" } }`, with the status of the kind in
 * lib/errors.ts (MetaQ's codes); MetaQ's plugin routes answer MetaQ's code and plain text instead.
 *
 * @example
 * ```ts
 * const app = createAdminApp(running.broker);
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
import type { AdminContext, PutPath } from "./context.ts";
import { DASHBOARD_HTML } from "./dashboard_page.ts";
import { registerGroupRoutes } from "./group_routes.ts";
import type { AccessControl } from "../security/access.ts";
import { bearerAuth } from "./auth.ts";
import { handleMetaqPlugin, HTTP_REQUEST_CONTEXT } from "./metaq_plugin.ts";
import { FsyncHistogram } from "./metrics.ts";
import { registerOpsRoutes } from "./ops_routes.ts";
import { RateTracker } from "./rates.ts";
import { errorResponse, jsonResponse } from "./respond.ts";
import { buildSnapshot, SnapshotFeed } from "./snapshot.ts";
import { HEARTBEAT_MS, sseResponse, StreamLimit } from "./sse.ts";
import { registerTopicRoutes } from "./topic_routes.ts";
import type { ClusterView, GroupsView } from "./views.ts";

export interface AdminOptions {
  /** Consumer groups; without it the group routes answer 503. */
  readonly groups?: GroupsView;
  /** Cluster status; without it `/v1/cluster` answers 503. */
  readonly cluster?: ClusterView;
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
  /** How puts are served; by default the broker alone (`metaq serve` passes its router). */
  readonly put?: PutPath;
}

export function createAdminApp(broker: Broker, options: AdminOptions = {}): Hono {
  const clock = options.clock ?? systemClock;
  const shutdown = options.signal ?? new AbortController().signal;
  const put: PutPath = options.put ??
    ((command, done) => broker.put(command, HTTP_REQUEST_CONTEXT, done));
  const context: AdminContext = {
    broker,
    put,
    clock,
    rates: new RateTracker(broker, clock),
    fsync: new FsyncHistogram(),
    streams: new StreamLimit(options.streamsMax ?? SSE_STREAMS_MAX),
    shutdown,
    heartbeatMs: options.heartbeatMs ?? HEARTBEAT_MS,
    snapshotIntervalMs: options.snapshotIntervalMs ?? 1000,
    groups: options.groups,
    cluster: options.cluster,
    recentLog: options.recentLog,
  };
  context.fsync.attach(broker.store);
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
  app.all("/v1/*", (c) => {
    throw new BrokerError("notFound", `no route ${c.req.method} ${new URL(c.req.url).pathname}`);
  });
  // Everything else is MetaQ's plugin: the first character after '/' picks put, get or offset.
  app.all("*", (c) => handleMetaqPlugin(broker, put, c.req.raw));
  return app;
}

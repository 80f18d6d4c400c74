/**
 * @module The HTTP part of `metaq serve`: builds the admin app for the running broker and serves
 * it on `dashboardHttpPort` (MetaQ's dashboard port, 8120 by default; 0 picks a free one)
 * through lib/runtime. Publishes the bound port as the `httpPort` fact. At shutdown it ends every
 * event stream first, then closes the listener and its connections.
 */
import { HTTP_BODY_BYTES_MAX } from "../limits.ts";
import type { LogRing } from "../log_ring.ts";
import { type HttpServer, serveHttp } from "../runtime/http_server.ts";
import type { BrokerPlugin, RunningBroker } from "../server/start_broker.ts";
import { AccessControl } from "../security/access.ts";
import { tlsFor } from "../security/tls.ts";
import { createAdminApp } from "./admin.ts";
import { plainReply } from "./forwarded_reply.ts";
import { HTTP_REQUEST_CONTEXT } from "./metaq_plugin.ts";
import type { ClusterView, GroupsView } from "./views.ts";

/** Time open event streams get to end cleanly at shutdown before connections are dropped. */
const STREAM_END_GRACE_MS = 50;

export interface HttpPluginOptions {
  readonly recentLog?: LogRing;
  /** Providers for groups and cluster, looked up when the plugin starts (after those parts). */
  readonly views?: (running: RunningBroker) => { groups?: GroupsView; cluster?: ClusterView };
  /** `node` forces the portable node:http listener even on Bun (tests use it). */
  readonly engine?: "auto" | "node";
}

/** Raised when the HTTP port is taken; `metaq serve` prints its message. */
export class HttpPortInUseError extends Error {
  override readonly name = "HttpPortInUseError";
  readonly code = "EADDRINUSE";
}

export function httpPlugin(options: HttpPluginOptions = {}): BrokerPlugin {
  const shutdown = new AbortController();
  let server: HttpServer | undefined;
  return {
    name: "http",
    async start(running: RunningBroker) {
      const { host, dashboardHttpPort } = running.config.system;
      const app = createAdminApp(running.broker, {
        ...options.views?.(running),
        recentLog: options.recentLog,
        clock: running.clock,
        signal: shutdown.signal,
        access: new AccessControl(running.config.users),
        // Through the router: in a cluster it forwards a put to its partition's leader.
        put: (command, done) =>
          running.router.dispatch(
            command,
            HTTP_REQUEST_CONTEXT,
            (reply) => done(plainReply(reply)),
          ),
      });
      server = await listen({
        fetch: app.fetch,
        host,
        port: dashboardHttpPort,
        engine: options.engine,
        tls: tlsFor(running.config.system, "http"),
      });
      running.facts.set("httpPort", server.port);
    },
    async stop() {
      shutdown.abort();
      // Let the event streams just ended write their last bytes, so clients see a clean end
      // rather than a reset; the close then drops whatever is still open.
      await new Promise((resolve) => setTimeout(resolve, STREAM_END_GRACE_MS));
      await server?.close();
    },
  };
}

async function listen(options: {
  fetch: (request: Request) => Response | Promise<Response>;
  host: string;
  port: number;
  engine?: "auto" | "node";
  tls?: { cert: string; key: string };
}): Promise<HttpServer> {
  try {
    return await serveHttp({ ...options, bodyBytesMax: HTTP_BODY_BYTES_MAX * 2 });
  } catch (error) {
    if ((error as { code?: string }).code !== "EADDRINUSE") throw error;
    throw new HttpPortInUseError(
      `Cannot listen on ${options.host}:${options.port} for HTTP: the address is in use; ` +
        "pick another --http-port, or use --no-http",
    );
  }
}

/**
 * @module The HTTP part of a broker: builds the admin app (admin.ts) over the broker and the
 * edge, and serves it on `dashboardHttpPort` (MetaQ's dashboard port, 8120 by default; 0 picks
 * a free one) through lib/runtime. At shutdown it ends every event stream first, then closes
 * the listener and its connections.
 */
import type { Broker } from "../broker/broker.ts";
import type { StatsItems } from "../broker/stats_report.ts";
import type { Clock } from "../clock.ts";
import { HTTP_BODY_BYTES_MAX } from "../limits.ts";
import type { LogRing } from "../log_ring.ts";
import { type HttpServer, serveHttp } from "../runtime/http_server.ts";
import type { AccessControl } from "../security/access.ts";
import type { TlsFiles } from "../security/tls.ts";
import type { Requests } from "../server/edge.ts";
import { createAdminApp } from "./admin.ts";
import type { ClusterView, DelayedView, GroupsView, UplinkView } from "./views.ts";

/** Time open event streams get to end cleanly at shutdown before connections are dropped. */
const STREAM_END_GRACE_MS = 50;

export interface HttpPartOptions {
  readonly broker: Broker;
  /**
   * The edge: puts, group commands and (in a cluster) reads of partitions this node does not
   * hold go through it, to the node that must serve them.
   */
  readonly requests: Requests;
  /** `stats` items other parts contribute (`cluster`...). */
  readonly statsItems?: StatsItems;
  readonly groups: GroupsView;
  readonly cluster?: ClusterView;
  /** An edge's uplink to its hub. */
  readonly uplink?: UplinkView;
  /** Delayed messages, for `/metrics` and the dashboard. */
  readonly delayed?: DelayedView;
  readonly access: AccessControl;
  readonly clock: Clock;
  readonly host: string;
  readonly port: number;
  readonly tls?: TlsFiles;
  readonly recentLog?: LogRing;
  /** `node` forces the portable node:http listener even on Bun (tests use it). */
  readonly engine?: "auto" | "node";
}

/** Raised when the HTTP port is taken; `metaq serve` prints its message. */
export class HttpPortInUseError extends Error {
  override readonly name = "HttpPortInUseError";
  readonly code = "EADDRINUSE";
}

export class HttpPart {
  readonly name = "http";
  readonly #options: HttpPartOptions;
  readonly #shutdown = new AbortController();
  #server: HttpServer | undefined;

  constructor(options: HttpPartOptions) {
    this.#options = options;
  }

  /** The bound port, once started. */
  get port(): number | undefined {
    return this.#server?.port;
  }

  async start(): Promise<void> {
    const options = this.#options;
    const app = createAdminApp(options.broker, {
      groups: options.groups,
      cluster: options.cluster,
      uplink: options.uplink,
      delayed: options.delayed,
      recentLog: options.recentLog,
      clock: options.clock,
      signal: this.#shutdown.signal,
      access: options.access,
      requests: options.requests,
      statsItems: options.statsItems,
    });
    try {
      this.#server = await serveHttp({
        fetch: app.fetch,
        host: options.host,
        port: options.port,
        engine: options.engine,
        tls: options.tls,
        bodyBytesMax: HTTP_BODY_BYTES_MAX * 2,
      });
    } catch (error) {
      if ((error as { code?: string }).code !== "EADDRINUSE") throw error;
      throw new HttpPortInUseError(
        `Cannot listen on ${options.host}:${options.port} for HTTP: the address is in use; ` +
          "pick another --http-port, or use --no-http",
      );
    }
  }

  async stop(): Promise<void> {
    this.#shutdown.abort();
    // Let the event streams just ended write their last bytes, so clients see a clean end
    // rather than a reset; the close then drops whatever is still open.
    await new Promise((resolve) => setTimeout(resolve, STREAM_END_GRACE_MS));
    await this.#server?.close();
  }
}

/**
 * @module Bun fast path of http_server.ts: Bun.serve hands the handler a web Request directly.
 * The global is looked up, not declared, so `deno check` needs no Bun types.
 */
import type { HttpServer, HttpServerOptions } from "./http_server.ts";

/** The few parts of Bun.serve this file uses. */
interface BunServer {
  readonly port: number;
  stop(closeActiveConnections?: boolean): Promise<void> | void;
}
interface BunGlobal {
  serve(options: {
    hostname: string;
    port: number;
    idleTimeout: number;
    maxRequestBodySize: number;
    tls?: { cert: string; key: string };
    fetch(request: Request): Response | Promise<Response>;
  }): BunServer;
}

/**
 * Seconds a connection may stay silent. Event streams send a comment line more often than this
 * (see lib/http/sse.ts), so only dead connections reach it.
 */
const IDLE_TIMEOUT_SECONDS = 60;

export function serveWithBun(options: HttpServerOptions): Promise<HttpServer> {
  const bun = (globalThis as { Bun?: BunGlobal }).Bun;
  if (!bun) return Promise.reject(new Error("Cannot use Bun.serve: not running on Bun"));
  let server: BunServer;
  try {
    server = bun.serve({
      hostname: options.host,
      port: options.port,
      idleTimeout: IDLE_TIMEOUT_SECONDS,
      maxRequestBodySize: options.bodyBytesMax,
      ...(options.tls ? { tls: { cert: options.tls.cert, key: options.tls.key } } : {}),
      fetch: (request) => options.fetch(request),
    });
  } catch (error) {
    return Promise.reject(error);
  }
  let closing: Promise<void> | undefined;
  return Promise.resolve({
    port: server.port,
    engine: "bun",
    close: () => closing ??= Promise.resolve(server.stop(true)),
  });
}

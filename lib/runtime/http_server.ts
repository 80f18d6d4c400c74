/**
 * @module HTTP listener for a fetch-style handler (`(Request) => Response`), such as a Hono app's
 * `fetch`. On Bun it uses Bun.serve; everywhere else (Deno, Node) it bridges node:http to the
 * handler. The app never listens by itself: lib/http builds it, this file serves it.
 */
import { serveWithBun } from "./http_server_bun.ts";
import { serveWithNodeHttp } from "./http_server_node.ts";

export type FetchHandler = (request: Request) => Response | Promise<Response>;

export interface HttpServerOptions {
  readonly fetch: FetchHandler;
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /**
   * Largest body the runtime itself lets through. Keep it above the app's own limit, so that the
   * app answers oversized requests in its own format before the runtime does.
   */
  readonly bodyBytesMax: number;
  /** `auto` uses Bun.serve when running on Bun; `node` forces the portable node:http bridge. */
  readonly engine?: "auto" | "node";
  /** Serve HTTPS with this PEM certificate chain and key. */
  readonly tls?: { readonly cert: string; readonly key: string };
}

export interface HttpServer {
  /** Port actually bound. */
  readonly port: number;
  /** Which implementation serves: `bun`, `node:http` or (with TLS) `node:https`. */
  readonly engine: "bun" | "node:http" | "node:https";
  /** Stops accepting and closes every open connection, streams included. */
  close(): Promise<void>;
}

/** Starts listening; rejects with an error whose `code` is `EADDRINUSE` when the port is taken. */
export function serveHttp(options: HttpServerOptions): Promise<HttpServer> {
  if ((options.engine ?? "auto") === "auto" && runtimeName() === "bun") {
    return serveWithBun(options);
  }
  return serveWithNodeHttp(options);
}

/** The JavaScript runtime this process runs on. */
export function runtimeName(): "bun" | "deno" | "node" {
  const global = globalThis as { Bun?: unknown; Deno?: unknown };
  if (global.Bun !== undefined) return "bun";
  if (global.Deno !== undefined) return "deno";
  return "node";
}

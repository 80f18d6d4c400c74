/**
 * @module Portable path of http_server.ts: a node:http server (Node, Deno, Bun) bridged to a
 * fetch-style handler. The request body is a ReadableStream that pulls from the socket only as
 * the handler reads, so a handler can refuse an oversized body before it arrives whole; the
 * response body is written with backpressure, and a client that goes away cancels it (which is
 * how an event stream learns to stop).
 */
import * as http from "node:http";
import * as https from "node:https";
import type * as net from "node:net";
import type { HttpServer, HttpServerOptions } from "./http_server.ts";

/** Bytes of request body buffered ahead of the handler before the socket is paused. */
const BODY_BUFFER_BYTES = 64 * 1024;

export function serveWithNodeHttp(options: HttpServerOptions): Promise<HttpServer> {
  const sockets = new Set<net.Socket>();
  const handler = (request: http.IncomingMessage, response: http.ServerResponse) => {
    void bridge(options, request, response);
  };
  const server = options.tls
    ? https.createServer({ cert: options.tls.cert, key: options.tls.key }, handler)
    : http.createServer(handler);
  server.on("connection", (socket: net.Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      server.on("error", () => {}); // after start-up, per-connection errors are handled there
      let closing: Promise<void> | undefined;
      resolve({
        port: (server.address() as net.AddressInfo).port,
        engine: options.tls ? "node:https" : "node:http",
        close: () =>
          closing ??= new Promise((done) => {
            server.close(() => done());
            for (const socket of sockets) socket.destroy();
          }),
      });
    });
  });
}

async function bridge(
  options: HttpServerOptions,
  request: http.IncomingMessage,
  response: http.ServerResponse,
): Promise<void> {
  const aborted = new AbortController();
  response.once("close", () => aborted.abort());
  let body: ReadableStream<Uint8Array> | undefined;
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  try {
    const method = request.method ?? "GET";
    body = method === "GET" || method === "HEAD" ? undefined : bodyStream(request);
    const headers = new Headers();
    for (let index = 0; index + 1 < request.rawHeaders.length; index += 2) {
      headers.append(request.rawHeaders[index], request.rawHeaders[index + 1]);
    }
    const host = headers.get("host") ?? `${options.host}:${options.port}`;
    const init: RequestInit & { duplex?: "half" } = {
      method,
      headers,
      body,
      signal: aborted.signal,
    };
    if (body) init.duplex = "half";
    const answer = await options.fetch(new Request(`http://${host}${request.url ?? "/"}`, init));
    const head: Record<string, string | string[]> = {};
    answer.headers.forEach((value, name) => {
      head[name] = name === "set-cookie" ? answer.headers.getSetCookie() : value;
    });
    // A body the handler did not read to the end (refused as too large) cannot be skipped
    // safely on a kept-alive connection, so the connection closes after this response.
    if (body && !request.complete) head.connection = "close";
    response.writeHead(answer.status, head);
    if (!answer.body) return void response.end();
    response.flushHeaders();
    reader = answer.body.getReader();
    aborted.signal.addEventListener("abort", () => void reader?.cancel().catch(() => {}));
    for (;;) {
      const { done, value } = await reader.read();
      if (done || aborted.signal.aborted) break;
      if (!response.write(value)) await drained(response);
    }
    response.end();
  } catch {
    // The handler threw (Hono answers errors itself, so this is a broken connection or a
    // programmer error already logged by the app): drop the connection rather than hang it.
    response.destroy();
  } finally {
    if (body && !request.complete) response.once("finish", () => request.socket.destroy());
  }
}

/** The request body as a stream that pauses the socket while the handler is not reading. */
function bodyStream(request: http.IncomingMessage): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      request.on("data", (chunk: Uint8Array) => {
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 0) <= 0) request.pause();
      });
      request.once("end", () => controller.close());
      request.once("error", (error) => controller.error(error));
    },
    pull() {
      request.resume();
    },
    cancel() {
      request.pause();
      request.removeAllListeners("data");
    },
  }, { highWaterMark: BODY_BUFFER_BYTES, size: (chunk) => chunk.byteLength });
}

/** Resolves when `response` can take more data, or when its connection is gone. */
function drained(response: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      response.off("drain", done);
      response.off("close", done);
      resolve();
    };
    response.once("drain", done);
    response.once("close", done);
  });
}

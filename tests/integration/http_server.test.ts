import { describe, expect, test } from "bun:test";
import * as net from "node:net";
import { BrokerError } from "../../lib/errors.ts";
import { errorResponse, readBody } from "../../lib/http/respond.ts";
import { Doorbell, type SseEvent, sseResponse } from "../../lib/http/sse.ts";
import { type HttpServer, serveHttp } from "../../lib/runtime/http_server.ts";

const BODY_LIMIT = 1024 * 1024;

/** A handler with what the runtime must carry: bodies both ways, a limit, and an event stream. */
function handler(events: { open: number; closed: number; bell: Doorbell; shutdown: AbortSignal }) {
  return async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    try {
      if (url.pathname === "/echo") {
        const body = await readBody(request, BODY_LIMIT);
        return new Response(body as Uint8Array<ArrayBuffer>, {
          headers: { "x-method": request.method, "x-query": url.search },
        });
      }
      if (url.pathname === "/events") {
        events.open += 1;
        let sent = 0;
        return sseResponse({
          next: (): SseEvent[] => (sent < 1 ? [{ id: String(++sent), data: "hello" }] : []),
          wait: (signal) => events.bell.wait(signal),
          close: () => void (events.closed += 1),
        }, { shutdown: events.shutdown, heartbeatMs: 60_000 });
      }
      return new Response("not here", { status: 404 });
    } catch (error) {
      if (error instanceof BrokerError) return errorResponse(error);
      throw error;
    }
  };
}

/** Sends raw bytes and collects what comes back until `until` matches or time runs out. */
async function rawExchange(port: number, request: string, until: RegExp): Promise<string> {
  const socket = net.connect(port, "127.0.0.1");
  let received = "";
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    socket.write(request);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 5000);
      socket.on("data", (chunk) => {
        received += chunk.toString();
        if (until.test(received)) {
          clearTimeout(timer);
          resolve();
        }
      });
      socket.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    return received;
  } finally {
    socket.destroy();
  }
}

for (const engine of ["auto", "node"] as const) {
  describe(`HTTP listener (${engine === "auto" ? "Bun.serve" : "node:http bridge"})`, () => {
    async function start() {
      const shutdown = new AbortController();
      const events = { open: 0, closed: 0, bell: new Doorbell(), shutdown: shutdown.signal };
      const server: HttpServer = await serveHttp({
        fetch: handler(events),
        host: "127.0.0.1",
        port: 0,
        bodyBytesMax: BODY_LIMIT * 4,
        engine,
      });
      const base = `http://127.0.0.1:${server.port}`;
      return {
        server,
        base,
        events,
        shutdown,
        [Symbol.asyncDispose]: async () => {
          shutdown.abort();
          await server.close();
        },
      };
    }

    test("it serves requests with bodies both ways on a real port", async () => {
      await using running = await start();
      expect(running.server.engine).toBe(engine === "auto" ? "bun" : "node:http");
      const payload = new Uint8Array(300_000).map((_, i) => i % 251);
      const response = await fetch(`${running.base}/echo?x=1`, { method: "PUT", body: payload });
      expect(response.status).toBe(200);
      expect(response.headers.get("x-method")).toBe("PUT");
      expect(response.headers.get("x-query")).toBe("?x=1");
      expect(new Uint8Array(await response.arrayBuffer())).toEqual(payload);
      expect((await fetch(`${running.base}/nothing`)).status).toBe(404);
    });

    test("a declared body over the limit gets the app's 413 before it is sent", async () => {
      await using running = await start();
      const reply = await rawExchange(
        running.server.port,
        "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 2000000\r\n\r\n{",
        /\r\n\r\n[\s\S]*\}/,
      );
      expect(reply).toStartWith("HTTP/1.1 413");
      expect(reply).toContain('"kind":"requestTooLarge"');
    });

    test("a streamed body over the limit is cut off with 413", async () => {
      await using running = await start();
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent >= 8 * BODY_LIMIT) return controller.close();
          sent += 64 * 1024;
          controller.enqueue(new Uint8Array(64 * 1024));
        },
      });
      const response = await fetch(`${running.base}/echo`, {
        method: "POST",
        body,
        duplex: "half",
      } as RequestInit).catch((error: Error) => error);
      // The server may close the connection while the client is still sending; either way it
      // must have answered 413 or refused, never echoed the body.
      if (response instanceof Response) expect(response.status).toBe(413);
      else expect(response.message).toMatch(/reset|closed|socket|broken|EPIPE/i);
    });

    test("a client that leaves an event stream releases it; close() ends open streams", async () => {
      await using running = await start();
      const leaving = new AbortController();
      const first = await fetch(`${running.base}/events`, { signal: leaving.signal });
      const reader = first.body!.getReader();
      let text = "";
      for (let reads = 0; reads < 10 && !text.includes("data: hello"); reads++) {
        text += new TextDecoder().decode((await reader.read()).value);
      }
      expect(text).toContain("id: 1\ndata: hello\n\n");
      leaving.abort();
      for (let waits = 0; waits < 100 && running.events.closed < 1; waits++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(running.events.closed).toBe(1);

      const second = await fetch(`${running.base}/events`);
      const open = second.body!.getReader();
      await open.read();
      running.shutdown.abort();
      await running.server.close();
      const ended = await Promise.race([
        drain(open).then(() => "ended"),
        new Promise((resolve) => setTimeout(() => resolve("still open"), 3000)),
      ]);
      expect(ended).toBe("ended");
      expect(running.events.closed).toBe(2);
    });

    test("a port in use is reported as EADDRINUSE", async () => {
      await using running = await start();
      const taken = await serveHttp({
        fetch: () => new Response("x"),
        host: "127.0.0.1",
        port: running.server.port,
        bodyBytesMax: 1024,
        engine,
      }).catch((error) => error);
      expect((taken as { code?: string }).code).toBe("EADDRINUSE");
    });
  });
}

/** Reads until the stream ends or errors (a reset connection also ends it), at most 100 reads. */
async function drain(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
  try {
    for (let reads = 0; reads < 100; reads++) if ((await reader.read()).done) return;
  } catch {
    return;
  }
}

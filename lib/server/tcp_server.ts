/**
 * @module TCP server for the client port (node:net, so it runs on Bun, Deno and Node). Accepts
 * connections, wraps each socket as a Connection's transport, and applies the per-connection
 * bounds: reading stops while too many requests are unanswered or too many reply bytes wait
 * for a slow reader, so a client can never make the broker buffer without limit.
 */
import * as net from "node:net";
import type { RequestContext } from "../broker/broker.ts";
import { printable } from "../config/names.ts";
import { OUTPUT_BYTES_PER_CONNECTION_MAX, PENDING_REQUESTS_PER_CONNECTION_MAX } from "../limits.ts";
import type { Logger } from "../log.ts";
import { Connection } from "./connection.ts";
import type { Router } from "./router.ts";

export interface TcpServerOptions {
  readonly router: Router;
  readonly host: string;
  readonly port: number;
  readonly logger: Logger;
  readonly bodyBytesMax: number;
  readonly pendingMax?: number;
  readonly outputBytesMax?: number;
  readonly connectionsMax?: number;
}

export class TcpServer {
  readonly #options: TcpServerOptions;
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #nextId = 1;

  constructor(options: TcpServerOptions) {
    this.#options = options;
    this.#server = net.createServer({ noDelay: true }, (socket) => this.#accept(socket));
  }

  get connectionCount(): number {
    return this.#sockets.size;
  }

  /** Starts listening; resolves with the bound port (useful with port 0). */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(this.#options.port, this.#options.host, () => {
        this.#server.off("error", reject);
        resolve((this.#server.address() as net.AddressInfo).port);
      });
    });
  }

  /** Stops accepting, closes every connection, and resolves when the listener is closed. */
  close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #accept(socket: net.Socket): void {
    const { logger, router } = this.#options;
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const connectionsMax = this.#options.connectionsMax ?? Infinity;
    if (this.#sockets.size >= connectionsMax) {
      logger.log("warn", "Refusing connection: too many connections", {
        peer,
        limit: connectionsMax,
      });
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    socket.setNoDelay(true);
    const context: RequestContext = { connectionId: this.#nextId++, peer };
    const outputMax = this.#options.outputBytesMax ?? OUTPUT_BYTES_PER_CONNECTION_MAX;
    let pausedForRequests = false;
    let pausedForOutput = false;
    const updateReading = () => {
      if (pausedForRequests || pausedForOutput) socket.pause();
      else socket.resume();
    };
    const connection = new Connection({
      router,
      context,
      bodyBytesMax: this.#options.bodyBytesMax,
      pendingMax: this.#options.pendingMax ?? PENDING_REQUESTS_PER_CONNECTION_MAX,
      transport: {
        send: (bytes) => {
          if (socket.destroyed) return;
          socket.write(bytes);
          if (!pausedForOutput && socket.writableLength > outputMax) {
            pausedForOutput = true;
            updateReading();
          }
        },
        end: () => socket.end(),
        destroy: () => socket.destroy(),
        pause: () => {
          pausedForRequests = true;
          updateReading();
        },
        resume: () => {
          pausedForRequests = false;
          updateReading();
        },
      },
      onDecodeError: (reason) =>
        logger.log("warn", "Closing connection: malformed request", {
          peer,
          reason: printable(reason, 120),
        }),
    });
    socket.on("data", (chunk: Uint8Array) => connection.receive(chunk));
    socket.on("drain", () => {
      if (pausedForOutput) {
        pausedForOutput = false;
        updateReading();
      }
    });
    socket.on(
      "error",
      (error) => logger.log("debug", "Connection error", { peer, reason: error.message }),
    );
    socket.on("close", () => {
      this.#sockets.delete(socket);
      connection.close("peer closed");
      router.connectionClosed(context);
    });
  }
}

/**
 * @module TCP server for the client port (node:net, or node:tls when a certificate is given; both
 * run on Bun, Deno and Node). Accepts connections, wraps each socket as a Connection's transport,
 * and applies the bounds that keep a client from holding resources without end:
 *
 * | bound                              | when exceeded                                        |
 * | ---------------------------------- | ---------------------------------------------------- |
 * | connectionsMax, connectionsPerIpMax| the new connection is closed at once, logged, counted |
 * | pendingMax (unanswered requests)   | reading pauses until half of them are answered        |
 * | outputBytesMax (replies buffered)  | reading pauses until the peer reads                   |
 * | lineBytesMax, bodyBytesMax         | the parser refuses (see lib/protocol/parser.ts)       |
 * | idleTimeoutMs                      | silent with nothing pending: closed                   |
 * | frameTimeoutMs                     | a frame or TLS handshake left unfinished: closed      |
 *
 * Every request passes the connection's Gate (authentication, permissions) first.
 */
import * as net from "node:net";
import type * as tls from "node:tls";
import type { RequestContext } from "../protocol/reply.ts";
import { printable } from "../protocol/names.ts";
import {
  AUTH_FAILURES_MAX,
  OUTPUT_BYTES_PER_CONNECTION_MAX,
  PENDING_REQUESTS_PER_CONNECTION_MAX,
  SHUTDOWN_DRAIN_MS,
} from "../limits.ts";
import type { Logger } from "../log.ts";
import { AccessControl } from "../security/access.ts";
import { Gate } from "../security/gate.ts";
import type { TlsFiles } from "../security/tls.ts";
import { Connection } from "./connection.ts";
import type { Counters } from "../broker/stats.ts";
import type { Requests } from "./edge.ts";
import { SHUTTING_DOWN_REASON } from "../protocol/shutdown.ts";
import { fileToSocket, socketDescriptor } from "../runtime/file_to_socket.ts";

export interface TcpServerOptions {
  /** Where decoded requests go (the edge). */
  readonly requests: Requests;
  /** The broker's counters this port adds to (refused and timed-out connections, auth). */
  readonly counters: Counters;
  readonly host: string;
  readonly port: number;
  readonly logger: Logger;
  readonly bodyBytesMax: number;
  readonly pendingMax?: number;
  readonly outputBytesMax?: number;
  readonly connectionsMax?: number;
  readonly connectionsPerIpMax?: number;
  readonly lineBytesMax?: number;
  /** 0 or absent: never. */
  readonly idleTimeoutMs?: number;
  readonly frameTimeoutMs?: number;
  /** Users and permissions; absent or empty: no authentication. */
  readonly access?: AccessControl;
  readonly maxAuthFailures?: number;
  /** Serve TLS with this certificate and key. */
  readonly tls?: TlsFiles;
}

interface Tracked {
  readonly socket: net.Socket;
  readonly ip: string;
  connection: Connection | undefined;
  lastActivityMs: number;
  /** When the current unfinished frame (or the TLS handshake) began. */
  frameStartedMs: number | undefined;
}

/** At shutdown, the quiet (nothing read or written) after which a told connection closes. */
const DRAIN_QUIET_MS = 50;
/** The same for a connection that sent nothing since the drain began (never told). */
const DRAIN_IDLE_MS = 500;

/** How often the timeouts are checked, at most. */
const TIMER_MS_MAX = 1000;

export class TcpServer {
  readonly #options: TcpServerOptions;
  #server: net.Server | undefined;
  readonly #tracked = new Map<net.Socket, Tracked>();
  readonly #perIp = new Map<string, number>();
  readonly #access: AccessControl;
  #timer: ReturnType<typeof setInterval> | undefined;
  #nextId = 1;
  #draining = false;

  constructor(options: TcpServerOptions) {
    this.#options = options;
    this.#access = options.access ?? new AccessControl([]);
  }

  /**
   * The listener: node:tls is imported only when a certificate is given (on Bun, loading it
   * costs a broker ~20 ms of start-up, more than the rest of the client port together).
   */
  async #createServer(): Promise<net.Server> {
    const options = this.#options;
    if (options.tls) {
      const tls = await import("node:tls");
      const server = tls.createServer({
        cert: options.tls.cert,
        key: options.tls.key,
        // The frame timer closes slow handshakes; this is the runtime's own backstop.
        handshakeTimeout: options.frameTimeoutMs || 120_000,
      }, (socket) => this.#secured(socket));
      server.on("connection", (socket: net.Socket) => this.#admit(socket, true));
      server.on("tlsClientError", () => {}); // a failed handshake closes that socket only
      return server;
    }
    return net.createServer({ noDelay: true }, (socket) => {
      if (this.#admit(socket, false)) this.#serve(socket, socket);
    });
  }

  get connectionCount(): number {
    return this.#tracked.size;
  }

  /** Starts listening; resolves with the bound port (useful with port 0). */
  async listen(): Promise<number> {
    const server = this.#server ??= await this.#createServer();
    return await new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#options.port, this.#options.host, () => {
        server.off("error", reject);
        this.#startTimer();
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  }

  /**
   * Stops accepting; requests read from now on are refused with 503 while those in flight are
   * answered (at most `drainMs`), so a client never loses the answer to a request the broker
   * took; then closes every connection. Resolves when the listener is closed.
   */
  async close(drainMs = SHUTDOWN_DRAIN_MS): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    const server = this.#server;
    const closed = server
      ? new Promise<void>((resolve) => server.close(() => resolve()))
      : Promise.resolve();
    this.#draining = true;
    for (const tracked of this.#tracked.values()) tracked.connection?.drain(SHUTTING_DOWN_REASON);
    const deadline = performance.now() + drainMs;
    // A connection may close once everything it sent is answered and it is quiet: briefly after
    // it was told (a 503: its client knows this broker is going), longer when it was not (a
    // client that sent a moment ago is likely to send again: better that request is read and
    // refused than lost unanswered in the close, its outcome unknown to the client). Requests
    // still on their way in (a proxy's buffer) are read and refused too.
    const closable = ({ connection, lastActivityMs }: Tracked, now: number) =>
      connection === undefined || connection.closed ||
      (connection.settled &&
        now - lastActivityMs >= (connection.toldDraining ? DRAIN_QUIET_MS : DRAIN_IDLE_MS));
    while (performance.now() < deadline) {
      const now = performance.now();
      if ([...this.#tracked.values()].every((tracked) => closable(tracked, now))) break;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    for (const socket of this.#tracked.keys()) socket.destroy();
    await closed;
  }

  /** Counts a new raw connection against the limits; false when it was refused and closed. */
  #admit(socket: net.Socket, handshaking: boolean): boolean {
    const { logger } = this.#options;
    const ip = socket.remoteAddress ?? "unknown";
    const connectionsMax = this.#options.connectionsMax ?? Infinity;
    const perIpMax = this.#options.connectionsPerIpMax ?? Infinity;
    const fromIp = this.#perIp.get(ip) ?? 0;
    if (this.#tracked.size >= connectionsMax || fromIp >= perIpMax) {
      const perIp = this.#tracked.size < connectionsMax;
      logger.log("warn", "Refusing connection: too many connections", {
        peer: `${ip}:${socket.remotePort}`,
        limit: perIp ? `maxConnectionsPerIp=${perIpMax}` : `maxConnections=${connectionsMax}`,
      });
      this.#options.counters.connectionsRefused += 1;
      socket.on("error", () => {});
      socket.destroy();
      return false;
    }
    const now = performance.now();
    this.#tracked.set(socket, {
      socket,
      ip,
      connection: undefined,
      lastActivityMs: now,
      frameStartedMs: handshaking ? now : undefined,
    });
    this.#perIp.set(ip, fromIp + 1);
    socket.on("error", (error) =>
      logger.log("debug", "Connection error", {
        peer: `${ip}:${socket.remotePort}`,
        reason: error.message,
      }));
    socket.once("close", () => {
      this.#tracked.delete(socket);
      const left = (this.#perIp.get(ip) ?? 1) - 1;
      if (left === 0) this.#perIp.delete(ip);
      else this.#perIp.set(ip, left);
    });
    return true;
  }

  /**
   * A TLS connection finished its handshake. Node and Deno announced the raw socket it wraps
   * (`_parent`); Bun announced the TLS socket itself.
   */
  #secured(socket: tls.TLSSocket): void {
    const raw = (socket as unknown as { _parent?: net.Socket })._parent;
    if (raw && this.#tracked.has(raw)) return this.#serve(socket, raw);
    if (this.#tracked.has(socket)) return this.#serve(socket, socket);
    if (this.#admit(socket, false)) this.#serve(socket, socket);
  }

  /** Wires `socket` (plain or TLS) to a Connection; `key` is what #tracked knows it by. */
  #serve(socket: net.Socket, key: net.Socket): void {
    const tracked = this.#tracked.get(key);
    if (!tracked) return void socket.destroy();
    const { logger, requests } = this.#options;
    const peer = `${tracked.ip}:${socket.remotePort}`;
    socket.setNoDelay(true);
    tracked.frameStartedMs = undefined;
    // A plain socket on a runtime that can send file bytes into it: `get` bodies go out
    // straight from the segment files (lib/runtime/file_to_socket.ts).
    const fromFiles = !this.#options.tls && fileToSocket !== undefined &&
      socketDescriptor(socket) !== undefined;
    // Connection ids stay below 2^32 - 1, which names the broker's own forwarded requests.
    const context: RequestContext = !fromFiles
      ? { connectionId: this.#nextConnectionId(), peer }
      : { connectionId: this.#nextConnectionId(), peer, sendsFromFiles: true };
    const outputMax = this.#options.outputBytesMax ?? OUTPUT_BYTES_PER_CONNECTION_MAX;
    const counters = this.#options.counters;
    const gate = new Gate(this.#access, {
      onUnauthorized: ({ user, reason, closing }) => {
        counters.authFailures += 1;
        logger.log("warn", "Refusing request: not authenticated", {
          peer,
          user: user === undefined ? undefined : printable(user, 64),
          reason,
          closing,
        });
      },
      onForbidden: ({ user, reason }) => {
        counters.authDenied += 1;
        logger.log("warn", "Refusing request: not permitted", { peer, user, reason });
      },
    }, this.#options.maxAuthFailures ?? AUTH_FAILURES_MAX);
    const connection = new Connection({
      requests,
      context,
      bodyBytesMax: this.#options.bodyBytesMax,
      pendingMax: this.#options.pendingMax ?? PENDING_REQUESTS_PER_CONNECTION_MAX,
      outputBytesMax: outputMax,
      lineBytesMax: this.#options.lineBytesMax,
      gate,
      transport: {
        send: (bytes) => {
          if (socket.destroyed) return false;
          socket.write(bytes);
          tracked.lastActivityMs = performance.now();
          // Nothing left in the socket's own buffer: the kernel took every byte (a write that
          // did not finish leaves the rest, `bytes` itself, queued there). Only on a plain
          // socket: what a TLS layer keeps while it encrypts was not checked, so its frames are
          // never reused (they are collected as before).
          return !this.#options.tls && socket.writableLength === 0;
        },
        sendThen: (bytes, done) => {
          if (socket.destroyed) return;
          // The callback runs once the socket handed the bytes on (an error: never).
          socket.write(bytes, (error) => {
            if (!error) done(!this.#options.tls);
          });
          tracked.lastActivityMs = performance.now();
        },
        end: () => socket.end(),
        destroy: () => socket.destroy(),
        pause: () => socket.pause(),
        resume: () => socket.resume(),
        bufferedBytes: () => socket.writableLength,
        sendFromFile: !fromFiles ? undefined : (send) => {
          if (socket.destroyed || socket.writableLength !== 0) return 0;
          // Asked each time: a closed socket has none (its number may already be another
          // file's), where a copy kept from the start would still name it.
          const socketFd = socketDescriptor(socket);
          if (socketFd === undefined) return 0;
          tracked.lastActivityMs = performance.now();
          return send(socketFd);
        },
      },
      onWriteError: (reason) =>
        logger.log("warn", "Closing connection: a reply could not be finished", {
          peer,
          reason: printable(reason, 120),
        }),
      onDecodeError: (reason) =>
        logger.log("warn", "Closing connection: malformed request", {
          peer,
          reason: printable(reason, 120),
        }),
    });
    tracked.connection = connection;
    if (this.#draining) connection.drain(SHUTTING_DOWN_REASON);
    socket.on("data", (chunk: Uint8Array) => {
      const now = performance.now();
      tracked.lastActivityMs = now;
      connection.receive(chunk);
      if (!connection.inFrame) tracked.frameStartedMs = undefined;
      else tracked.frameStartedMs ??= now;
    });
    socket.on("drain", () => connection.unblock());
    if (socket !== key) socket.on("error", () => {});
    socket.on("close", () => {
      if (socket !== key) key.destroy();
      connection.transportClosed();
      requests.connectionClosed(context);
    });
  }

  #nextConnectionId(): number {
    const id = this.#nextId;
    this.#nextId = id >= 0xffff_fffe ? 1 : id + 1;
    return id;
  }

  #startTimer(): void {
    const idleMs = this.#options.idleTimeoutMs ?? 0;
    const frameMs = this.#options.frameTimeoutMs ?? 0;
    const shortest = Math.min(idleMs || Infinity, frameMs || Infinity);
    if (shortest === Infinity) return;
    this.#timer = setInterval(
      () => this.#expire(idleMs, frameMs),
      Math.max(10, Math.min(TIMER_MS_MAX, shortest / 4)),
    );
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Closes connections that stayed idle, or left a frame unfinished, for too long. */
  #expire(idleMs: number, frameMs: number): void {
    const now = performance.now();
    for (const tracked of this.#tracked.values()) {
      const connection = tracked.connection;
      // While reading is paused, a half-read frame is the broker's doing, not the client's.
      const reading = connection === undefined || !connection.paused;
      const frameExpired = frameMs > 0 && reading && tracked.frameStartedMs !== undefined &&
        now - tracked.frameStartedMs > frameMs;
      const idleExpired = idleMs > 0 && (connection?.pending ?? 0) === 0 &&
        now - tracked.lastActivityMs > idleMs;
      if (!frameExpired && !idleExpired) continue;
      this.#options.counters.connectionsTimedOut += 1;
      this.#options.logger.log("info", "Closing connection: timed out", {
        peer: `${tracked.ip}:${tracked.socket.remotePort}`,
        reason: frameExpired
          ? `frame unfinished for more than frameTimeoutMs=${frameMs}`
          : `idle for more than idleTimeoutMs=${idleMs}`,
      });
      tracked.socket.destroy();
    }
  }
}

/**
 * @module One multiplexed connection to a broker: requests carry opaques, replies are matched
 * by opaque in any order, writes made in one turn leave as one packet, and each request has a
 * deadline checked by a coarse timer (one timer per connection, not one per request). Does not
 * reconnect by itself: the Client above it does.
 */
import * as net from "node:net";
import * as tls from "node:tls";
import type { Command } from "../protocol/commands.ts";
import { encodeExtension } from "../protocol/encoder.ts";
import { Parser } from "../protocol/parser.ts";
import { ConnectionError, errorFromResult, TimeoutError, unsentError } from "./errors.ts";
import { CLIENT_REPLY_BYTES_MAX } from "../limits.ts";
import { concatBytes } from "../bytes.ts";
import { SHUTTING_DOWN_REASON } from "../protocol/shutdown.ts";

export type Reply = Extract<Command, { kind: "result" } | { kind: "value" }>;

interface PendingRequest {
  resolve(reply: Reply): void;
  reject(error: Error): void;
  deadlineMs: number;
  /** Written after the broker said on this connection that it is shutting down. */
  afterShutdown: boolean;
}

export interface ConnectionOptions {
  readonly host: string;
  readonly port: number;
  /** Time allowed for connecting. */
  readonly connectTimeoutMs?: number;
  /** Default time allowed for a reply. */
  readonly requestTimeoutMs?: number;
  /** Largest reply body accepted. */
  readonly replyBytesMax?: number;
  /** Speak TLS to the broker. */
  readonly tls?: ClientTls;
  /** Authenticate (`auth <user> <token>`) before the connection is handed out. */
  readonly auth?: ClientAuth;
}

export interface ClientTls {
  /** PEM CA certificates to trust (default: the runtime's trusted roots). */
  readonly ca?: string;
  /** Name the certificate must be valid for (default: the host dialed). */
  readonly servername?: string;
  /** Accept any certificate (tests and trying things out only: no protection against MITM). */
  readonly insecure?: boolean;
}

export interface ClientAuth {
  readonly user: string;
  readonly token: string;
}

const TIMER_MS = 50;

export class BrokerConnection {
  readonly address: string;
  readonly #socket: net.Socket;
  readonly #parser: Parser;
  readonly #pending = new Map<number, PendingRequest>();
  readonly #requestTimeoutMs: number;
  #opaque = -2147483648;
  #output: Uint8Array[] = [];
  #outputBytes = 0;
  #flushScheduled = false;
  #closed: ConnectionError | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #closeListeners: ((error: ConnectionError) => void)[] = [];
  /** The broker answered a request here with its shutting-down 503. */
  #toldShutdown = false;
  #lastActivityMs = performance.now();
  #receivedAny = false;

  private constructor(socket: net.Socket, options: ConnectionOptions) {
    this.address = `${options.host}:${options.port}`;
    this.#socket = socket;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.#parser = new Parser({ bodyBytesMax: options.replyBytesMax ?? CLIENT_REPLY_BYTES_MAX });
    socket.on("data", (chunk: Uint8Array) => this.#receive(chunk));
    socket.on(
      "error",
      (error) =>
        this.#fail(new ConnectionError(`Connection to ${this.address} failed: ${error.message}`)),
    );
    socket.on("close", () => {
      // A TLS port closes a plaintext request without a word: say what that likely means.
      const hint = !this.#receivedAny && !options.tls && this.#pending.size > 0
        ? " before any reply (a TLS port does that to plaintext: give --tls?)"
        : "";
      this.#fail(new ConnectionError(`Connection to ${this.address} closed${hint}`));
    });
    this.#timer = setInterval(() => this.#expire(), TIMER_MS);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /**
   * Opens a connection (TLS when asked), authenticates when asked, and resolves once it is ready
   * for requests; rejects with ConnectionError when the broker cannot be reached, or with the
   * broker's error (401) when it refuses the credentials.
   */
  static async connect(options: ConnectionOptions): Promise<BrokerConnection> {
    const connection = new BrokerConnection(await dial(options), options);
    if (options.auth) {
      try {
        await connection.authenticate(options.auth);
      } catch (error) {
        connection.close();
        throw error;
      }
    }
    return connection;
  }

  /** Sends `auth <user> <token>`; resolves on 200, throws the broker's error otherwise. */
  async authenticate(auth: ClientAuth): Promise<void> {
    const opaque = this.nextOpaque();
    const reply = await this.request(
      encodeExtension("auth", [auth.user, auth.token], opaque),
      opaque,
    );
    if (reply.kind === "result" && reply.code === 200) return;
    throw errorFromResult(
      reply.kind === "result" ? reply.code : 500,
      new TextDecoder().decode(reply.body),
    );
  }

  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Milliseconds since the last byte was sent or received (for heartbeats). */
  get idleMs(): number {
    return performance.now() - this.#lastActivityMs;
  }

  /** A fresh opaque; counts up from Java's Integer.MIN_VALUE as MetaQ's client does. */
  nextOpaque(): number {
    const opaque = this.#opaque;
    this.#opaque = opaque === 2147483647 ? -2147483648 : opaque + 1;
    return opaque;
  }

  /** Sends `bytes` (a request carrying `opaque`) and resolves with the matching reply. */
  request(bytes: Uint8Array, opaque: number, timeoutMs = this.#requestTimeoutMs): Promise<Reply> {
    if (this.#closed) return Promise.reject(unsentError(this.#closed));
    return new Promise<Reply>((resolve, reject) =>
      this.requestWith(bytes, opaque, resolve, reject, timeoutMs)
    );
  }

  /**
   * `request` with callbacks instead of a promise: for pipelines of many thousands of requests
   * (metaq produce), where a promise and its reactions per request cost more than the request.
   */
  requestWith(
    bytes: Uint8Array,
    opaque: number,
    resolve: (reply: Reply) => void,
    reject: (error: Error) => void,
    timeoutMs = this.#requestTimeoutMs,
  ): void {
    if (this.#closed) return reject(unsentError(this.#closed) as Error);
    this.#pending.set(opaque, {
      resolve,
      reject,
      deadlineMs: performance.now() + timeoutMs,
      afterShutdown: this.#toldShutdown,
    });
    this.send(bytes);
  }

  /** Sends bytes that expect no reply (one-way commands). */
  send(bytes: Uint8Array): void {
    if (this.#closed) throw this.#closed;
    this.#output.push(bytes);
    this.#outputBytes += bytes.length;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.#flush());
    }
  }

  /** Bytes waiting in the socket because the broker reads slower than we write. */
  get bufferedBytes(): number {
    return this.#socket.writableLength + this.#outputBytes;
  }

  /** Resolves when the socket's write buffer has drained. */
  drained(): Promise<void> {
    if (this.#socket.writableLength === 0 || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#socket.once("drain", () => resolve()));
  }

  onClose(listener: (error: ConnectionError) => void): void {
    this.#closeListeners.push(listener);
  }

  close(): void {
    this.#flush();
    this.#socket.end();
    this.#fail(new ConnectionError(`Connection to ${this.address} closed by the client`));
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#output.length === 0 || this.#closed) return;
    const bytes = this.#output.length === 1
      ? this.#output[0]
      : concatBytes(this.#output, this.#outputBytes);
    this.#output = [];
    this.#outputBytes = 0;
    this.#lastActivityMs = performance.now();
    this.#socket.write(bytes);
  }

  #receive(chunk: Uint8Array): void {
    this.#receivedAny = true;
    this.#lastActivityMs = performance.now();
    const { commands, error } = this.#parser.push(chunk);
    for (const command of commands) {
      if (command.kind !== "result" && command.kind !== "value") continue;
      if (command.kind === "result" && command.code === 503 && !this.#toldShutdown) {
        this.#toldShutdown = new TextDecoder().decode(command.body) === SHUTTING_DOWN_REASON;
      }
      const pending = this.#pending.get(command.opaque);
      if (!pending) continue; // late reply to a request that already timed out
      this.#pending.delete(command.opaque);
      pending.resolve(command);
    }
    if (error) {
      this.#socket.destroy();
      this.#fail(new ConnectionError(`Cannot decode reply from ${this.address}: ${error.message}`));
    }
  }

  #expire(): void {
    const now = performance.now();
    for (const [opaque, pending] of this.#pending) {
      if (pending.deadlineMs > now) continue;
      this.#pending.delete(opaque);
      pending.reject(new TimeoutError(`No reply from ${this.address} in time (opaque ${opaque})`));
    }
  }

  #fail(error: ConnectionError): void {
    if (this.#closed) return;
    this.#closed = error;
    if (this.#timer) clearInterval(this.#timer);
    // A draining broker answers what it read before its shutdown and refuses, unserved, all it
    // reads after. A request written after it said so here had no effect: a definite failure
    // its caller may send elsewhere, not an unknown outcome (found by chaos T17: a client that
    // wrote again just as the drained connection closed recorded an indeterminate put).
    const unserved = error.unsent ? error : new ConnectionError(
      `${error.message}: the broker was shutting down and did not serve this request`,
      { cause: error, unsent: true },
    );
    for (const pending of this.#pending.values()) {
      pending.reject(pending.afterShutdown ? unserved : error);
    }
    this.#pending.clear();
    for (const listener of this.#closeListeners) listener(error);
  }
}

/** A connected socket: plain, or TLS once the handshake is done and the certificate checked. */
function dial(options: ConnectionOptions): Promise<net.Socket> {
  const where = `${options.host}:${options.port}`;
  return new Promise((resolve, reject) => {
    const secure = options.tls;
    const socket = secure
      ? tls.connect({
        host: options.host,
        port: options.port,
        ca: secure.ca,
        servername: secure.servername ?? (net.isIP(options.host) ? undefined : options.host),
        rejectUnauthorized: !secure.insecure,
      })
      : net.createConnection({ host: options.host, port: options.port, noDelay: true });
    let connected = false;
    const timeout = setTimeout(() => {
      socket.destroy();
      reject(new ConnectionError(`Cannot connect to ${where}: timed out`));
    }, options.connectTimeoutMs ?? 5000);
    const fail = (reason: string) => {
      clearTimeout(timeout);
      socket.destroy();
      reject(new ConnectionError(`Cannot connect to ${where}: ${reason}`));
    };
    // A plaintext port closes a TLS handshake at once (it is not a command): say so.
    const tlsRefused = " (the port closed the TLS handshake: it does not speak TLS; drop --tls?)";
    let tcpUp = false;
    if (secure) socket.once("connect", () => (tcpUp = true));
    const onError = (error: Error) => fail(`${error.message}${secure && tcpUp ? tlsRefused : ""}`);
    const onClose = () => {
      if (!connected) fail(`connection closed${secure ? tlsRefused : ""}`);
    };
    socket.once("error", onError);
    socket.once("close", onClose);
    socket.once(secure ? "secureConnect" : "connect", () => {
      connected = true;
      clearTimeout(timeout);
      socket.off("error", onError);
      socket.off("close", onClose);
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

/**
 * @module One multiplexed connection to a broker: requests carry opaques, replies are matched
 * by opaque in any order, writes made in one turn leave as one packet, and each request has a
 * deadline checked by a coarse timer (one timer per connection, not one per request). Does not
 * reconnect by itself: the Client above it does.
 */
import * as net from "node:net";
import type { Command } from "../protocol/commands.ts";
import { Parser } from "../protocol/parser.ts";
import { ConnectionError, TimeoutError } from "./errors.ts";

export type Reply = Extract<Command, { kind: "result" } | { kind: "value" }>;

interface PendingRequest {
  resolve(reply: Reply): void;
  reject(error: Error): void;
  deadlineMs: number;
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
}

const TIMER_MS = 50;
const REPLY_BYTES_MAX = 64 * 1024 * 1024;

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
  #lastActivityMs = performance.now();

  private constructor(socket: net.Socket, options: ConnectionOptions) {
    this.address = `${options.host}:${options.port}`;
    this.#socket = socket;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.#parser = new Parser({ bodyBytesMax: options.replyBytesMax ?? REPLY_BYTES_MAX });
    socket.on("data", (chunk: Uint8Array) => this.#receive(chunk));
    socket.on(
      "error",
      (error) =>
        this.#fail(new ConnectionError(`Connection to ${this.address} failed: ${error.message}`)),
    );
    socket.on(
      "close",
      () => this.#fail(new ConnectionError(`Connection to ${this.address} closed`)),
    );
    this.#timer = setInterval(() => this.#expire(), TIMER_MS);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Opens a connection; rejects with ConnectionError when the broker cannot be reached. */
  static connect(options: ConnectionOptions): Promise<BrokerConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({
        host: options.host,
        port: options.port,
        noDelay: true,
      });
      const timeout = setTimeout(() => {
        socket.destroy();
        reject(new ConnectionError(`Cannot connect to ${options.host}:${options.port}: timed out`));
      }, options.connectTimeoutMs ?? 5000);
      socket.once("connect", () => {
        clearTimeout(timeout);
        socket.off("error", onError);
        resolve(new BrokerConnection(socket, options));
      });
      const onError = (error: Error) => {
        clearTimeout(timeout);
        reject(
          new ConnectionError(
            `Cannot connect to ${options.host}:${options.port}: ${error.message}`,
          ),
        );
      };
      socket.once("error", onError);
    });
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
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise<Reply>((resolve, reject) => {
      this.#pending.set(opaque, { resolve, reject, deadlineMs: performance.now() + timeoutMs });
      this.send(bytes);
    });
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
      : join(this.#output, this.#outputBytes);
    this.#output = [];
    this.#outputBytes = 0;
    this.#lastActivityMs = performance.now();
    this.#socket.write(bytes);
  }

  #receive(chunk: Uint8Array): void {
    this.#lastActivityMs = performance.now();
    const { commands, error } = this.#parser.push(chunk);
    for (const command of commands) {
      if (command.kind !== "result" && command.kind !== "value") continue;
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
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
    for (const listener of this.#closeListeners) listener(error);
  }
}

function join(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

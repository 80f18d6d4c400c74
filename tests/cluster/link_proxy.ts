/**
 * @module LinkProxy: an in-process TCP forwarder on 127.0.0.1 whose behaviour changes at run time,
 * per direction. `forward` is the bytes the connecting side sends to the target, `backward` the
 * bytes coming back. Modes work on the byte stream (TCP already hides packet loss and reordering):
 *
 * | mode                     | existing connections                      | new connections |
 * | ------------------------ | ----------------------------------------- | --------------- |
 * | `pass`                   | bytes flow                                | accepted        |
 * | `delay(ms, jitter)`      | each chunk held ms ± jitter, order kept   | accepted        |
 * | `blackhole`              | held open, nothing forwarded (the source  | accepted, held  |
 * |                          | is paused, so its kernel buffers fill up) |                 |
 * | `cut`                    | reset (RST) at once                       | reset at once   |
 * | `throttle(bytes/s)`      | token bucket, 50 ms of burst              | accepted        |
 *
 * Bytes held by `blackhole` or `delay` are delivered, in order, when the mode changes back, as
 * TCP would retransmit them after a partition heals. `cut` is per connection, so it acts on both
 * directions of the connections it touches; a one-way partition is a one-way `blackhole`. Not a
 * packet-level fault injector: loss, duplication and reordering need network namespaces.
 */
import * as net from "node:net";
import type { Random } from "./random.ts";

export type LinkMode =
  | { readonly kind: "pass" }
  | { readonly kind: "delay"; readonly delayMs: number; readonly jitterMs: number }
  | { readonly kind: "blackhole" }
  | { readonly kind: "cut" }
  | { readonly kind: "throttle"; readonly bytesPerSecond: number };

export type Direction = "forward" | "backward";

export const pass = (): LinkMode => ({ kind: "pass" });
export const blackhole = (): LinkMode => ({ kind: "blackhole" });
export const cut = (): LinkMode => ({ kind: "cut" });
export function delay(delayMs: number, jitterMs = 0): LinkMode {
  if (!(delayMs >= 0) || !(jitterMs >= 0) || jitterMs > delayMs) {
    throw new RangeError(`Cannot delay by ${delayMs} ms ± ${jitterMs}: need 0 <= jitter <= delay`);
  }
  return { kind: "delay", delayMs, jitterMs };
}
export function throttle(bytesPerSecond: number): LinkMode {
  if (!(bytesPerSecond >= 1)) {
    throw new RangeError(`Cannot throttle to ${bytesPerSecond} bytes/s: need at least 1`);
  }
  return { kind: "throttle", bytesPerSecond };
}

/** `delay(100±50)`, `throttle(262144B/s)`, `pass`... for logs. */
export function describeMode(mode: LinkMode): string {
  switch (mode.kind) {
    case "delay":
      return `delay(${mode.delayMs}±${mode.jitterMs}ms)`;
    case "throttle":
      return `throttle(${mode.bytesPerSecond}B/s)`;
    default:
      return mode.kind;
  }
}

export interface LinkProxyOptions {
  /** Shown in logs, for example `1->2`. */
  readonly name: string;
  /** Port to listen on, 0 for any free port. */
  readonly port: number;
  readonly targetPort: number;
  /** Jitter draws. */
  readonly random: Random;
}

export interface LinkStats {
  readonly accepted: number;
  readonly refused: number;
  readonly open: number;
  readonly forwardBytes: number;
  readonly backwardBytes: number;
}

const HOST = "127.0.0.1";
/** Queued bytes above which the source socket is paused (bounds memory under blackhole). */
const QUEUE_BYTES_HIGH = 1024 * 1024;
const QUEUE_BYTES_LOW = 256 * 1024;
const THROTTLE_BURST_MS = 50;
const TIMER_MIN_MS = 1;

export class LinkProxy {
  readonly name: string;
  readonly targetPort: number;
  readonly #server: net.Server;
  readonly #random: Random;
  readonly #connections = new Set<ProxiedConnection>();
  readonly #modes: Record<Direction, LinkMode> = { forward: pass(), backward: pass() };
  readonly #counts = { accepted: 0, refused: 0, forwardBytes: 0, backwardBytes: 0 };

  private constructor(options: LinkProxyOptions, server: net.Server) {
    this.name = options.name;
    this.targetPort = options.targetPort;
    this.#random = options.random;
    this.#server = server;
    server.on("connection", (socket) => this.#accept(socket));
  }

  /** Listens on 127.0.0.1:`port`; rejects when the port is taken. */
  static listen(options: LinkProxyOptions): Promise<LinkProxy> {
    return new Promise((resolve, reject) => {
      const server = net.createServer({ noDelay: true, pauseOnConnect: true });
      const proxy = new LinkProxy(options, server);
      server.once("error", reject);
      server.listen(options.port, HOST, () => {
        server.off("error", reject);
        server.on("error", () => {}); // accept errors after listening affect one socket only
        resolve(proxy);
      });
    });
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  mode(direction: Direction): LinkMode {
    return this.#modes[direction];
  }

  /** Changes the mode of one or both directions; takes effect on queued bytes too. */
  setMode(direction: Direction | "both", mode: LinkMode): void {
    if (direction === "both" || direction === "forward") this.#modes.forward = mode;
    if (direction === "both" || direction === "backward") this.#modes.backward = mode;
    if (this.#isCut()) {
      for (const connection of [...this.#connections]) connection.destroy(true);
      return;
    }
    for (const connection of this.#connections) connection.pump();
  }

  stats(): LinkStats {
    return { ...this.#counts, open: this.#connections.size };
  }

  /** Stops listening and resets every connection. */
  close(): Promise<void> {
    for (const connection of [...this.#connections]) connection.destroy(true);
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #isCut(): boolean {
    return this.#modes.forward.kind === "cut" || this.#modes.backward.kind === "cut";
  }

  #accept(client: net.Socket): void {
    if (this.#isCut()) {
      this.#counts.refused += 1;
      client.on("error", () => {});
      client.resetAndDestroy();
      return;
    }
    this.#counts.accepted += 1;
    const connection = new ProxiedConnection({
      client,
      targetPort: this.targetPort,
      random: this.#random,
      mode: (direction) => this.#modes[direction],
      count: (direction, bytes) => {
        if (direction === "forward") this.#counts.forwardBytes += bytes;
        else this.#counts.backwardBytes += bytes;
      },
      closed: (done) => this.#connections.delete(done),
    });
    this.#connections.add(connection);
  }
}

interface ConnectionParts {
  readonly client: net.Socket;
  readonly targetPort: number;
  readonly random: Random;
  readonly mode: (direction: Direction) => LinkMode;
  readonly count: (direction: Direction, bytes: number) => void;
  readonly closed: (connection: ProxiedConnection) => void;
}

/** One accepted socket and its socket to the target, joined by two pipes. */
class ProxiedConnection {
  readonly #client: net.Socket;
  readonly #target: net.Socket;
  readonly #pipes: Pipe[] = [];
  #destroyed = false;
  #closedSockets = 0;

  constructor(parts: ConnectionParts) {
    this.#client = parts.client;
    this.#target = net.createConnection({ host: HOST, port: parts.targetPort, noDelay: true });
    const onClose = () => {
      this.#closedSockets += 1;
      if (this.#closedSockets === 2) {
        this.#dispose();
        parts.closed(this);
      }
    };
    for (const socket of [this.#client, this.#target]) {
      socket.on("error", () => this.destroy(true));
      socket.on("close", onClose);
    }
    this.#target.once("connect", () => {
      if (this.#destroyed) return;
      const pipe = (direction: Direction, source: net.Socket, sink: net.Socket) =>
        new Pipe({
          source,
          sink,
          random: parts.random,
          mode: () => parts.mode(direction),
          count: (bytes) => parts.count(direction, bytes),
        });
      this.#pipes.push(
        pipe("forward", this.#client, this.#target),
        pipe("backward", this.#target, this.#client),
      );
      this.#client.resume(); // paused on connect so nothing was read before the target was up
    });
  }

  pump(): void {
    for (const pipe of this.#pipes) pipe.pump();
  }

  /** Closes both sockets; with `reset`, the peers see a connection reset, not an orderly close. */
  destroy(reset: boolean): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#dispose();
    for (const socket of [this.#client, this.#target]) {
      if (socket.destroyed) continue;
      if (reset && !socket.connecting) socket.resetAndDestroy();
      else socket.destroy();
    }
  }

  #dispose(): void {
    for (const pipe of this.#pipes) pipe.dispose();
  }
}

interface PipeParts {
  readonly source: net.Socket;
  readonly sink: net.Socket;
  readonly random: Random;
  readonly mode: () => LinkMode;
  readonly count: (bytes: number) => void;
}

interface Chunk {
  bytes: Uint8Array;
  releaseAtMs: number | undefined;
}

/** One direction of one connection: a queue the current mode drains. */
class Pipe {
  readonly #parts: PipeParts;
  readonly #queue: Chunk[] = [];
  #queuedBytes = 0;
  #sourceEnded = false;
  #sinkEnded = false;
  #sourcePaused = false;
  #waitingDrain = false;
  #disposed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #lastReleaseMs = 0;
  #tokens = 0;
  #tokensAtMs = 0;

  constructor(parts: PipeParts) {
    this.#parts = parts;
    parts.source.on("data", (chunk: Uint8Array) => this.#push(chunk));
    parts.source.on("end", () => {
      this.#sourceEnded = true;
      this.pump();
    });
  }

  /** Forwards what the current mode lets through now, and schedules the rest. */
  pump(): void {
    if (this.#disposed || this.#waitingDrain) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const now = performance.now();
    while (this.#queue.length > 0) {
      const waitMs = this.#forwardHead(now);
      if (waitMs === undefined) continue;
      if (Number.isFinite(waitMs)) {
        this.#timer = setTimeout(() => this.pump(), Math.max(TIMER_MIN_MS, Math.ceil(waitMs)));
      }
      break;
    }
    if (this.#sourcePaused && this.#queuedBytes <= QUEUE_BYTES_LOW && !this.#waitingDrain) {
      this.#sourcePaused = false;
      this.#parts.source.resume();
    }
    if (this.#queue.length === 0 && this.#sourceEnded && !this.#sinkEnded) {
      this.#sinkEnded = true;
      if (!this.#parts.sink.destroyed) this.#parts.sink.end();
    }
  }

  dispose(): void {
    this.#disposed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#queue.length = 0;
    this.#queuedBytes = 0;
  }

  #push(chunk: Uint8Array): void {
    if (this.#disposed) return;
    const mode = this.#parts.mode();
    const releaseAtMs = mode.kind === "delay"
      ? this.#releaseTime(mode, performance.now())
      : undefined;
    this.#queue.push({ bytes: chunk, releaseAtMs });
    this.#queuedBytes += chunk.length;
    if (this.#queuedBytes > QUEUE_BYTES_HIGH && !this.#sourcePaused) {
      this.#sourcePaused = true;
      this.#parts.source.pause();
    }
    this.pump();
  }

  /**
   * Writes (part of) the head chunk if the mode allows it now. Returns undefined when something
   * was written, the ms to wait before trying again, or Infinity to wait for a mode change.
   */
  #forwardHead(now: number): number | undefined {
    const mode = this.#parts.mode();
    const head = this.#queue[0];
    let bytes = head.bytes;
    if (mode.kind === "blackhole" || mode.kind === "cut") return Infinity;
    if (mode.kind === "delay") {
      head.releaseAtMs ??= this.#releaseTime(mode, now);
      if (head.releaseAtMs > now) return head.releaseAtMs - now;
    }
    if (mode.kind === "throttle") {
      const rate = mode.bytesPerSecond;
      const burst = Math.max(1, (rate * THROTTLE_BURST_MS) / 1000);
      this.#tokens = Math.min(burst, this.#tokens + ((now - this.#tokensAtMs) * rate) / 1000);
      this.#tokensAtMs = now;
      const allowed = Math.floor(this.#tokens);
      if (allowed <= 0) return ((1 - this.#tokens) * 1000) / rate;
      if (allowed < bytes.length) bytes = bytes.subarray(0, allowed);
      this.#tokens -= bytes.length;
    }
    if (bytes.length === head.bytes.length) this.#queue.shift();
    else head.bytes = head.bytes.subarray(bytes.length);
    this.#queuedBytes -= bytes.length;
    this.#parts.count(bytes.length);
    const sink = this.#parts.sink;
    if (sink.destroyed || this.#sinkEnded) return undefined;
    if (!sink.write(bytes)) {
      this.#waitingDrain = true;
      sink.once("drain", () => {
        this.#waitingDrain = false;
        this.pump();
      });
      return Infinity;
    }
    return undefined;
  }

  /** When a chunk arriving now may leave: after the delay ± jitter, never before an earlier one. */
  #releaseTime(mode: { delayMs: number; jitterMs: number }, now: number): number {
    const jitter = mode.jitterMs * (2 * this.#parts.random.float() - 1);
    const at = Math.max(now, this.#lastReleaseMs, now + mode.delayMs + jitter);
    this.#lastReleaseMs = at;
    return at;
  }
}

/**
 * @module Connection: one client's byte stream in, reply bytes out. Decodes with the parser,
 * dispatches through the router, encodes replies with the request's opaque, and tells its
 * transport when to stop reading (too many unanswered requests) and when to close (decode
 * error, quit). No socket here: the transport gives `send`, `close` and `pause/resume`.
 */
import { BrokerError } from "../errors.ts";
import { errorReply, type Reply, type RequestContext } from "../protocol/reply.ts";
import type { Command } from "../protocol/commands.ts";
import { encodeResult } from "../protocol/encoder.ts";
import { Parser } from "../protocol/parser.ts";
import { AUTH_SPEC, AUTH_VERB, type Gate } from "../security/gate.ts";
import type { Requests } from "./edge.ts";

export interface Transport {
  /**
   * Queues bytes for the peer. Returns true when the transport is already done with `bytes`
   * (handed to the kernel in full, nothing of it kept), so their buffer may be reused.
   */
  send(bytes: Uint8Array): boolean | void;
  /** Sends what is queued, then closes. */
  end(): void;
  /** Closes at once. */
  destroy(): void;
  /** Stop and restart reading from the peer (backpressure). */
  pause(): void;
  resume(): void;
  /** Reply bytes sent and not yet taken by the peer. */
  bufferedBytes?(): number;
}

export interface ConnectionOptions {
  /** Where decoded requests go (the edge). */
  readonly requests: Requests;
  readonly context: RequestContext;
  readonly transport: Transport;
  /** Largest request body buffered (puts above it are refused without buffering). */
  readonly bodyBytesMax: number;
  /** Unanswered requests at which reading pauses. */
  readonly pendingMax: number;
  /** Reply bytes waiting for the peer at which reading pauses (default: no bound). */
  readonly outputBytesMax?: number;
  /** Longest command line, CRLF included (default COMMAND_LINE_BYTES_MAX). */
  readonly lineBytesMax?: number;
  /** Authentication and permissions; every request passes it before the router. */
  readonly gate?: Gate;
  readonly onDecodeError: (reason: string) => void;
}

export class Connection {
  readonly context: RequestContext;
  readonly #options: ConnectionOptions;
  readonly #parser: Parser;
  #pending = 0;
  #draining: string | undefined;
  #told = false;
  #paused = false;
  #closed = false;
  #received = false;
  /**
   * Replies gathered this turn: result lines as text (encoded together), value frames as bytes
   * (with their pool's release, called once the transport is done with them).
   */
  #output: (string | Uint8Array | { bytes: Uint8Array; release: () => void })[] = [];
  #outputBytes = 0;
  #flushScheduled = false;
  /**
   * Requests decoded and not yet dispatched because the connection is backed up. One chunk read
   * from the socket may hold thousands of small requests; they wait here instead of each
   * producing a reply at once, so replies never pile up past the bounds.
   */
  #backlog: Command[] = [];
  #dispatching = false;

  constructor(options: ConnectionOptions) {
    this.#options = options;
    this.context = options.context;
    this.#parser = new Parser({
      bodyBytesMax: options.bodyBytesMax,
      extensions: new Map([...options.requests.extensionSpecs, [AUTH_VERB, AUTH_SPEC]]),
      lineBytesMax: options.lineBytesMax,
    });
  }

  /** Whether a request has begun arriving and not ended (for the half-sent-frame timeout). */
  get inFrame(): boolean {
    return this.#parser.inFrame;
  }

  /** Whether reading is paused (too many requests unanswered, or replies not taken). */
  get paused(): boolean {
    return this.#paused;
  }

  /** The peer took buffered replies (the socket drained): carry on with waiting requests. */
  unblock(): void {
    this.#dispatchBacklog();
    this.#applyBackpressure();
  }

  /** Requests read and not yet answered. */
  get pending(): number {
    return this.#pending;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Nothing in flight: every request answered and every reply handed to the socket. */
  get settled(): boolean {
    return this.#pending === 0 && this.#outputBytes === 0 &&
      (this.#options.transport.bufferedBytes?.() ?? 0) === 0;
  }

  /**
   * The broker is shutting down: requests read from now on are answered `503 <reason>`, which
   * tells the client they were not served (it may retry elsewhere); those in flight finish.
   */
  drain(reason: string): void {
    this.#draining = reason;
  }

  /** True once a request was refused because of the drain: the client has been told. */
  get toldDraining(): boolean {
    return this.#told;
  }

  /** Feeds bytes from the peer. */
  receive(chunk: Uint8Array): void {
    if (this.#closed) return;
    if (!this.#received && chunk.length > 0) {
      this.#received = true;
      // A TLS ClientHello (record type 22, version 3.x) where a command should be: the client
      // speaks TLS to a port that does not. Closing at once lets it fail now, not time out.
      if (chunk[0] === 0x16 && (chunk.length < 2 || chunk[1] === 0x03)) {
        this.#options.onDecodeError("a TLS handshake on a port that does not speak TLS");
        this.close("decode error");
        return;
      }
    }
    const { commands, error } = this.#parser.push(chunk);
    for (const command of commands) this.#backlog.push(command);
    this.#dispatchBacklog();
    if (error && !this.#closed) {
      this.#options.onDecodeError(error.message);
      this.#flush();
      this.close("decode error");
      return;
    }
    this.#applyBackpressure();
  }

  /** Dispatches waiting requests in order until the connection is backed up. */
  #dispatchBacklog(): void {
    if (this.#dispatching) return; // a reply given during dispatch: the loop below carries on
    this.#dispatching = true;
    try {
      let next = 0;
      while (next < this.#backlog.length && !this.#closed && !this.#backedUp()) {
        this.#dispatch(this.#backlog[next++]);
      }
      this.#backlog = next === this.#backlog.length ? [] : this.#backlog.slice(next);
    } finally {
      this.#dispatching = false;
    }
  }

  #backedUp(): boolean {
    const outputMax = this.#options.outputBytesMax ?? Infinity;
    const buffered = this.#outputBytes + (this.#options.transport.bufferedBytes?.() ?? 0);
    return this.#pending >= this.#options.pendingMax || buffered > outputMax;
  }

  #dispatch(command: Command): void {
    const requests = this.#options.requests;
    if (command.kind === "quit") {
      this.#flush();
      this.close("quit");
      return;
    }
    if (command.kind === "result" || command.kind === "value") return;
    if (this.#draining !== undefined) {
      if (command.kind === "transaction" && command.type === "END") return; // never answered
      this.#pending += 1;
      this.#told = true;
      this.#reply(errorReply(BrokerError.verbatim("unavailable", this.#draining)), command.opaque);
      return;
    }
    if (this.#options.gate && !this.#admit(command)) return;
    if (command.kind === "transaction" && command.type === "END") {
      requests.dispatch(command, this.context, () => {}); // one-way in MetaQ: never answered
      return;
    }
    this.#pending += 1;
    const opaque = command.opaque;
    requests.dispatch(command, this.context, (reply) => this.#reply(reply, opaque));
  }

  /**
   * Asks the gate about `command`: true lets it through; otherwise the gate's answer is sent
   * (and the connection closed when the gate says so).
   */
  #admit(command: Command): boolean {
    const verdict = this.#options.gate!.check(command);
    if (verdict.kind === "pass") return true;
    const oneWay = command.kind === "quit" ||
      (command.kind === "transaction" && command.type === "END");
    if (verdict.reply && !oneWay) {
      this.#pending += 1;
      this.#reply(verdict.reply, command.opaque);
    }
    if (verdict.close) {
      this.#flush();
      this.close("authentication failed");
    }
    return false;
  }

  /** Closes the connection; replies still in flight are dropped. */
  close(_reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#options.transport.end();
  }

  #reply(reply: Reply, opaque: number): void {
    this.#pending -= 1;
    if (this.#closed) return;
    const bytes = reply.kind === "frame"
      ? reply.bytes
      : reply.ascii && typeof reply.text === "string"
      ? `result ${reply.code} ${reply.text.length} ${opaque}\r\n${reply.text}`
      : resultText(reply.code, reply.text, opaque);
    const release = reply.kind === "frame" ? reply.release : undefined;
    this.#output.push(release ? { bytes: bytes as Uint8Array, release } : bytes);
    this.#outputBytes += bytes.length;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.#flush());
    }
    if (this.#backlog.length > 0 && !this.#dispatching) queueMicrotask(() => this.unblock());
    else if (this.#paused) this.#applyBackpressure();
  }

  /** Sends replies gathered in this turn as one write: acks of a group commit go out together. */
  #flush(): void {
    this.#flushScheduled = false;
    if (this.#output.length === 0 || this.#closed) return;
    const output = this.#output;
    this.#output = [];
    this.#outputBytes = 0;
    let text = "";
    for (const part of output) {
      if (typeof part === "string") {
        text += part;
        continue;
      }
      if (text !== "") this.#options.transport.send(encoder.encode(text));
      text = "";
      if (part instanceof Uint8Array) {
        this.#options.transport.send(part);
      } else if (this.#options.transport.send(part.bytes) === true) {
        part.release();
      }
    }
    if (text !== "") this.#options.transport.send(encoder.encode(text));
    // Replies held here counted against the bound; now the socket holds them (and says
    // `drain` if it is full), so waiting requests may go on.
    if (this.#backlog.length > 0) this.unblock();
  }

  /** Reading stops while requests wait in the backlog or too many are unanswered. */
  #applyBackpressure(): void {
    if (this.#closed) return;
    const max = this.#options.pendingMax;
    const stop = this.#backlog.length > 0 || this.#pending >= max;
    if (!this.#paused && stop) {
      this.#paused = true;
      this.#options.transport.pause();
    } else if (this.#paused && this.#backlog.length === 0 && this.#pending <= max / 2) {
      this.#paused = false;
      this.#options.transport.resume();
    }
  }
}

const encoder = new TextEncoder();

/** `result <code> <bytes> <opaque>\r\n<text>` as a string; binary texts are rare and decoded. */
function resultText(
  code: number,
  text: string | Uint8Array | undefined,
  opaque: number,
): string | Uint8Array {
  if (text === undefined || text === "") return `result ${code} 0 ${opaque}\r\n`;
  if (typeof text !== "string") return encodeResult(code, text, opaque);
  return `result ${code} ${utf8Length(text)} ${opaque}\r\n${text}`;
}

const NON_ASCII = /[\u0080-\uffff]/;

/** Bytes of `text` in UTF-8; replies are nearly always ASCII, where it is the length. */
function utf8Length(text: string): number {
  return NON_ASCII.test(text) ? encoder.encode(text).length : text.length;
}

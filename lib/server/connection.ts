/**
 * @module Connection: one client's byte stream in, reply bytes out. Decodes with the parser,
 * dispatches through the router, encodes replies with the request's opaque, and tells its
 * transport when to stop reading (too many unanswered requests) and when to close (decode
 * error, quit). No socket here: the transport gives `send`, `close` and `pause/resume`.
 */
import { BrokerError, describeError } from "../errors.ts";
import { errorReply, type FrameRest, type Reply, type RequestContext } from "../protocol/reply.ts";
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
  /**
   * Queues bytes and calls `done` once the peer's socket took them (not before, so a caller
   * can wait for it); `reusable` says whether the transport kept nothing of `bytes`. Never
   * called if the connection breaks first.
   */
  sendThen(bytes: Uint8Array, done: (reusable: boolean) => void): void;
  /** Sends what is queued, then closes. */
  end(): void;
  /** Closes at once. */
  destroy(): void;
  /** Stop and restart reading from the peer (backpressure). */
  pause(): void;
  resume(): void;
  /** Reply bytes sent and not yet taken by the peer. */
  bufferedBytes?(): number;
  /**
   * Present where the socket can take bytes straight from a file: calls `send` with the socket's
   * descriptor, but only while nothing of its own is queued (or the file's bytes would overtake
   * it), and returns what `send` returned (bytes the socket took); 0 when it did not call it.
   */
  sendFromFile?(send: (socketFd: number) => number): number;
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
  /** A reply could not be finished (its source went away): the connection is closed. */
  readonly onWriteError?: (reason: string) => void;
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
  #output: OutputPart[] = [];
  /** Reply bytes not yet handed to the transport (the rest of a large frame included). */
  #outputBytes = 0;
  #flushScheduled = false;
  /** The rest of a large frame being written; later replies wait in #output behind it. */
  #streaming: FrameRest | undefined;
  /** Pieces of a large frame handed to the transport and not yet taken by the socket. */
  #piecesInFlight = 0;
  /** Closed while a large frame was being written: end the transport once it is. */
  #endAfterStream = false;
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
    // A large frame half written is finished first (with the replies queued behind it): the
    // peer could not tell a cut frame from the end of the stream.
    if (this.#streaming) this.#endAfterStream = true;
    else {
      this.#dropOutput();
      this.#options.transport.end();
    }
  }

  /**
   * The transport is gone (the socket closed, or destroyed here): the connection is closed, and
   * as nothing more can be written, the frames still queued, the one being written included, let
   * go of what they hold (segment files kept open for them).
   */
  transportClosed(): void {
    this.#closed = true;
    this.#endAfterStream = false;
    this.#streaming?.abandon?.();
    this.#streaming = undefined;
    this.#dropOutput();
  }

  /** Drops the replies not yet handed to the transport. */
  #dropOutput(): void {
    for (const part of this.#output) {
      if (typeof part !== "string" && !(part instanceof Uint8Array)) part.rest?.abandon?.();
    }
    this.#output = [];
    this.#outputBytes = 0;
  }

  #reply(reply: Reply, opaque: number): void {
    this.#pending -= 1;
    if (this.#closed) {
      if (reply.kind === "frame") reply.rest?.abandon?.();
      return;
    }
    if (reply.kind === "frame") {
      const { bytes, release, rest } = reply;
      this.#output.push(release || rest ? { bytes, release, rest } : bytes);
      this.#outputBytes += bytes.length + (rest?.remaining ?? 0);
    } else {
      const text = reply.ascii && typeof reply.text === "string"
        ? `result ${reply.code} ${reply.text.length} ${opaque}\r\n${reply.text}`
        : resultText(reply.code, reply.text, opaque);
      this.#output.push(text);
      this.#outputBytes += text.length;
    }
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
    if (this.#streaming || this.#closed) return;
    this.#write();
    // Replies held here counted against the bound; now the socket holds them (and says
    // `drain` if it is full), so waiting requests may go on.
    if (this.#backlog.length > 0) this.unblock();
  }

  /** Hands every queued reply to the transport, up to and including a large frame's start. */
  #write(): void {
    if (this.#output.length === 0) return;
    const output = this.#output;
    this.#output = [];
    this.#outputBytes = 0;
    const transport = this.#options.transport;
    let text = "";
    for (let index = 0; index < output.length; index++) {
      const part = output[index];
      if (typeof part === "string") {
        text += part;
        continue;
      }
      if (text !== "") transport.send(encoder.encode(text));
      text = "";
      if (part instanceof Uint8Array) {
        transport.send(part);
        continue;
      }
      if (transport.send(part.bytes) === true) part.release?.();
      if (part.rest && part.rest.remaining > 0) {
        // A large frame: its rest goes out as the socket takes it, and the replies after it
        // wait here (in order) until it is all handed over.
        this.#output = output.slice(index + 1);
        this.#outputBytes = part.rest.remaining + partsBytes(this.#output);
        this.#streaming = part.rest;
        this.#pump();
        return;
      }
    }
    if (text !== "") transport.send(encoder.encode(text));
  }

  /**
   * Hands the next pieces of a large frame to the transport, two ahead of what the socket took
   * (the next piece is queued when the kernel takes one), so a slow reader holds at most two.
   */
  #pump(): void {
    const rest = this.#streaming;
    if (!rest) return;
    const transport = this.#options.transport;
    // A socket may call back at once: a nested call can finish this frame (and start the next),
    // so each step checks that this frame is still the one being written.
    while (
      this.#streaming === rest && this.#piecesInFlight < PIECES_IN_FLIGHT && rest.remaining > 0
    ) {
      let piece: ReturnType<FrameRest["next"]>;
      try {
        // Straight from the file while the socket takes it; once it is full, a piece read into
        // a buffer waits in the socket and calls back when taken, which brings this back here.
        const direct = rest.sendTo && this.#piecesInFlight === 0 && transport.sendFromFile
          ? transport.sendFromFile((socketFd) => rest.sendTo!(socketFd))
          : 0;
        if (direct > 0) {
          this.#outputBytes -= direct;
          continue;
        }
        piece = rest.next();
      } catch (error) {
        // The frame's source went away (its segment deleted): it cannot be finished, and the
        // peer could not tell a cut frame from the next reply.
        this.#options.onWriteError?.(describeError(error));
        this.transportClosed();
        transport.destroy();
        return;
      }
      this.#outputBytes -= piece.bytes.length;
      this.#piecesInFlight += 1;
      transport.sendThen(piece.bytes, (reusable) => {
        this.#piecesInFlight -= 1;
        if (reusable) piece.release?.();
        this.#pump();
      });
    }
    if (this.#streaming !== rest || rest.remaining > 0) return;
    this.#streaming = undefined;
    if (this.#closed && !this.#endAfterStream) return;
    this.#write();
    if (this.#streaming) return; // another large frame began; this runs again after it
    if (this.#endAfterStream) this.#options.transport.end();
    else this.unblock();
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

/** A reply waiting to be written: result text, frame bytes, or a frame from a pool or a source. */
type OutputPart =
  | string
  | Uint8Array
  | { bytes: Uint8Array; release?: () => void; rest?: FrameRest };

/** Pieces of a large frame handed to the socket ahead of what it took. */
const PIECES_IN_FLIGHT = 2;

function partsBytes(parts: OutputPart[]): number {
  let bytes = 0;
  for (const part of parts) {
    bytes += typeof part === "string" || part instanceof Uint8Array
      ? part.length
      : part.bytes.length + (part.rest?.remaining ?? 0);
  }
  return bytes;
}

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

/**
 * @module Connection: one client's byte stream in, reply bytes out. Decodes with the parser,
 * dispatches through the router, encodes replies with the request's opaque, and tells its
 * transport when to stop reading (too many unanswered requests) and when to close (decode
 * error, quit). No socket here: the transport gives `send`, `close` and `pause/resume`.
 */
import type { Reply, RequestContext } from "../broker/broker.ts";
import type { Command } from "../protocol/commands.ts";
import { encodeResult } from "../protocol/encoder.ts";
import { Parser } from "../protocol/parser.ts";
import { AUTH_SPEC, AUTH_VERB, type Gate } from "../security/gate.ts";
import type { Router } from "./router.ts";

export interface Transport {
  /** Queues bytes for the peer. */
  send(bytes: Uint8Array): void;
  /** Sends what is queued, then closes. */
  end(): void;
  /** Closes at once. */
  destroy(): void;
  /** Stop and restart reading from the peer (backpressure). */
  pause(): void;
  resume(): void;
}

export interface ConnectionOptions {
  readonly router: Router;
  readonly context: RequestContext;
  readonly transport: Transport;
  /** Largest request body buffered (puts above it are refused without buffering). */
  readonly bodyBytesMax: number;
  /** Unanswered requests at which reading pauses. */
  readonly pendingMax: number;
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
  #paused = false;
  #closed = false;
  /** Replies gathered this turn: result lines as text (encoded together), value frames as bytes. */
  #output: (string | Uint8Array)[] = [];
  #flushScheduled = false;

  constructor(options: ConnectionOptions) {
    this.#options = options;
    this.context = options.context;
    this.#parser = new Parser({
      bodyBytesMax: options.bodyBytesMax,
      extensions: new Map([...options.router.extensionSpecs, [AUTH_VERB, AUTH_SPEC]]),
      lineBytesMax: options.lineBytesMax,
    });
  }

  /** Whether a request has begun arriving and not ended (for the half-sent-frame timeout). */
  get inFrame(): boolean {
    return this.#parser.inFrame;
  }

  /** Whether reading is paused because too many requests wait for replies. */
  get paused(): boolean {
    return this.#paused;
  }

  /** Requests read and not yet answered. */
  get pending(): number {
    return this.#pending;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Feeds bytes from the peer. */
  receive(chunk: Uint8Array): void {
    if (this.#closed) return;
    const { commands, error } = this.#parser.push(chunk);
    const router = this.#options.router;
    for (const command of commands) {
      if (this.#closed) return;
      if (command.kind === "quit") {
        this.#flush();
        this.close("quit");
        return;
      }
      if (command.kind === "result" || command.kind === "value") continue;
      if (this.#options.gate && !this.#admit(command)) {
        if (this.#closed) return;
        continue;
      }
      if (command.kind === "transaction" && command.type === "END") {
        router.dispatch(command, this.context, () => {}); // one-way in MetaQ: never answered
        continue;
      }
      this.#pending += 1;
      const opaque = command.opaque;
      router.dispatch(command, this.context, (reply) => this.#reply(reply, opaque));
    }
    if (error) {
      this.#options.onDecodeError(error.message);
      this.#flush();
      this.close("decode error");
      return;
    }
    this.#applyBackpressure();
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
    this.#output.push(
      reply.kind === "frame" ? reply.bytes : resultText(reply.code, reply.text, opaque),
    );
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.#flush());
    }
    if (this.#paused) this.#applyBackpressure();
  }

  /** Sends replies gathered in this turn as one write: acks of a group commit go out together. */
  #flush(): void {
    this.#flushScheduled = false;
    if (this.#output.length === 0 || this.#closed) return;
    const output = this.#output;
    this.#output = [];
    let text = "";
    for (const part of output) {
      if (typeof part === "string") {
        text += part;
        continue;
      }
      if (text !== "") this.#options.transport.send(encoder.encode(text));
      text = "";
      this.#options.transport.send(part);
    }
    if (text !== "") this.#options.transport.send(encoder.encode(text));
  }

  #applyBackpressure(): void {
    const max = this.#options.pendingMax;
    if (!this.#paused && this.#pending >= max) {
      this.#paused = true;
      this.#options.transport.pause();
    } else if (this.#paused && this.#pending <= max / 2) {
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

/**
 * @module Server-Sent Events: the framing (`id:`, `event:`, `data:` lines and a blank line), and a
 * pull-driven Response body. The stream asks its source for events only when the client has
 * taken the previous ones (backpressure), sleeps on the source's wake-up signal otherwise (never
 * polling), sends a comment line as a heartbeat, and ends when the client leaves or the broker
 * shuts down. How many streams may be open at once is bounded by StreamLimit.
 */
import { BrokerError } from "../errors.ts";
import { errorBody } from "./respond.ts";

export interface SseEvent {
  readonly id?: string;
  readonly event?: string;
  readonly data: string;
}

/** Where a stream's events come from. */
export interface SseSource {
  /** Events ready now, possibly none. A BrokerError is sent as an `error` event, then the end. */
  next(): SseEvent[] | Promise<SseEvent[]>;
  /** Resolves when next() may have more, or when `signal` aborts. */
  wait(signal: AbortSignal): Promise<void>;
  /** Releases what the source holds (listeners, timers). Called once. */
  close(): void;
}

export interface SseOptions {
  /** Aborted when the broker shuts down: the stream ends. */
  readonly shutdown: AbortSignal;
  /** Comment line sent after this long without events, so proxies and idle timers keep it. */
  readonly heartbeatMs: number;
  /** Called once when the stream ends for any reason. */
  readonly onClose?: () => void;
}

export const HEARTBEAT_MS = 15_000;
/** Wake-ups one pull may absorb without an event before it sends a heartbeat instead. */
const WAKES_PER_PULL_MAX = 64;

export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no",
} as const;

export function formatEvent(event: SseEvent): string {
  let text = "";
  if (event.id !== undefined) text += `id: ${event.id.replace(/[\r\n]/g, "")}\n`;
  if (event.event !== undefined) text += `event: ${event.event.replace(/[\r\n]/g, "")}\n`;
  for (const line of event.data.split(/\r\n|\r|\n/)) text += `data: ${line}\n`;
  return `${text}\n`;
}

/** A `text/event-stream` response fed by `source`. */
export function sseResponse(source: SseSource, options: SseOptions): Response {
  const encoder = new TextEncoder();
  const stop = new AbortController();
  let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  let pulling = false;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    options.shutdown.removeEventListener("abort", onShutdown);
    stop.abort();
    source.close();
    options.onClose?.();
  };
  const onShutdown = () => {
    stop.abort();
    if (pulling) return; // the pull in progress sees the abort and closes the stream
    finish();
    closeQuietly(controller);
  };
  options.shutdown.addEventListener("abort", onShutdown, { once: true });

  const stream = new ReadableStream<Uint8Array>({
    start(started) {
      controller = started;
      // A first line right away, so clients and proxies see the response start.
      started.enqueue(encoder.encode(": metaq event stream\nretry: 2000\n\n"));
      if (options.shutdown.aborted) onShutdown();
    },
    async pull(ready) {
      pulling = true;
      try {
        const chunk = await nextChunk(source, stop.signal, options.heartbeatMs);
        if (chunk === undefined) {
          finish();
          closeQuietly(ready);
        } else {
          ready.enqueue(encoder.encode(chunk));
        }
      } catch (error) {
        finish();
        if (!(error instanceof BrokerError)) return ready.error(error);
        ready.enqueue(encoder.encode(formatEvent({
          event: "error",
          data: JSON.stringify(errorBody(error)),
        })));
        closeQuietly(ready);
      } finally {
        pulling = false;
      }
    },
    cancel() {
      finish();
    },
  }, { highWaterMark: 1 });
  return new Response(stream, { headers: SSE_HEADERS });
}

/** The next text to send: events, a heartbeat comment, or undefined once stopped. */
async function nextChunk(
  source: SseSource,
  stop: AbortSignal,
  heartbeatMs: number,
): Promise<string | undefined> {
  for (let round = 0; round < WAKES_PER_PULL_MAX; round++) {
    if (stop.aborted) return undefined;
    const events = await source.next();
    if (events.length > 0) return events.map(formatEvent).join("");
    if (await waitOrHeartbeat(source, stop, heartbeatMs) === "heartbeat") break;
  }
  return stop.aborted ? undefined : ": keep-alive\n\n";
}

async function waitOrHeartbeat(
  source: SseSource,
  stop: AbortSignal,
  heartbeatMs: number,
): Promise<"woken" | "heartbeat"> {
  // Stopped while the source was reading (an async next()): the listener below would never fire.
  if (stop.aborted) return "woken";
  const waiting = new AbortController();
  const onStop = () => waiting.abort();
  stop.addEventListener("abort", onStop, { once: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const heartbeat = new Promise<"heartbeat">((resolve) => {
    timer = setTimeout(() => resolve("heartbeat"), heartbeatMs);
  });
  try {
    return await Promise.race([
      source.wait(waiting.signal).then(() => "woken" as const),
      heartbeat,
    ]);
  } finally {
    clearTimeout(timer);
    stop.removeEventListener("abort", onStop);
    waiting.abort();
  }
}

function closeQuietly(controller: ReadableStreamDefaultController<Uint8Array> | undefined): void {
  try {
    controller?.close();
  } catch {
    // already closed or errored by the reader going away
  }
}

/**
 * A wake-up signal that is never lost: a ring with nobody waiting is kept for the next wait.
 * Sources ring it from onAppend hooks; streams wait on it between reads.
 */
export class Doorbell {
  #rung = false;
  #waiter: (() => void) | undefined;

  ring(): void {
    const waiter = this.#waiter;
    if (waiter) waiter();
    else this.#rung = true;
  }

  wait(signal: AbortSignal): Promise<void> {
    if (this.#rung || signal.aborted) {
      this.#rung = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener("abort", done);
        this.#waiter = undefined;
        resolve();
      };
      this.#waiter = done;
      signal.addEventListener("abort", done, { once: true });
    });
  }
}

/** Sleeps `ms`, or less when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Bounds the number of open streams; beyond it a new one is refused with 503. */
export class StreamLimit {
  readonly max: number;
  #open = 0;

  constructor(max: number) {
    this.max = max;
  }

  get open(): number {
    return this.#open;
  }

  /** Counts one more stream and returns its release function, or throws `unavailable`. */
  acquire(): () => void {
    if (this.#open >= this.max) {
      throw new BrokerError("unavailable", `${this.max} event streams are open already`);
    }
    this.#open += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#open -= 1;
    };
  }
}

/**
 * @module HubLink: the edge's one connection to its hub, shared by every forwarded partition.
 * It dials the hub addresses in turn (TLS and `auth` as configured, through the TypeScript
 * client's BrokerConnection), waits between failed rounds with exponential back-off and full
 * jitter, and treats any transport error or unanswered request as a broken link: the
 * connection is closed (so no late reply is trusted) and dialled again. While idle it sends
 * MetaQ's `version` heartbeat so a silently dead path is noticed before the next batch.
 *
 * Not here: what is sent (partition_pump.ts). A request's outcome after a broken link is
 * unknown; the pump sends the batch again and the hub's `uput` keeps it once.
 */
import {
  BrokerConnection,
  type ClientAuth,
  type ClientTls,
  type Reply,
} from "../client/connection.ts";
import { parseAddress } from "../client/client.ts";
import { ConnectionError, TimeoutError } from "../client/errors.ts";
import { BrokerError, describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Random } from "../prng.ts";
import { encodeExtension, encodeVersion } from "../protocol/encoder.ts";
import { errorFromResult } from "../protocol/reply.ts";

export type LinkState = "connecting" | "up" | "closed";

export interface HubLinkOptions {
  readonly hubs: readonly string[];
  readonly auth?: ClientAuth;
  readonly tls?: ClientTls;
  readonly requestTimeoutMs: number;
  readonly retryMinMs: number;
  readonly retryMaxMs: number;
  readonly random: Random;
  readonly logger: Logger;
  /** Monotonic milliseconds. */
  readonly now: () => number;
}

/** What the link has been through, for status and metrics. */
export interface LinkFacts {
  readonly state: LinkState;
  /** The hub address of the live connection. */
  readonly hub?: string;
  readonly connects: number;
  readonly failures: number;
  readonly lastError?: string;
}

/** Send `version` after this much silence on a live connection. */
const HEARTBEAT_IDLE_MS = 5000;
const HEARTBEAT_CHECK_MS = 1000;

const decoder = new TextDecoder();

export class HubLink {
  readonly #options: HubLinkOptions;
  #connection: BrokerConnection | undefined;
  #dialing: Promise<BrokerConnection> | undefined;
  #state: LinkState = "connecting";
  #connects = 0;
  #failures = 0;
  /** Failed rounds in a row since a request last succeeded: the back-off's exponent. */
  #failedRounds = 0;
  #lastError: string | undefined;
  #nextAddress = 0;
  readonly #closing = new AbortController();
  readonly #heartbeat: ReturnType<typeof setInterval>;
  #beating = false;
  readonly #upListeners = new Set<() => void>();

  constructor(options: HubLinkOptions) {
    this.#options = options;
    this.#heartbeat = setInterval(() => void this.#beat(), HEARTBEAT_CHECK_MS);
    (this.#heartbeat as { unref?: () => void }).unref?.();
  }

  get up(): boolean {
    return this.#connection !== undefined && !this.#connection.closed;
  }

  facts(): LinkFacts {
    return {
      state: this.#state,
      hub: this.up ? this.#connection!.address : undefined,
      connects: this.#connects,
      failures: this.#failures,
      lastError: this.#lastError,
    };
  }

  /** Calls `listener` each time a connection comes up; returns an unsubscribe. */
  onUp(listener: () => void): () => void {
    this.#upListeners.add(listener);
    return () => this.#upListeners.delete(listener);
  }

  /** Starts dialling if no connection is up or being made (the pumps wait with onUp). */
  ensureDialing(): void {
    if (this.up || this.#dialing || this.#closing.signal.aborted) return;
    this.#dialing = this.#dial().finally(() => (this.#dialing = undefined));
    this.#dialing.catch(() => {}); // closed while dialling: nobody waits for it
  }

  /**
   * Sends an extension request on the live connection and resolves with its reply text on
   * 200. A broker's refusal rejects with its BrokerError (the link stays up); a transport error
   * or a timeout breaks the link and rejects with that error (the outcome is unknown).
   */
  request(verb: string, args: readonly (string | number)[], body?: Uint8Array): Promise<string> {
    return this.requestFrame((opaque) => encodeExtension(verb, args, opaque, body));
  }

  /**
   * The same with the request's bytes built by `encode` for its opaque (a batch built in place
   * behind its command line). The bytes may still be written after a broken link: the caller
   * must not use their buffer again unless the request succeeded.
   */
  async requestFrame(encode: (opaque: number) => Uint8Array): Promise<string> {
    const connection = this.#connection;
    if (!connection || connection.closed) {
      this.ensureDialing();
      throw new ConnectionError("Cannot reach the hub: the uplink is not connected");
    }
    const opaque = connection.nextOpaque();
    let reply: Reply;
    try {
      reply = await connection.request(encode(opaque), opaque);
    } catch (error) {
      this.#broken(connection, error as Error);
      throw error;
    }
    const text = decoder.decode(reply.body);
    if (reply.kind === "value" || reply.code !== 200) {
      throw errorFromResult(reply.kind === "value" ? 500 : reply.code, text);
    }
    this.#failedRounds = 0;
    return text;
  }

  close(): void {
    this.#closing.abort();
    this.#state = "closed";
    clearInterval(this.#heartbeat);
    this.#connection?.close();
    this.#connection = undefined;
  }

  /** Dials the hubs in turn until one answers, waiting with back-off after each failed round. */
  async #dial(): Promise<BrokerConnection> {
    const { hubs } = this.#options;
    this.#state = "connecting";
    // Rounds are unbounded (the hub may be away for days) but each waits, and close() stops them.
    while (!this.#closing.signal.aborted) {
      // After a failure (also a link that broke right after connecting), wait before dialling.
      if (this.#failedRounds > 0 && this.#nextAddress % hubs.length === 0) await this.#backOff();
      if (this.#closing.signal.aborted) break;
      const address = hubs[this.#nextAddress % hubs.length];
      this.#nextAddress += 1;
      try {
        const connection = await BrokerConnection.connect({
          ...parseAddress(address),
          requestTimeoutMs: this.#options.requestTimeoutMs,
          connectTimeoutMs: Math.min(this.#options.requestTimeoutMs, 5000),
          auth: this.#options.auth,
          tls: this.#options.tls,
        });
        if (this.#closing.signal.aborted) {
          connection.close();
          break;
        }
        this.#connected(connection);
        return connection;
      } catch (error) {
        this.#failures += 1;
        this.#note(`Cannot connect to hub ${address}: ${describeError(error)}`);
        if (this.#nextAddress % hubs.length === 0) this.#failedRounds += 1;
      }
    }
    throw new ConnectionError("Cannot reach the hub: the uplink is closed");
  }

  #connected(connection: BrokerConnection): void {
    this.#connection = connection;
    this.#state = "up";
    this.#connects += 1;
    this.#options.logger.log("info", "Uplink connected to the hub", {
      hub: connection.address,
      connects: this.#connects,
    });
    connection.onClose((error) => {
      if (this.#connection === connection) this.#broken(connection, error);
    });
    for (const listener of [...this.#upListeners]) listener();
  }

  #broken(connection: BrokerConnection, error: Error): void {
    if (this.#connection !== connection) return;
    this.#connection = undefined;
    connection.close();
    if (this.#closing.signal.aborted) return;
    this.#failures += 1;
    this.#failedRounds += 1;
    const why = error instanceof TimeoutError ? "a request timed out" : describeError(error);
    this.#note(`Uplink to ${connection.address} broke: ${why}`);
    this.ensureDialing();
  }

  /** Waits uniformly in [0, min(max, min * 2^rounds)): full jitter spreads many edges apart. */
  async #backOff(): Promise<void> {
    const { retryMinMs, retryMaxMs, random } = this.#options;
    const bound = Math.min(retryMaxMs, retryMinMs * 2 ** Math.min(this.#failedRounds - 1, 30));
    const delayMs = random.int(0, Math.max(1, bound));
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, delayMs);
      this.#closing.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      }, { once: true });
    });
  }

  #note(message: string): void {
    if (message !== this.#lastError) this.#options.logger.log("warn", message, {});
    this.#lastError = message;
  }

  /** MetaQ's idle heartbeat: no answer in time means the path is gone. */
  async #beat(): Promise<void> {
    const connection = this.#connection;
    if (!connection || connection.closed || this.#beating) return;
    if (connection.idleMs < HEARTBEAT_IDLE_MS || connection.inFlight > 0) return;
    this.#beating = true;
    try {
      const opaque = connection.nextOpaque();
      await connection.request(encodeVersion(opaque), opaque);
    } catch (error) {
      this.#broken(connection, error as Error);
    } finally {
      this.#beating = false;
    }
  }
}

/** Whether an error leaves a request's outcome unknown (the link broke), not a refusal. */
export function isLinkError(error: unknown): boolean {
  return error instanceof ConnectionError || error instanceof TimeoutError;
}

/** A refusal the hub will repeat until someone changes something (not worth a quick retry). */
export function isLasting(error: unknown): boolean {
  if (!(error instanceof BrokerError)) return false;
  return error.status === 400 || error.status === 401 || error.status === 403 ||
    error.status === 404 ||
    ["topicNotAccepted", "wrongPartition", "notSupported"].includes(error.kind);
}

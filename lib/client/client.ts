/**
 * @module MetaqClient: the request/reply operations of the MetaQ protocol on top of one
 * multiplexed connection, with reconnection (bounded back-off) and the `version` heartbeat MetaQ's
 * client sends when a connection is idle. Replies come back as values or typed errors. Producer
 * and consumer logic live in producer.ts and consumer.ts.
 */
import { metaqChecksum } from "../crc32.ts";
import { FETCH_VERB, type TransactionType } from "../protocol/commands.ts";
import { FETCH_WAIT_MS_MAX } from "../limits.ts";
import {
  encodeExtension,
  encodeGet,
  encodeOffset,
  encodePut,
  encodeStats,
  encodeTransaction,
  encodeVersion,
} from "../protocol/encoder.ts";
import { type ByteChunks, FLAG_HAS_ATTRIBUTE, joinAttribute } from "../protocol/record.ts";
import { type BatchAck, type BatchPutBuilder, parseBatchReply } from "../protocol/batch_put.ts";
import {
  CRON_VERB,
  DELAY_VERB,
  DELAYED_VERB,
  type DeliveryTime,
  encodeScheduleSpec,
  formatWhen,
  type ScheduleListing,
  type ScheduleSpec,
} from "../protocol/delayed.ts";
import { BrokerConnection, type ClientAuth, type ClientTls, type Reply } from "./connection.ts";
import { ConnectionError, errorFromResult, unsentError } from "./errors.ts";

export interface ClientOptions {
  /** Broker addresses `host:port`; the first reachable one is used. */
  readonly brokers: readonly string[];
  readonly requestTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  /** Send `version` when the connection has been idle this long (MetaQ: 10 s). */
  readonly heartbeatIdleMs?: number;
  /** Time a heartbeat may take; a heartbeat timeout closes the connection (MetaQ: 5 s). */
  readonly heartbeatTimeoutMs?: number;
  /**
   * Send puts straight to each partition's leader when the broker is part of a cluster (it
   * says who leads in `meta` replies). Default true; any node forwards puts anyway.
   */
  readonly routeToLeaders?: boolean;
  /** Reconnection back-off table in ms; the last value repeats. */
  readonly reconnectDelaysMs?: readonly number[];
  /** Give up reconnecting after this many attempts in a row. */
  readonly reconnectAttemptsMax?: number;
  /** Authenticate as this user on every (re)connect. */
  readonly auth?: ClientAuth;
  /** Speak TLS (with these trust settings). */
  readonly tls?: ClientTls;
}

export interface PutResult {
  readonly id: bigint;
  readonly partition: number;
  readonly offset: number;
}

/** A delayed message the broker holds: its id, partition, and when it is due. */
export interface DelayedPutResult extends PutResult {
  readonly deliverAtMs: number;
}

export type GetResult =
  | {
    readonly kind: "records";
    /** The records' bytes as the pieces they arrived in: walk these (`decodeRecordChunks`). */
    readonly chunks: ByteChunks;
    /** Bytes in all the pieces. */
    readonly byteLength: number;
    /** The same bytes in one array, joined on first use. */
    readonly bytes: Uint8Array;
  }
  | { readonly kind: "moved"; readonly offset: number }
  | { readonly kind: "none"; readonly code: number; readonly text: string };

export interface Message {
  readonly payload: Uint8Array;
  readonly attribute?: string;
  /** Extra flag bits (bit 0 is set by the client when an attribute is present). */
  readonly flag?: number;
}

/** How long a partition's leader, as the cluster reported it, is trusted before asking again. */
const LEADERS_TTL_MS = 10_000;
const RECONNECT_DELAYS_MS = [0, 100, 250, 500, 1000, 2000];
const decoder = new TextDecoder();

export function parseAddress(address: string): { host: string; port: number } {
  const index = address.lastIndexOf(":");
  // An IPv6 host is written in brackets ([::1]:8123); the socket wants it without.
  const host = index > 0 ? address.slice(0, index).replace(/^\[(.*)\]$/, "$1") : "127.0.0.1";
  const port = Number(index >= 0 ? address.slice(index + 1) : address);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new ConnectionError(`Cannot use broker address '${address}': expected host:port`);
  }
  return { host, port };
}

export class MetaqClient {
  readonly options: ClientOptions;
  #connection: BrokerConnection | undefined;
  #connecting: Promise<BrokerConnection> | undefined;
  #closed = false;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #heartbeatFailures = 0;
  #beating = false;
  /** Leaders of partitions by topic, from `meta` replies (a cluster); refreshed on 503. */
  readonly #leaders = new Map<string, { leaders: Record<string, string>; atMs: number }>();
  readonly #leaderConnections = new Map<string, Promise<BrokerConnection>>();
  /** The same connections once open, so a put can use one without awaiting. */
  readonly #leaderReady = new Map<string, BrokerConnection>();
  /** Whether the broker is metaq (takes `bput`, `fetch`), once asked. */
  #isMetaq: Promise<boolean> | undefined;
  /** Dial attempts so far: each attempt tries the next broker of the list. */
  #dials = 0;

  constructor(options: ClientOptions) {
    if (options.brokers.length === 0) {
      throw new ConnectionError("Cannot create a client without a broker address");
    }
    for (const broker of options.brokers) parseAddress(broker);
    this.options = options;
    const idleMs = options.heartbeatIdleMs ?? 10_000;
    this.#heartbeat = setInterval(
      () => void this.#beat(idleMs),
      Math.max(50, Math.min(1000, idleMs / 2)),
    );
    (this.#heartbeat as { unref?: () => void }).unref?.();
  }

  /** Connects now (otherwise the first request connects). */
  async connect(): Promise<this> {
    await this.connection();
    return this;
  }

  /** The live connection, reconnecting when needed. */
  connection(): Promise<BrokerConnection> {
    if (this.#closed) return Promise.reject(new ConnectionError("Cannot use a closed client"));
    if (this.#connection && !this.#connection.closed) return Promise.resolve(this.#connection);
    this.#connecting ??= this.#dial().finally(() => (this.#connecting = undefined));
    return this.#connecting;
  }

  /**
   * Sends one message; resolves when the broker acknowledged it. A put that could not be sent
   * (no connection) fails with a ConnectionError marked `unsent`.
   */
  put(
    topic: string,
    partition: number,
    message: Message,
    txKey?: string,
  ): Promise<PutResult> {
    // The hot path: a live connection is known, so nothing is awaited before the request.
    const ready = this.#readyConnectionFor(topic, partition);
    if (ready) return this.#putOn(ready, { topic, partition, message, txKey });
    return this.#connectionFor(topic, partition).then(
      (connection) => this.#putOn(connection, { topic, partition, message, txKey }),
      (error) => Promise.reject(unsentError(error)),
    );
  }

  #putOn(
    connection: BrokerConnection,
    put: { topic: string; partition: number; message: Message; txKey?: string },
  ): Promise<PutResult> {
    const { bytes, opaque } = encodePutOn(connection, put);
    return connection.request(bytes, opaque).then((reply) => {
      if (reply.kind === "result" && reply.code === 503) this.#leaders.delete(put.topic); // leadership moved
      return parsePutReply(reply);
    });
  }

  /**
   * `put` with a callback instead of a promise, and the acknowledgement's text (id, offset)
   * left unparsed: what a pipeline of thousands of puts needs (`metaq produce`). `done` gets
   * no error when the broker stored the message, else the error `put` would reject with.
   */
  putWith(
    topic: string,
    partition: number,
    message: Message,
    done: (error?: Error) => void,
  ): void {
    const connection = this.#readyConnectionFor(topic, partition);
    if (!connection) {
      this.put(topic, partition, message).then(() => done(), done);
      return;
    }
    const { bytes, opaque } = encodePutOn(connection, { topic, partition, message });
    connection.requestWith(bytes, opaque, (reply) => {
      if (reply.kind === "result" && reply.code === 200) return done();
      if (reply.kind === "result" && reply.code === 503) this.#leaders.delete(topic);
      try {
        parsePutReply(reply);
        done();
      } catch (error) {
        done(error as Error);
      }
    }, done);
  }

  /**
   * Sends the records of `batch` to one partition as one batched put (`bput`, a metaq
   * extension: lib/protocol/batch_put.ts); `done` gets the broker's acknowledgement of the whole
   * batch, or the error each of its messages would fail with. Ask isMetaqBroker first: a
   * MetaQ broker does not know the verb.
   */
  putBatchWith(
    topic: string,
    partition: number,
    batch: BatchPutBuilder,
    done: (error: Error | undefined, ack: BatchAck | undefined) => void,
  ): void {
    const send = (connection: BrokerConnection) => {
      const opaque = connection.nextOpaque();
      connection.requestWith(batch.encode(topic, partition, opaque), opaque, (reply) => {
        const text = decoder.decode(reply.body);
        if (reply.kind === "result" && reply.code === 200) {
          const ack = parseBatchReply(text);
          if (ack) return done(undefined, ack);
          return done(
            new ConnectionError(`Cannot read the batch's acknowledgement: ${text}`),
            undefined,
          );
        }
        if (reply.kind === "result" && reply.code === 503) this.#leaders.delete(topic);
        done(errorFromResult(reply.kind === "value" ? 500 : reply.code, text), undefined);
      }, (error) => done(error, undefined));
    };
    const ready = this.#readyConnectionFor(topic, partition);
    if (ready) return send(ready);
    this.#connectionFor(topic, partition).then(
      send,
      (error) => done(unsentError(error) as Error, undefined),
    );
  }

  /**
   * Whether the broker is metaq and so takes its extensions (batched puts, long polls): a
   * metaq broker names itself in its `version` answer (MetaQ's own gives a version number).
   * Asked once per client.
   */
  isMetaqBroker(): Promise<boolean> {
    this.#isMetaq ??= this.version().then(
      (version) => version.startsWith("metaq"),
      (error) => {
        this.#isMetaq = undefined; // unreachable now: ask again next time
        throw error;
      },
    );
    return this.#isMetaq;
  }

  /** The connection #connectionFor would pick, when it is known and open now. */
  #readyConnectionFor(topic: string, partition: number): BrokerConnection | undefined {
    const bootstrap = this.#connection && !this.#connection.closed ? this.#connection : undefined;
    if (this.options.routeToLeaders === false) return bootstrap;
    const known = this.#leaders.get(topic);
    if (!known || performance.now() - known.atMs > LEADERS_TTL_MS) return undefined;
    const address = known.leaders[String(partition)];
    if (!address) return bootstrap;
    const leader = this.#leaderReady.get(address);
    return leader && !leader.closed ? leader : undefined;
  }

  /**
   * The connection for puts to `topic`-`partition`: straight to its leader when a cluster told
   * us who leads it (any node would forward, this saves the hop), else the bootstrap connection.
   */
  async #connectionFor(topic: string, partition: number): Promise<BrokerConnection> {
    if (this.options.routeToLeaders === false) return await this.connection();
    let known = this.#leaders.get(topic);
    if (!known || performance.now() - known.atMs > LEADERS_TTL_MS) {
      known = { leaders: await this.#fetchLeaders(topic), atMs: performance.now() };
      this.#leaders.set(topic, known);
    }
    const address = known.leaders[String(partition)];
    if (!address) return await this.connection();
    let pending = this.#leaderConnections.get(address);
    if (!pending) {
      pending = BrokerConnection.connect({
        ...parseAddress(address),
        connectTimeoutMs: this.options.connectTimeoutMs,
        requestTimeoutMs: this.options.requestTimeoutMs,
        auth: this.options.auth,
        tls: this.options.tls,
      });
      this.#leaderConnections.set(address, pending);
      pending.then(
        (connection) => this.#leaderReady.set(address, connection),
        () => this.#leaderConnections.delete(address),
      );
    }
    try {
      const connection = await pending;
      if (!connection.closed) return connection;
    } catch {
      // The leader we were told about is unreachable: use the bootstrap node, which forwards.
    }
    this.#leaderConnections.delete(address);
    this.#leaderReady.delete(address);
    this.#leaders.delete(topic);
    return await this.connection();
  }

  async #fetchLeaders(topic: string): Promise<Record<string, string>> {
    try {
      const meta = await this.topicMetadata(topic);
      return (meta.leaders as Record<string, string> | undefined) ?? {};
    } catch {
      return {}; // no metadata (an old broker, an unknown topic): the bootstrap node decides
    }
  }

  /**
   * One `get`: raw record bytes, a 301 "use this offset", or an empty answer (404/403).
   * `waitMs`: a long poll (metaq's `fetch`) when the broker is metaq: an empty answer comes
   * only after that long with nothing arriving (the broker caps it at 5 s); a MetaQ broker
   * answers at once, as `get` does.
   */
  async get(
    request: {
      topic: string;
      group: string;
      partition: number;
      offset: number | bigint;
      maxSize: number;
      waitMs?: number;
    },
  ): Promise<GetResult> {
    const waitMs = request.waitMs !== undefined && request.waitMs > 0 &&
        await this.isMetaqBroker().catch(() => false)
      ? Math.min(request.waitMs, FETCH_WAIT_MS_MAX)
      : 0;
    const connection = await this.connection();
    const opaque = connection.nextOpaque();
    const bytes = waitMs > 0
      ? encodeExtension(FETCH_VERB, [
        request.topic,
        request.group,
        request.partition,
        String(request.offset),
        request.maxSize,
        waitMs,
      ], opaque)
      : encodeGet({ ...request, opaque });
    const timeoutMs = (this.options.requestTimeoutMs ?? 10_000) + waitMs;
    const reply = await connection.request(bytes, opaque, timeoutMs);
    if (reply.kind === "value") return recordsOf(reply);
    const text = decoder.decode(reply.body);
    if (reply.code === 301) return { kind: "moved", offset: Number(text) };
    if (reply.code === 404 || reply.code === 403) return { kind: "none", code: reply.code, text };
    throw errorFromResult(reply.code, text);
  }

  /** MetaQ's `offset`: the start of the segment holding `offset`, clamped to the log. */
  async offset(
    request: { topic: string; group: string; partition: number; offset: number },
  ): Promise<number> {
    const text = await this.#textRequest((opaque) => encodeOffset({ ...request, opaque }));
    return Number(text);
  }

  async stats(item?: string): Promise<string> {
    return await this.#textRequest((opaque) => encodeStats(item, opaque));
  }

  async version(): Promise<string> {
    return await this.#textRequest((opaque) => encodeVersion(opaque));
  }

  /** `transaction` command; END is one-way, so it resolves at once with "". */
  async transaction(
    request: {
      txKey: string;
      sessionId: string;
      type: TransactionType;
      timeout?: number;
      uniqueQualifier?: string;
    },
  ): Promise<string> {
    if (request.type === "END") {
      const connection = await this.connection();
      connection.send(encodeTransaction({ ...request, opaque: connection.nextOpaque() }));
      return "";
    }
    return await this.#textRequest((opaque) => encodeTransaction({ ...request, opaque }));
  }

  /** A metaq extension command; resolves with the reply text, throws on a non-200 status. */
  async extension(
    verb: string,
    args: readonly (string | number)[],
    body?: Uint8Array,
  ): Promise<string> {
    return await this.#textRequest((opaque) => encodeExtension(verb, args, opaque, body));
  }

  /**
   * Sends a message to be delivered into `topic`-`partition` at a later time (`delay`, see
   * docs/delayed.md); resolves once the broker holds it durably. Partition -1 lets the broker
   * pick one. The result's offset is -1: the message is in no partition until its time.
   */
  async putDelayed(
    topic: string,
    partition: number,
    message: Message,
    when: DeliveryTime,
  ): Promise<DelayedPutResult> {
    const { body, flag } = bodyAndFlag(message);
    const text = await this.extension(DELAY_VERB, [
      topic,
      partition,
      body.length,
      flag,
      metaqChecksum(body),
      formatWhen(when),
    ], body);
    const [id, replyPartition, , deliverAtMs] = text.split(" ");
    return {
      id: BigInt(id),
      partition: Number(replyPartition),
      offset: -1,
      deliverAtMs: Number(deliverAtMs),
    };
  }

  /** Cancels a pending delayed message; throws a BrokerError (404, 409) when it cannot. */
  async cancelDelayed(id: bigint): Promise<void> {
    await this.extension(DELAYED_VERB, ["cancel", String(id)]);
  }

  /** What the broker holding delayed messages says about them (`delayed status`). */
  async delayedStatus(): Promise<Record<string, unknown>> {
    return JSON.parse(await this.extension(DELAYED_VERB, ["status", "-"]));
  }

  /** The broker's cron schedules (`cron list`). */
  async listSchedules(): Promise<ScheduleListing[]> {
    return JSON.parse(await this.extension(CRON_VERB, ["list", "-", 0]));
  }

  /** Adds a cron schedule that publishes `spec.payload` to `spec.topic` (`cron add`). */
  async addSchedule(name: string, spec: Omit<ScheduleSpec, "name">): Promise<void> {
    const body = encodeScheduleSpec(spec);
    await this.extension(CRON_VERB, ["add", name, body.length], body);
  }

  /** Pauses, resumes or removes a cron schedule; a BrokerError 404 when there is none. */
  async changeSchedule(name: string, action: "pause" | "resume" | "rm"): Promise<void> {
    await this.extension(CRON_VERB, [action, name, 0]);
  }

  /** Topic facts from the broker (`meta` command): partition count and leaders. */
  async topicMetadata(
    topic: string,
  ): Promise<{ topic: string; partitions: number; [key: string]: unknown }> {
    return JSON.parse(await this.extension("meta", [topic]));
  }

  close(): void {
    this.#closed = true;
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#connection?.close();
    for (const pending of this.#leaderConnections.values()) {
      pending.then((connection) => connection.close(), () => {});
    }
  }

  async #textRequest(encode: (opaque: number) => Uint8Array): Promise<string> {
    const connection = await this.connection();
    const opaque = connection.nextOpaque();
    const reply = await connection.request(encode(opaque), opaque);
    const text = decoder.decode(reply.body);
    if (reply.kind === "value" || reply.code !== 200) {
      throw errorFromResult(reply.kind === "value" ? 500 : reply.code, text);
    }
    return text;
  }

  async #dial(): Promise<BrokerConnection> {
    const delays = this.options.reconnectDelaysMs ?? RECONNECT_DELAYS_MS;
    const attemptsMax = this.options.reconnectAttemptsMax ?? 10;
    let lastError: Error | undefined;
    for (let attempt = 0; attempt < attemptsMax && !this.#closed; attempt++) {
      const delay = delays[Math.min(attempt, delays.length - 1)];
      if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
      const address = this.options.brokers[this.#dials++ % this.options.brokers.length];
      try {
        const connection = await BrokerConnection.connect({
          ...parseAddress(address),
          connectTimeoutMs: this.options.connectTimeoutMs,
          requestTimeoutMs: this.options.requestTimeoutMs,
          auth: this.options.auth,
          tls: this.options.tls,
        });
        if (this.#closed) { // closed while dialing: do not leak the socket
          connection.close();
          break;
        }
        this.#connection = connection;
        this.#heartbeatFailures = 0;
        return connection;
      } catch (error) {
        lastError = error as Error;
        // Wrong credentials stay wrong: retrying would only add to the broker's failure count.
        if ((error as { status?: number }).status === 401) break;
      }
    }
    throw lastError ?? new ConnectionError("Cannot connect: client closed");
  }

  /**
   * MetaQ's heartbeat: `version` after idle time. No reply in time means the broker or the path
   * to it is gone, so the connection is closed at once (the next request reconnects); three
   * non-200 replies in a row close it too.
   */
  async #beat(idleMs: number): Promise<void> {
    const connection = this.#connection;
    if (!connection || connection.closed || connection.idleMs < idleMs || this.#beating) return;
    this.#beating = true;
    try {
      const opaque = connection.nextOpaque();
      const timeoutMs = this.options.heartbeatTimeoutMs ?? 5000;
      const reply = await connection.request(encodeVersion(opaque), opaque, timeoutMs);
      this.#heartbeatFailures = reply.kind === "result" && reply.code === 200
        ? 0
        : this.#heartbeatFailures + 1;
      if (this.#heartbeatFailures >= 3) connection.close();
    } catch {
      connection.close(); // timed out or broke: either way this connection is not to be trusted
    } finally {
      this.#beating = false;
    }
  }
}

/** A message's bytes on the wire: the attribute joined before the payload, flagged as MetaQ does. */
function bodyAndFlag(message: Message): { body: Uint8Array; flag: number } {
  if (message.attribute === undefined) return { body: message.payload, flag: message.flag ?? 0 };
  return {
    body: joinAttribute(message.attribute, message.payload),
    flag: (message.flag ?? 0) | FLAG_HAS_ATTRIBUTE,
  };
}

/** A put's bytes with a fresh opaque of `connection`. */
function encodePutOn(
  connection: BrokerConnection,
  put: { topic: string; partition: number; message: Message; txKey?: string },
): { bytes: Uint8Array; opaque: number } {
  const { body, flag } = bodyAndFlag(put.message);
  const opaque = connection.nextOpaque();
  const bytes = encodePut({
    topic: put.topic,
    partition: put.partition,
    flag,
    checksum: metaqChecksum(body),
    txKey: put.txKey,
    opaque,
    body,
  });
  return { bytes, opaque };
}

function parsePutReply(reply: Reply): PutResult {
  const text = decoder.decode(reply.body);
  if (reply.kind === "value" || reply.code !== 200) {
    throw errorFromResult(reply.kind === "value" ? 500 : reply.code, text);
  }
  const [id, partition, offset] = text.split(" ");
  return { id: BigInt(id), partition: Number(partition), offset: Number(offset) };
}

/** A `value` reply as records: its pieces as they arrived, joined only when asked. */
function recordsOf(reply: Extract<Reply, { kind: "value" }>): GetResult {
  const chunks = reply.chunks ?? [reply.body];
  let byteLength = 0;
  for (const chunk of chunks) byteLength += chunk.length;
  return {
    kind: "records",
    chunks,
    byteLength,
    get bytes() {
      return reply.body;
    },
  };
}

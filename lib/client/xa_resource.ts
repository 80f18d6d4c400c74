/**
 * @module An XA resource for a transaction manager, as MetaQ's TransactionContext implements
 * JTA's XAResource: `start` sends BEGIN (with the timeout and the unique qualifier), `send` puts
 * messages in the started branch, `end` sends END (one-way), then `prepare` (XA_OK or
 * XA_RDONLY), `commit(onePhase)`, `rollback`, `forget`, and `recover` (the broker's prepared
 * XIDs for this qualifier). Failures are XAErrors carrying the broker's XA code; a reply that is
 * not an XAException becomes XAER_RMERR, a timeout XA_RBTIMEOUT, a broken connection
 * XAER_RMFAIL, as in MetaQ's client.
 *
 * XIDs are `{ formatId, globalId, branchQualifier }` with ids as bytes or lower-case hex; on the
 * wire they are `XID:<formatId>:<gtrid hex>:<bqual hex>:<uniqueQualifier>`.
 */
import * as os from "node:os";
import { XA } from "../protocol/xa.ts";
import type { MetaqClient, PutResult } from "./client.ts";
import { BrokerError, ConnectionError, TimeoutError } from "./errors.ts";
import type { TransactionType } from "../protocol/commands.ts";
import { newSessionId, TxPartitioner, type TxSendOptions } from "./transaction.ts";

/** XA codes: the broker's, plus those only a client produces. */
export const XA_CODES = {
  ...XA,
  /** The resource manager is unreachable. */
  RMFAIL: -7,
  /** Invalid arguments. */
  INVAL: -5,
  /** The XID is already started on this resource. */
  DUPID: -8,
  /** The request timed out: the outcome is unknown. */
  RBTIMEOUT: 106,
} as const;

export interface Xid {
  readonly formatId: number;
  /** Global transaction id: bytes, or their hex. */
  readonly globalId: Uint8Array | string;
  readonly branchQualifier: Uint8Array | string;
}

export class XAError extends Error {
  override readonly name = "XAError";
  readonly code: number;

  constructor(code: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/** MetaQ's default qualifier: `XAMessageProducer-<hostname>`. */
export function defaultUniqueQualifier(): string {
  return `XAMessageProducer-${os.hostname().replace(/[^A-Za-z0-9._-]/g, "-")}`;
}

/** The wire key of `xid` on the resource named by `uniqueQualifier`. */
export function xidKey(xid: Xid, uniqueQualifier: string): string {
  if (!Number.isInteger(xid.formatId) || xid.formatId < -2147483648 || xid.formatId > 2147483647) {
    throw new XAError(XA_CODES.INVAL, `Cannot use formatId ${xid.formatId}: not a 32-bit integer`);
  }
  return `XID:${xid.formatId}:${hexOf(xid.globalId)}:${
    hexOf(xid.branchQualifier)
  }:${uniqueQualifier}`;
}

/** Parses `XID:<format>:<gtrid>:<bqual>:<qualifier>` back into an Xid (ids as hex). */
export function parseXidKey(key: string): Xid & { readonly uniqueQualifier: string } {
  const parts = key.split(":");
  if (parts.length !== 5 || parts[0] !== "XID" || !/^-?\d+$/.test(parts[1])) {
    throw new XAError(XA_CODES.INVAL, `Cannot parse XID '${key}'`);
  }
  return {
    formatId: Number(parts[1]),
    globalId: hexOf(parts[2]),
    branchQualifier: hexOf(parts[3]),
    uniqueQualifier: parts[4],
  };
}

export interface XAResourceOptions {
  /** Names this resource's branches; no ':', spaces, CR, LF or TAB. */
  readonly uniqueQualifier?: string;
  /** Seconds after `start` at which the broker rolls back an unprepared branch (0 = never). */
  readonly timeoutSeconds?: number;
  readonly partitioner?: TxPartitioner;
}

export class MetaqXAResource {
  readonly client: MetaqClient;
  readonly uniqueQualifier: string;
  readonly sessionId = newSessionId();
  readonly #partitioner: TxPartitioner;
  #timeoutSeconds: number;
  #current: string | undefined;

  constructor(client: MetaqClient, options: XAResourceOptions = {}) {
    const qualifier = options.uniqueQualifier ?? defaultUniqueQualifier();
    if (qualifier === "" || /[:\s]/.test(qualifier)) {
      throw new XAError(XA_CODES.INVAL, `Cannot use unique qualifier '${qualifier}'`);
    }
    this.client = client;
    this.uniqueQualifier = qualifier;
    this.#timeoutSeconds = options.timeoutSeconds ?? 0;
    this.#partitioner = options.partitioner ?? new TxPartitioner(client);
  }

  getTransactionTimeout(): number {
    return this.#timeoutSeconds;
  }

  setTransactionTimeout(seconds: number): boolean {
    if (!Number.isInteger(seconds) || seconds < 0) {
      throw new XAError(XA_CODES.INVAL, `Cannot use timeout ${seconds}`);
    }
    this.#timeoutSeconds = seconds;
    return true;
  }

  /** Same broker address list means the same resource manager. */
  isSameRM(other: MetaqXAResource): boolean {
    return other.client.options.brokers.join(",") === this.client.options.brokers.join(",");
  }

  /** BEGIN: associates `xid` with this resource; `send` then puts messages in it. */
  async start(xid: Xid): Promise<void> {
    if (this.#current !== undefined) {
      throw new XAError(
        XA_CODES.DUPID,
        `Cannot start ${xidKey(xid, this.uniqueQualifier)}: ${this.#current} is active`,
      );
    }
    const key = xidKey(xid, this.uniqueQualifier);
    await this.#request(key, "BEGIN", this.#timeoutSeconds);
    this.#current = key;
  }

  /** Puts a message in the started branch (offset -1 until the commit). */
  async send(
    topic: string,
    payload: Uint8Array | string,
    options: TxSendOptions = {},
  ): Promise<PutResult> {
    const key = this.#current;
    if (key === undefined) {
      throw new XAError(XA_CODES.PROTO, "Cannot send: no XA branch is started");
    }
    const partition = await this.#partitioner.partitionFor(topic, options);
    const data = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
    try {
      return await this.client.put(topic, partition, {
        payload: data,
        attribute: options.attribute,
        flag: options.flag,
      }, key);
    } catch (error) {
      throw toXAError(error);
    }
  }

  /** END (one-way, never answered): dissociates the branch. */
  async end(xid: Xid): Promise<void> {
    const key = xidKey(xid, this.uniqueQualifier);
    if (this.#current !== key) {
      throw new XAError(XA_CODES.PROTO, `Cannot end ${key}: it is not started here`);
    }
    this.#current = undefined;
    await this.client.transaction({
      txKey: key,
      sessionId: this.sessionId,
      type: "END",
      uniqueQualifier: this.uniqueQualifier,
    })
      .catch((error) => {
        throw toXAError(error);
      });
  }

  /** PREPARE: XA_OK (0), or XA_RDONLY (3) when the branch did no work (it is then finished). */
  async prepare(xid: Xid): Promise<number> {
    return Number(await this.#request(this.#ended(xid, "prepare"), "PREPARE", 0));
  }

  async commit(xid: Xid, onePhase: boolean): Promise<void> {
    await this.#request(
      this.#ended(xid, "commit"),
      onePhase ? "COMMIT_ONE_PHASE" : "COMMIT_TWO_PHASE",
      0,
    );
  }

  async rollback(xid: Xid): Promise<void> {
    await this.#request(xidKey(xid, this.uniqueQualifier), "ROLLBACK", 0);
  }

  /** Drops the broker's memory of a heuristically completed branch. */
  async forget(xid: Xid): Promise<void> {
    await this.#request(xidKey(xid, this.uniqueQualifier), "FORGET", 0);
  }

  /** Prepared (and heuristically completed) branches of this qualifier. */
  async recover(): Promise<(Xid & { uniqueQualifier: string })[]> {
    const text = await this.#request("null", "RECOVER", 0);
    return text.split("\r\n").filter((line) => line.trim() !== "").map(parseXidKey);
  }

  #ended(xid: Xid, action: string): string {
    const key = xidKey(xid, this.uniqueQualifier);
    if (this.#current === key) {
      throw new XAError(XA_CODES.PROTO, `Cannot ${action} ${key} before end`);
    }
    return key;
  }

  async #request(txKey: string, type: TransactionType, timeout: number): Promise<string> {
    try {
      return await this.client.transaction({
        txKey,
        sessionId: this.sessionId,
        type,
        timeout,
        uniqueQualifier: this.uniqueQualifier,
      });
    } catch (error) {
      throw toXAError(error);
    }
  }
}

const XA_REPLY = /^XAException:code=(-?\d+),msg=(.*)$/s;

/** Turns a failed request into the XAError a transaction manager expects. */
export function toXAError(error: unknown): XAError {
  if (error instanceof XAError) return error;
  if (error instanceof BrokerError) {
    const match = XA_REPLY.exec(error.message);
    if (match) return new XAError(Number(match[1]), match[2], { cause: error });
    return new XAError(XA_CODES.RMERR, error.message, { cause: error });
  }
  if (error instanceof TimeoutError) {
    return new XAError(XA_CODES.RBTIMEOUT, error.message, { cause: error });
  }
  if (error instanceof ConnectionError) {
    return new XAError(XA_CODES.RMFAIL, error.message, { cause: error });
  }
  return new XAError(XA_CODES.RMERR, String((error as Error)?.message ?? error), { cause: error });
}

function hexOf(id: Uint8Array | string): string {
  if (typeof id === "string") {
    if (!/^([0-9a-fA-F]{2})*$/.test(id)) {
      throw new XAError(XA_CODES.INVAL, `Cannot use id '${id}': not hex bytes`);
    }
    return id.toLowerCase();
  }
  return Array.from(id, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

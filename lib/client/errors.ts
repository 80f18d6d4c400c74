/**
 * @module Errors a client sees, typed so callers can tell what happened: the broker said no
 * (BrokerError with MetaQ's status), the request timed out (outcome unknown), or the
 * connection failed (outcome unknown for requests in flight).
 */
import { BrokerError } from "../errors.ts";
import { errorFromResult } from "../protocol/reply.ts";

export { BrokerError };

/** The request got no answer in time; it may or may not have taken effect. */
export class TimeoutError extends Error {
  override readonly name = "TimeoutError";
  readonly status = 504;
}

/** The connection could not be made or broke; requests in flight have an unknown outcome. */
export class ConnectionError extends Error {
  override readonly name = "ConnectionError";
}

/** Turns a `result` reply into a BrokerError: the one decoding, in lib/protocol/reply.ts. */
export { errorFromResult };

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

/**
 * The connection could not be made or broke; requests in flight have an unknown outcome. One
 * that never left this client (no connection, or it had closed before the request was written)
 * says so with `unsent`: it had no effect and may be sent again.
 */
export class ConnectionError extends Error {
  override readonly name = "ConnectionError";
  readonly unsent: boolean;

  constructor(message: string, options?: ErrorOptions & { unsent?: boolean }) {
    super(message, options);
    this.unsent = options?.unsent ?? false;
  }
}

/** The same failure, for a request that was never written. */
export function unsentError(error: unknown): unknown {
  if (!(error instanceof ConnectionError) || error.unsent) return error;
  return new ConnectionError(error.message, { cause: error, unsent: true });
}

/** Turns a `result` reply into a BrokerError: the one decoding, in lib/protocol/reply.ts. */
export { errorFromResult };

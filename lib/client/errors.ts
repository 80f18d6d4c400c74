/**
 * @module Errors a client sees, typed so callers can tell what happened: the broker said no
 * (BrokerError with MetaQ's status), the request timed out (outcome unknown), or the
 * connection failed (outcome unknown for requests in flight).
 */
import { BrokerError, type ErrorKind, ERRORS } from "../errors.ts";

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

const KINDS = Object.keys(ERRORS) as ErrorKind[];

/**
 * Turns a `result` reply into a BrokerError. The kind whose text starts the reply wins (several
 * kinds share a status); otherwise the first kind with the status, otherwise `internal`.
 */
export function errorFromResult(code: number, text: string): BrokerError {
  const kind =
    KINDS.find((name) => ERRORS[name].status === code && text.startsWith(ERRORS[name].text)) ??
      KINDS.find((name) => ERRORS[name].status === code) ??
      "internal";
  const error = BrokerError.verbatim(kind, text || `status ${code}`);
  (error as { status: number }).status = code;
  return error;
}

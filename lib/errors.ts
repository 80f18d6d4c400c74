/**
 * @module Operating errors: one table of kinds, each with MetaQ's status code. Two edges render
 * them: the TCP `result` line (lib/server) and the HTTP JSON body (lib/http); the client turns
 * both back into a BrokerError. Programmer errors are assertions (lib/assert.ts), not these.
 */

export const ERRORS = {
  badRequest: { status: 400, text: "Bad request" },
  invalidName: { status: 400, text: "Cannot accept name" },
  invalidOffset: { status: 400, text: "Cannot accept offset" },
  messageTooLarge: {
    status: 400,
    text: "Cannot accept message: body exceeds the message size limit",
  },
  unauthorized: { status: 401, text: "Cannot authenticate" },
  forbidden: { status: 403, text: "Cannot allow this operation" },
  partitionClosed: { status: 403, text: "Cannot use partition: it has been closed" },
  notFound: { status: 404, text: "Cannot find resource" },
  topicNotFound: { status: 404, text: "Cannot find topic" },
  conflict: { status: 409, text: "Cannot apply change: state has moved on" },
  /** HTTP only: the route exists, not with this method (the response names the ones it has). */
  methodNotAllowed: { status: 405, text: "Cannot use method on this route" },
  requestTooLarge: { status: 413, text: "Cannot read request: body exceeds the size limit" },
  unknownMember: { status: 404, text: "Cannot find member in group" },
  staleGeneration: { status: 409, text: "Cannot accept request: the group generation is stale" },
  notOwner: {
    status: 403,
    text: "Cannot commit offset: the partition is not owned by this member",
  },
  offsetBackwards: { status: 409, text: "Cannot commit offset: it is below the committed offset" },
  membersActive: { status: 409, text: "Cannot reset offsets: the group has active members" },
  topicNotAccepted: { status: 500, text: "Cannot accept topic" },
  wrongPartition: { status: 500, text: "Cannot use partition: out of range" },
  checksumMismatch: { status: 500, text: "Cannot accept message: checksum mismatch" },
  limitReached: { status: 500, text: "Cannot create partition: a broker limit is reached" },
  storageFull: { status: 500, text: "Cannot write: storage is full" },
  storageFailed: { status: 500, text: "Cannot write: storage failed" },
  corruption: { status: 500, text: "Cannot read: data is corrupt" },
  internal: { status: 500, text: "Internal error" },
  notSupported: { status: 500, text: "Cannot run command: not supported" },
  /** A transaction command or transactional put refused (MetaQ's texts, XAException codes). */
  transactionFailed: { status: 500, text: "Cannot run transaction command" },
  unavailable: { status: 503, text: "Cannot serve request: unavailable" },
  queueFull: { status: 503, text: "Cannot enqueue request: queue is full" },
  notLeader: { status: 503, text: "Cannot serve partition: this node is not its leader" },
  timeout: { status: 504, text: "Cannot complete request: timed out" },
} as const satisfies Record<string, { status: number; text: string }>;

export type ErrorKind = keyof typeof ERRORS;

export class BrokerError extends Error {
  override readonly name = "BrokerError";
  readonly kind: ErrorKind;
  readonly status: number;
  /**
   * Set by a log whose failed append surely left nothing behind (one node's own files: a torn
   * tail is cut at recovery). A replicated log cannot promise it: other copies may hold the record.
   */
  readonly notAppended: boolean;

  constructor(
    kind: ErrorKind,
    detail?: string,
    options?: ErrorOptions & { readonly notAppended?: boolean },
  ) {
    super(detail ? `${ERRORS[kind].text}: ${detail}` : ERRORS[kind].text, options);
    this.kind = kind;
    this.status = ERRORS[kind].status;
    this.notAppended = options?.notAppended === true;
  }

  /** `error` as an append failure that surely left nothing behind (same kind and text). */
  static notAppended(error: BrokerError): BrokerError {
    const copy = new BrokerError(error.kind, undefined, { cause: error, notAppended: true });
    copy.message = error.message;
    return copy;
  }

  /** `error` itself when it is a BrokerError, else one of `kind` describing it. */
  static from(error: unknown, kind: ErrorKind = "internal"): BrokerError {
    return error instanceof BrokerError ? error : new BrokerError(kind, describeError(error));
  }

  /** A BrokerError whose message is given verbatim (MetaQ-compatible reply texts). */
  static verbatim(kind: ErrorKind, text: string, options?: ErrorOptions): BrokerError {
    const error = new BrokerError(kind, undefined, options);
    error.message = text;
    return error;
  }
}

/** Node-style system error codes that mean the disk has no room. */
export function isNoSpace(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}

/** Short, single-line description of any thrown value, for logs and replies. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message.split("\n")[0];
  return String(error);
}

/**
 * @module The commands of MetaQ's text protocol (and metaq's extensions) as plain values.
 * Produced by parser.ts from bytes, turned into bytes by encoder.ts; never sees a socket.
 *
 * Wire grammar (SP = one space, every header line ends in CRLF, a body follows with no CRLF):
 *
 * ```text
 * put <topic> <partition> <length> <flag> <opaque>                      + body   (6 tokens)
 * put <topic> <partition> <length> <flag> <checksum|txkey> <opaque>     + body   (7 tokens)
 * put <topic> <partition> <length> <flag> <checksum> <txkey> <opaque>   + body   (8 tokens)
 * get <topic> <group> <partition> <offset> <maxSize> <opaque>
 * offset <topic> <group> <partition> <offset> <opaque>
 * transaction <txkey> <sessionId> <TYPE> [timeout] [uniqueQualifier] <opaque>
 * sync <topic> <partition> <length> <flag> <msgId> [checksum] <opaque>  + body
 * stats [item] [opaque]        version [opaque]        quit
 * result <code> <length> <opaque>                                       + body
 * value <length> <opaque>                                               + body
 * ```
 */

/** Opaque used when a `stats`/`version` request omits it (Java's Integer.MAX_VALUE). */
export const DEFAULT_OPAQUE = 2147483647;
/** Java's Long.MAX_VALUE: a consumer asking for it wants the end of the partition. */
export const LONG_MAX_TEXT = "9223372036854775807";

/**
 * A metaq extension, the long poll: `fetch <topic> <group> <partition> <offset> <maxSize>
 * <waitMs> <opaque>` is a `get` whose answer, when nothing is at or after the offset yet, waits
 * up to waitMs (the broker caps it at 5 s) for records to arrive. Answered as `get` is.
 */
export const FETCH_VERB = "fetch";

export const TRANSACTION_TYPES = [
  "BEGIN",
  "END",
  "PREPARE",
  "COMMIT_ONE_PHASE",
  "COMMIT_TWO_PHASE",
  "ROLLBACK",
  "RECOVER",
  "FORGET",
] as const;
export type TransactionType = typeof TRANSACTION_TYPES[number];

/** A transaction key: `TX:<session>:<n>`, `XID:<format>:<gtrid hex>:<bqual hex>:<qualifier>`, `null`. */
export type TxKey =
  | {
    readonly kind: "local";
    readonly sessionId: string;
    readonly counter: number;
    readonly text: string;
  }
  | {
    readonly kind: "xa";
    readonly formatId: number;
    readonly globalId: string;
    readonly branchQualifier: string;
    readonly uniqueQualifier: string;
    readonly text: string;
  }
  | { readonly kind: "null"; readonly text: "null" };

export interface PutCommand {
  readonly kind: "put";
  readonly topic: string;
  readonly partition: number;
  readonly flag: number;
  /** -1 when the client did not send one (6 tokens) or sent -1. */
  readonly checksum: number;
  readonly txKey?: TxKey;
  readonly opaque: number;
  readonly body: Uint8Array;
  /** The body exceeded the parser's limit and was skipped, not buffered; `body` is empty. */
  readonly oversizedBytes?: number;
}

export interface GetCommand {
  readonly kind: "get";
  readonly topic: string;
  readonly group: string;
  readonly partition: number;
  /** Byte offset; values beyond 2^53 lose precision but are all "past the end". */
  readonly offset: number;
  /** The client sent Java's Long.MAX_VALUE ("start from the end"). */
  readonly offsetIsLongMax: boolean;
  readonly maxSize: number;
  readonly opaque: number;
}

export interface OffsetCommand {
  readonly kind: "offset";
  readonly topic: string;
  readonly group: string;
  readonly partition: number;
  readonly offset: number;
  readonly opaque: number;
}

export interface TransactionCommand {
  readonly kind: "transaction";
  readonly txKey: TxKey;
  readonly sessionId: string;
  readonly type: TransactionType;
  /** Seconds; 0 = none given. */
  readonly timeout: number;
  readonly uniqueQualifier?: string;
  readonly opaque: number;
}

export interface SyncCommand {
  readonly kind: "sync";
  readonly topic: string;
  readonly partition: number;
  readonly flag: number;
  readonly messageId: bigint;
  readonly checksum: number;
  readonly opaque: number;
  readonly body: Uint8Array;
}

export interface StatsCommand {
  readonly kind: "stats";
  /** Undefined or "" = the general item. */
  readonly item?: string;
  readonly opaque: number;
}

export interface VersionCommand {
  readonly kind: "version";
  readonly opaque: number;
}

export interface QuitCommand {
  readonly kind: "quit";
}

export interface ResultCommand {
  readonly kind: "result";
  readonly code: number;
  readonly opaque: number;
  readonly body: Uint8Array;
}

export interface ValueCommand {
  readonly kind: "value";
  readonly opaque: number;
  readonly body: Uint8Array;
  /**
   * The body as the pieces it arrived in, when it arrived in more than one (a large `get`
   * reply): walk these to spare the copy; `body` then joins them on first use.
   */
  readonly chunks?: readonly Uint8Array[];
}

/**
 * A metaq extension command: one CRLF line `<verb> <arg>... <opaque>`, optionally followed by a
 * body whose length is one of the arguments. Verbs never start with a letter MetaQ's decoder
 * dispatches on (p g t r v s o q), so MetaQ clients never send one by accident.
 */
export interface ExtensionCommand {
  readonly kind: "extension";
  readonly verb: string;
  readonly args: readonly string[];
  readonly opaque: number;
  readonly body: Uint8Array;
}

export type Command =
  | PutCommand
  | GetCommand
  | OffsetCommand
  | TransactionCommand
  | SyncCommand
  | StatsCommand
  | VersionCommand
  | QuitCommand
  | ResultCommand
  | ValueCommand
  | ExtensionCommand;

/** Every request that expects a reply carries an opaque; quit does not. */
export function opaqueOf(command: Command): number | undefined {
  return command.kind === "quit" ? undefined : command.opaque;
}

/**
 * @module Transaction failures as values, and their reply texts. MetaQ answers a failed
 * `transaction` command with `500` and either `XAException:code=<n>,msg=<text>` (an XA error; the
 * Java client parses the code back out) or a plain exception text. A transactional `put` always
 * gets the plain text, XA or not, because MetaQ's put path prints only the exception message.
 * The codes are javax.transaction.xa's, in lib/protocol/xa.ts. Not here: deciding when each
 * failure happens (state.ts).
 */
import { XA } from "../../protocol/xa.ts";

export type TxFailure =
  | { readonly kind: "xa"; readonly code: number; readonly message: string }
  | { readonly kind: "plain"; readonly message: string };

export const xaFailure = (code: number, message: string): TxFailure => ({
  kind: "xa",
  code,
  message,
});

export const plainFailure = (message: string): TxFailure => ({ kind: "plain", message });

/** The `result 500` text of a failed `transaction` command. */
export function commandFailureText(failure: TxFailure): string {
  return failure.kind === "xa"
    ? `XAException:code=${failure.code},msg=${failure.message}`
    : failure.message;
}

/** The `result 500` text of a failed transactional `put`: the bare message in both cases. */
export function putFailureText(failure: TxFailure): string {
  return failure.message;
}

/** MetaQ's "not started" errors: plain for a local key, XAER_NOTA for an XID. */
export function notStarted(kind: "local" | "xa" | "null", keyText: string): TxFailure {
  return kind === "xa"
    ? xaFailure(XA.NOTA, `XA transaction '${keyText}' has not been started.`)
    : plainFailure(`Local transaction '${keyText}' has not been started.`);
}

/** Outcomes an operator can force on a prepared XA transaction (`metaq tx commit|rollback`). */
export type HeuristicOutcome = "commit" | "rollback";

/** What a client gets for an XID that was completed heuristically, until it FORGETs it. */
export function heuristicFailure(outcome: HeuristicOutcome, keyText: string): TxFailure {
  return outcome === "commit"
    ? xaFailure(XA.HEURCOM, `XA transaction '${keyText}' has been heuristically committed.`)
    : xaFailure(XA.HEURRB, `XA transaction '${keyText}' has been heuristically rolled back.`);
}

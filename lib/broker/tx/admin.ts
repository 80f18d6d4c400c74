/**
 * @module The `heuristic <action> <xid> <opaque>` extension command, behind `metaq tx`:
 * operators list prepared XA transactions and commit or roll them back by hand when their
 * transaction manager is gone (MetaQ did this over JMX). Actions: `list` (xid `-`; the reply is
 * a JSON array of TxListing), `commit`, `rollback`. Like every command on the client port it is
 * unauthenticated, as MetaQ's protocol is.
 */
import { result } from "../../protocol/reply.ts";
import { describeError } from "../../errors.ts";
import { DecodeError, parseTxKey } from "../../protocol/parser.ts";
import type { Router } from "../../server/router.ts";
import type { TransactionManager } from "./manager.ts";

export const HEURISTIC_VERB = "heuristic";

export function registerHeuristicCommand(router: Router, manager: TransactionManager): void {
  router.addExtension(HEURISTIC_VERB, {
    spec: { args: 2 },
    handle(command, _context, respond) {
      const [action, xid] = command.args;
      if (action === "list") return respond(result(200, JSON.stringify(manager.list())));
      if (action !== "commit" && action !== "rollback") {
        return respond(
          result(400, `Cannot run heuristic ${action}: expected list, commit or rollback`),
        );
      }
      const problem = xidProblem(xid);
      if (problem) return respond(result(400, `Cannot ${action} '${xid}': ${problem}`));
      manager.completeHeuristically(parseTxKey(xid).text, action).then(
        (failure) => respond(failure ? result(500, failure.message) : result(200)),
        (error) => respond(result(500, describeError(error))),
      );
    },
  });
}

function xidProblem(text: string): string | undefined {
  try {
    return parseTxKey(text).kind === "xa"
      ? undefined
      : "not an XID (XID:format:gtrid:bqual:qualifier)";
  } catch (error) {
    if (error instanceof DecodeError) return error.message;
    throw error;
  }
}

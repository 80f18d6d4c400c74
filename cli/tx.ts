/**
 * @module `metaq tx list|commit|rollback`: heuristic completion of prepared XA transactions on
 * a running broker (the `heuristic` extension command), for when their transaction manager is
 * gone for good. The client then gets XA_HEURCOM / XA_HEURRB for that XID until it FORGETs it.
 */
import process from "node:process";
import { MetaqClient } from "../lib/client/client.ts";
import { describeError } from "../lib/errors.ts";
import type { TxListing } from "../lib/broker/tx/registry.ts";
import { HEURISTIC_VERB } from "../lib/broker/tx/tx_part.ts";
import {
  brokerList,
  clientSecurity,
  CliError,
  type CommandSpec,
  CONNECTION_USAGE,
  parseFlags,
  SECURITY_FLAGS,
} from "./common.ts";

const USAGE = `Usage: metaq tx list [--broker HOST:PORT] [--format text|json]
       metaq tx commit XID [--broker HOST:PORT]
       metaq tx rollback XID [--broker HOST:PORT]

Lists the broker's prepared XA transactions (and those already completed by hand), or
commits or rolls one back heuristically. Use it only when the transaction manager that
prepared a transaction will never finish it: its XID then answers XA_HEURCOM (commit) or
XA_HEURRB (rollback) until the manager sends FORGET.

Examples:
  metaq tx list
  metaq tx commit XID:1:0a0b:01:XAMessageProducer-host1
  metaq tx rollback XID:1:0a0b:01:XAMessageProducer-host1 --broker 10.0.0.5:8123

${CONNECTION_USAGE}`;

const FLAGS = {
  broker: { type: "string" },
  format: { type: "string" },
  ...SECURITY_FLAGS,
} as const;

export const tx: CommandSpec = {
  name: "tx",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags("tx", args, FLAGS, 2);
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const [action, xid] = positionals;
    const format = values.format ?? "text";
    if (format !== "text" && format !== "json") {
      throw new CliError(`Cannot use --format ${format}: expected text or json`);
    }
    if (action === "list") {
      if (xid !== undefined) {
        throw new CliError(`Cannot run 'tx list': unexpected argument '${xid}'`);
      }
    } else if (action === "commit" || action === "rollback") {
      if (xid === undefined) throw new CliError(`Cannot run 'tx ${action}': give the XID`);
    } else {
      throw new CliError(
        "Cannot run 'tx': expected list, commit or rollback (see 'metaq tx --help')",
      );
    }
    const client = new MetaqClient({
      brokers: brokerList(values.broker),
      reconnectAttemptsMax: 2,
      ...clientSecurity(values),
    });
    try {
      const reply = await client.extension(HEURISTIC_VERB, [action, xid ?? "-"]);
      if (action === "list") process.stdout.write(renderList(JSON.parse(reply), format));
      else console.log(`${action === "commit" ? "committed" : "rolled back"} ${xid}`);
      return 0;
    } catch (error) {
      throw new CliError(`Cannot ${action} transactions: ${describeError(error)}`, 1);
    } finally {
      client.close();
    }
  },
};

function renderList(listing: TxListing[], format: "text" | "json"): string {
  if (format === "json") return `${JSON.stringify(listing)}\n`;
  if (listing.length === 0) return "no prepared transactions\n";
  return listing.map((entry) =>
    `${entry.xid}  ${entry.state}  ${entry.messages} messages  ${entry.bytes} bytes\n`
  ).join("");
}

/** @module `metaq version`: this program's version, and a broker's with --broker. */
import { MetaqClient } from "../lib/client/client.ts";
import { describeError } from "../lib/errors.ts";
import {
  brokerList,
  CLI_VERSION,
  clientSecurity,
  CliError,
  type CommandSpec,
  CONNECTION_USAGE,
  parseFlags,
  SECURITY_FLAGS,
} from "./common.ts";

const USAGE = `Usage: metaq version [--broker HOST:PORT]

Prints metaq's version; with --broker also asks that broker (MetaQ's 'version' command).

${CONNECTION_USAGE}`;

export const version: CommandSpec = {
  name: "version",
  usage: USAGE,
  async run(args) {
    const { values } = parseFlags("version", args, {
      broker: { type: "string" },
      ...SECURITY_FLAGS,
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    console.log(`metaq ${CLI_VERSION}`);
    if (values.broker === undefined) return 0;
    const client = new MetaqClient({
      brokers: brokerList(values.broker),
      reconnectAttemptsMax: 2,
      ...clientSecurity(values),
    });
    try {
      console.log(`broker ${values.broker}: ${await client.version()}`);
      return 0;
    } catch (error) {
      throw new CliError(`Cannot ask ${values.broker} for its version: ${describeError(error)}`, 1);
    } finally {
      client.close();
    }
  },
};

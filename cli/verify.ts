/** @module `metaq verify`: checks every record of every partition on disk; can repair damage. */
import { systemClock } from "../lib/clock.ts";
import { describeError } from "../lib/errors.ts";
import { consoleLogger } from "../lib/log.ts";
import { DataDirLockedError, MessageStore } from "../lib/store/message_store.ts";
import { FileStorage } from "../lib/store/storage_file.ts";
import { CliError, type CommandSpec, formatBytes, parseFlags } from "./common.ts";
import { loadConfig } from "./load_config.ts";

const USAGE = `Usage: metaq verify [--data DIR] [--config FILE] [--repair]

Scans every segment of every partition and checks each record's checksum. Run it with the
broker stopped (the data directory is locked while a broker uses it). Exits 1 if damage is found.

With --repair, a damaged log is cut at the first bad record; the damaged segment is kept as
<segment>.meta.damaged and later segments are moved aside with the same suffix, so nothing is
deleted. Messages after the damage are no longer served.

Examples:
  metaq verify --data ./data
  metaq verify --data ./data --repair`;

export const verify: CommandSpec = {
  name: "verify",
  summary: "check (and repair) the data on disk",
  usage: USAGE,
  async run(args) {
    const { values } = parseFlags("verify", args, {
      data: { type: "string" },
      config: { type: "string" },
      repair: { type: "boolean" },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const config = loadConfig({ config: values.config, data: values.data });
    const logger = consoleLogger("warn");
    let store: MessageStore;
    try {
      store = await MessageStore.open({
        storage: new FileStorage(),
        config,
        clock: systemClock,
        logger,
        verifyAll: true,
        repair: values.repair ?? false,
      });
    } catch (error) {
      if (error instanceof DataDirLockedError) throw new CliError(error.message, 1);
      throw new CliError(`Cannot verify ${config.system.dataPath}: ${describeError(error)}`, 1);
    }
    let damaged = 0;
    for (const log of store.logs()) {
      const report = log.recovery;
      const notes = [
        report.bytesCut > 0 ? `cut ${report.bytesCut} bytes of torn tail` : "",
        report.repairedAt !== undefined ? `repaired: cut at offset ${report.repairedAt}` : "",
      ].filter(Boolean).join(", ");
      console.log(
        `${log.name}: ok, ${report.segments} segments, ${report.records} records, ${
          formatBytes(log.sizeBytes)
        }${notes ? ` (${notes})` : ""}`,
      );
    }
    for (const [name, error] of store.failures()) {
      damaged += 1;
      console.log(`${name}: DAMAGED: ${error.message}`);
    }
    await store.close();
    if (damaged > 0) {
      console.error(
        `${damaged} partition(s) damaged; run 'metaq verify --repair' to cut them at the damage`,
      );
      return 1;
    }
    return 0;
  },
};

/** @module `metaq verify`: checks every record of every partition on disk; can repair damage. */
import * as fs from "node:fs";
import process from "node:process";
import { systemClock } from "../lib/clock.ts";
import { describeError } from "../lib/errors.ts";
import { consoleLogger } from "../lib/log.ts";
import { DataDirLockedError, MessageStore } from "../lib/store/message_store.ts";
import { FileStorage } from "../lib/store/storage_file.ts";
import { CliError, type CommandSpec, formatBytes, formatFlag, parseFlags } from "./common.ts";
import { loadConfig } from "./load_config.ts";

const USAGE = `Usage: metaq verify [--data DIR] [--config FILE] [--repair] [--format text|json]

Scans every segment of every partition and checks each record's checksum. Run it with the
broker stopped (the data directory is locked while a broker uses it). Prints a line per
partition and a total; exits 1 if damage is found, or if DIR is not a data directory.

With --repair, a damaged log is cut at the first bad record; the damaged segment is kept as
<segment>.meta.damaged and later segments are moved aside with the same suffix, so nothing is
deleted. Messages after the damage are no longer served.

Options:
  --data DIR            the broker's data directory (default ./data, or dataPath of --config)
  --config FILE         the broker's server.ini
  --repair              cut damaged logs at the damage
  --format text|json    lines (default), or one JSON object: {"dataPath", "partitions":
                        [{"name", "ok", "segments", "records", "bytes", ...}], "damaged"}

Examples:
  metaq verify --data ./data
  metaq verify --data ./data --repair`;

interface PartitionReport {
  readonly name: string;
  readonly ok: boolean;
  readonly segments?: number;
  readonly records?: number;
  readonly bytes?: number;
  /** Bytes of a torn tail cut at start-up. */
  readonly bytesCut?: number;
  /** Where --repair cut the log. */
  readonly repairedAt?: number;
  readonly error?: string;
}

export const verify: CommandSpec = {
  name: "verify",
  usage: USAGE,
  async run(args) {
    const { values } = parseFlags("verify", args, {
      data: { type: "string" },
      config: { type: "string" },
      repair: { type: "boolean" },
      format: { type: "string" },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const format = formatFlag(values.format);
    const config = loadConfig({ config: values.config, data: values.data });
    const dataPath = config.system.dataPath;
    checkDataDirectory(dataPath);
    let store: MessageStore;
    try {
      store = await MessageStore.open({
        storage: new FileStorage(),
        config,
        clock: systemClock,
        logger: consoleLogger("warn"),
        verifyAll: true,
        repair: values.repair ?? false,
      });
    } catch (error) {
      if (error instanceof DataDirLockedError) throw new CliError(error.message, 1);
      throw new CliError(`Cannot verify ${dataPath}: ${describeError(error)}`, 1);
    }
    const partitions: PartitionReport[] = [];
    for (const log of store.logs()) {
      const report = log.recovery;
      partitions.push({
        name: log.name,
        ok: true,
        segments: report.segments,
        records: report.records,
        bytes: log.sizeBytes,
        bytesCut: report.bytesCut,
        repairedAt: report.repairedAt,
      });
    }
    for (const [name, error] of store.failures()) {
      partitions.push({ name, ok: false, error: error.message });
    }
    await store.close();
    const damaged = partitions.filter((partition) => !partition.ok).length;
    if (format === "json") {
      process.stdout.write(`${JSON.stringify({ dataPath, partitions, damaged })}\n`);
    } else {
      printReport(dataPath, partitions, damaged);
    }
    return damaged > 0 ? 1 : 0;
  },
};

/** The data directory must be there: verify never creates one (a typo would look clean). */
function checkDataDirectory(dataPath: string): void {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dataPath);
  } catch {
    throw new CliError(
      `Cannot verify ${dataPath}: no such directory (give the broker's --data, or its --config)`,
      1,
    );
  }
  if (!stat.isDirectory()) {
    throw new CliError(`Cannot verify ${dataPath}: it is a file, not a data directory`, 1);
  }
}

function printReport(dataPath: string, partitions: PartitionReport[], damaged: number): void {
  let records = 0;
  let bytes = 0;
  for (const partition of partitions) {
    if (!partition.ok) {
      console.log(`${partition.name}: DAMAGED: ${partition.error}`);
      continue;
    }
    records += partition.records ?? 0;
    bytes += partition.bytes ?? 0;
    const notes = [
      partition.bytesCut ? `cut ${partition.bytesCut} bytes of torn tail` : "",
      partition.repairedAt !== undefined ? `repaired: cut at offset ${partition.repairedAt}` : "",
    ].filter(Boolean).join(", ");
    console.log(
      `${partition.name}: ok, ${partition.segments} segments, ${partition.records} records, ${
        formatBytes(partition.bytes ?? 0)
      }${notes ? ` (${notes})` : ""}`,
    );
  }
  console.log(
    `Checked ${partitions.length} partitions in ${dataPath}: ${records} records, ${
      formatBytes(bytes)
    }, ${damaged === 0 ? "no damage" : `${damaged} damaged`}`,
  );
  if (damaged > 0) {
    console.error(
      `${damaged} partition(s) damaged; run 'metaq verify --repair' to cut them at the damage`,
    );
  }
}

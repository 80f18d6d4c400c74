/** @module A partition log on a given storage and directory, with the settings unit tests use. */
import { systemClock } from "../../lib/clock.ts";
import { silentLogger } from "../../lib/log.ts";
import { PartitionLog, type PartitionLogOptions } from "../../lib/store/partition_log.ts";
import type { Storage } from "../../lib/store/storage.ts";

/** Opens `orders-0` in `dir` (1 MiB segments and records, group commit), verifying every segment. */
export function openTestLog(
  storage: Storage,
  dir: string,
  extra: Partial<PartitionLogOptions> = {},
): Promise<PartitionLog> {
  return PartitionLog.open({
    storage,
    dir,
    name: "orders-0",
    segmentBytesMax: 1024 * 1024,
    recordDataBytesMax: 1024 * 1024,
    flush: { kind: "group" },
    clock: systemClock,
    logger: silentLogger,
    ...extra,
  }, { verifyAll: true, repair: false });
}

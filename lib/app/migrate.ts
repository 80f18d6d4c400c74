/**
 * @module Brings a data directory from before the broker kept its state in its own logs: the
 * consumer groups' committed offsets of `<dataPath>/_groups/offsets.log` go into `__meta-0` once,
 * the first time a broker starts on it with an empty `__meta-0`, and the old file is renamed
 * `offsets.log.migrated` (kept, not deleted, so an operator can go back).
 */
import type { Config } from "../config/config.ts";
import { describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { OffsetEntry } from "../protocol/group_wire.ts";
import { FileOffsetStore } from "../broker/groups/offset_store_file.ts";
import { joinPath, type Storage } from "../store/storage.ts";

export const LEGACY_OFFSETS_PATH = ["_groups", "offsets.log"];

export async function migrateGroupOffsets(options: {
  storage: Storage;
  config: Config;
  logger: Logger;
  write: (entries: readonly OffsetEntry[]) => Promise<void>;
}): Promise<void> {
  const { storage, config, logger } = options;
  const path = joinPath(config.system.dataPath, ...LEGACY_OFFSETS_PATH);
  if (storage.stat(path) === undefined) return;
  try {
    const old = await FileOffsetStore.open({ storage, path, logger });
    const entries = old.entries();
    await old.close();
    if (entries.length > 0) await options.write(entries);
    storage.rename(path, `${path}.migrated`);
    logger.log("info", "Moved committed group offsets into __meta-0", {
      entries: entries.length,
      from: path,
    });
  } catch (error) {
    logger.log("error", "Cannot move the old committed group offsets into __meta-0", {
      path,
      reason: describeError(error),
    });
    throw error;
  }
}

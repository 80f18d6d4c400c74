/**
 * @module Brings a data directory from before the broker kept its state in its own logs: the
 * consumer groups' committed offsets of `<dataPath>/_groups/offsets.log` go into `__meta-0` once,
 * the first time a broker starts on it with an empty `__meta-0`, and the old file is renamed
 * `offsets.log.migrated` (kept, so an operator can go back to the version that wrote it).
 *
 * The old file is read here and nowhere else, so its format is described here:
 *
 * ```text
 * entry   u32 body length | u32 CRC-32 of the body | u32 CRC-32 of the 8 bytes before | body
 * body    JSON {"kind": "commit" | "reset" | "snapshot", "entries": [[group, topic, partition, offset], ...]}
 * ```
 *
 * Entries apply in order (a snapshot replaces the table). Reading stops at the first entry that
 * is not whole and valid: the old writer appended whole entries, so what follows a torn one was
 * never acknowledged; the bytes left out are logged.
 */
import type { Config } from "../config/config.ts";
import { crc32 } from "../crc32.ts";
import { describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { compareEntries, type OffsetEntry, offsetKeyText } from "../protocol/group_wire.ts";
import { joinPath, type Storage } from "../store/storage.ts";

export const LEGACY_OFFSETS_PATH = ["_groups", "offsets.log"];

const HEADER_BYTES = 12;
/** Longest body the old writer made (4 MiB). */
const BODY_BYTES_MAX = 4 * 1024 * 1024;

export async function migrateGroupOffsets(options: {
  storage: Storage;
  config: Config;
  logger: Logger;
  write: (entries: readonly OffsetEntry[]) => Promise<void>;
}): Promise<void> {
  const { storage, config, logger } = options;
  const path = joinPath(config.system.dataPath, ...LEGACY_OFFSETS_PATH);
  const bytes = storage.readFile(path);
  if (bytes === undefined) return;
  try {
    const { entries, bytesRead } = readLegacyOffsets(bytes);
    if (bytesRead < bytes.length) {
      logger.log("warn", "The old offsets file ends with an entry that is not whole", {
        path,
        bytesLeftOut: bytes.length - bytesRead,
      });
    }
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

/** The offsets table an old `offsets.log` holds, and how many of its bytes were whole entries. */
export function readLegacyOffsets(
  bytes: Uint8Array,
): { entries: OffsetEntry[]; bytesRead: number } {
  const table = new Map<string, OffsetEntry>();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  let position = 0;
  // Each round takes one whole entry or stops, so rounds <= bytes / HEADER_BYTES.
  while (bytes.length - position >= HEADER_BYTES) {
    const length = view.getUint32(position);
    const bodyCrc = view.getUint32(position + 4);
    if (crc32(bytes.subarray(position, position + 8)) !== view.getUint32(position + 8)) break;
    if (length > BODY_BYTES_MAX || position + HEADER_BYTES + length > bytes.length) break;
    const body = bytes.subarray(position + HEADER_BYTES, position + HEADER_BYTES + length);
    if (crc32(body) !== bodyCrc) break;
    applyBody(table, JSON.parse(new TextDecoder().decode(body)));
    position += HEADER_BYTES + length;
  }
  return { entries: [...table.values()].sort(compareEntries), bytesRead: position };
}

function applyBody(
  table: Map<string, OffsetEntry>,
  body: { kind: string; entries: [string, string, number, number][] },
): void {
  if (body.kind === "snapshot") table.clear();
  for (const [group, topic, partition, offset] of body.entries) {
    const entry = { group, topic, partition, offset };
    table.set(offsetKeyText(entry), entry);
  }
}

/**
 * @module Retention: applies MetaQ's deletePolicy to a partition log. Only sealed segments at
 * the front of the log go, oldest first, judged by file modification time; the active segment
 * is never touched. `archive` keeps the data under another suffix (`.arc`, or `.zip` when
 * compressing), which the loader ignores, so archived segments leave the log but not the disk.
 */
import type { DeletePolicy } from "../config/retention_policy.ts";
import type { Logger } from "../log.ts";
import type { PartitionLog } from "./partition_log.ts";
import type { Storage } from "./storage.ts";

export interface RetentionResult {
  readonly removedSegments: number;
  readonly removedBytes: number;
  readonly newStartOffset: number;
}

export async function applyRetention(
  log: PartitionLog,
  options: {
    policy: DeletePolicy;
    nowMs: number;
    storage: Storage;
    logger: Logger;
    /**
     * Whether the log may start at `newStartOffset` (replication: only below the commit offset
     * and, on a follower, below its leader's log start). Asked before each segment goes.
     */
    mayStartAt?: (newStartOffset: number) => boolean;
  },
): Promise<RetentionResult> {
  const { policy, nowMs, storage, logger } = options;
  const startBefore = log.startOffset;
  const expired = (path: string, endOffset: number) => {
    const stat = storage.stat(path);
    if (stat === undefined || nowMs - stat.mtimeMs <= policy.maxAgeMs) return false;
    return options.mayStartAt?.(endOffset) ?? true;
  };
  const detached = log.detachOldSegments(expired);
  for (const path of detached) {
    if (policy.kind === "delete") {
      storage.remove(path);
    } else if (
      // Loaded when first needed: node:zlib is slow to load, and most brokers never archive.
      policy.compress &&
      await (await import("./zip.ts")).zipFile(storage, path, `${path}.zip`, baseName(path))
    ) {
      storage.remove(path);
    } else {
      storage.rename(path, `${path}.arc`);
    }
  }
  if (detached.length > 0) {
    await storage.syncDir(log.options.dir);
    logger.log("info", `Retention ${policy.kind === "delete" ? "deleted" : "archived"} segments`, {
      partition: log.name,
      segments: detached.length,
      startOffset: log.startOffset,
    });
  }
  return {
    removedSegments: detached.length,
    removedBytes: log.startOffset - startBefore,
    newStartOffset: log.startOffset,
  };
}

function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

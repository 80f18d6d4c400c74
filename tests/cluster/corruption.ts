/**
 * @module Disk corruption for stopped nodes (reliability plan 1.2, T12): cut bytes off a file,
 * flip random bits in a range, zero-fill a range, delete a file. Targets and positions come from
 * the run's seed; every mutation returns a sentence saying exactly what it did, for the run log.
 * Only ever touches files under a node's data directory, and only while the node is stopped.
 *
 * Hard-state files are found by name: any file under the data directory that is not a segment
 * and whose name matches HARD_STATE_PATTERN (the broker's naming is part of the contract).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseSegmentFileName } from "../../lib/store/segment.ts";
import type { Random } from "./random.ts";

/** Names that hold raft hard state (term, vote): `hard_state`, `raft.state`, `vote`... */
export const HARD_STATE_PATTERN = /hard[_-]?state|raft[_-]?state|\.state$|^state$|vote|term/i;

export interface SegmentFile {
  readonly path: string;
  readonly start: number;
  readonly size: number;
}

/** Segment files of `topic`-`partition`, by start offset; the last one is the active segment. */
export function segmentFiles(dataDir: string, topic: string, partition: number): SegmentFile[] {
  const dir = path.join(dataDir, `${topic}-${partition}`);
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir)
    .map((name) => ({ name, start: parseSegmentFileName(name) }))
    .filter((entry): entry is { name: string; start: number } => entry.start !== undefined)
    .sort((a, b) => a.start - b.start)
    .map(({ name, start }) => {
      const file = path.join(dir, name);
      return { path: file, start, size: fs.statSync(file).size };
    });
}

/** Files under `dataDir` that look like hard state (see HARD_STATE_PATTERN). */
export function hardStateFiles(dataDir: string): string[] {
  const out: string[] = [];
  const visit = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) visit(full);
      else if (
        parseSegmentFileName(entry.name) === undefined && HARD_STATE_PATTERN.test(entry.name)
      ) {
        out.push(full);
      }
    }
  };
  if (fs.existsSync(dataDir)) visit(dataDir);
  return out.sort();
}

/** Removes the last `bytes` bytes (at most the whole file). */
export function cutTail(file: string, bytes: number): string {
  const size = fs.statSync(file).size;
  const cutBytes = Math.min(size, bytes);
  fs.truncateSync(file, size - cutBytes);
  return `cut ${cutBytes} bytes off the end of ${file} (${size} -> ${size - cutBytes})`;
}

/** Flips `count` random bits inside [from, to) of the file (distinct bits). */
export function flipBits(
  file: string,
  parts: { from: number; to: number; count: number; random: Random },
): string {
  const bytes = fs.readFileSync(file);
  const to = Math.min(parts.to, bytes.length);
  if (to <= parts.from) {
    throw new RangeError(`Cannot flip bits in [${parts.from}, ${to}) of ${file}`);
  }
  const flipped = new Set<number>();
  const bitsMax = (to - parts.from) * 8;
  while (flipped.size < Math.min(parts.count, bitsMax)) {
    flipped.add(parts.from * 8 + parts.random.int(0, bitsMax - 1));
  }
  for (const bit of flipped) bytes[Math.floor(bit / 8)] ^= 1 << (bit % 8);
  fs.writeFileSync(file, bytes);
  const positions = [...flipped].sort((a, b) => a - b).map((bit) =>
    `${Math.floor(bit / 8)}.${bit % 8}`
  );
  return `flipped ${flipped.size} bit(s) of ${file} at byte.bit ${positions.join(", ")}`;
}

/** Overwrites [from, from + length) with zeros (clamped to the file). */
export function zeroFill(file: string, from: number, length: number): string {
  const size = fs.statSync(file).size;
  const end = Math.min(size, from + length);
  const fd = fs.openSync(file, "r+");
  try {
    fs.writeSync(fd, new Uint8Array(Math.max(0, end - from)), 0, Math.max(0, end - from), from);
  } finally {
    fs.closeSync(fd);
  }
  return `zero-filled bytes [${from}, ${end}) of ${file}`;
}

export function deleteFile(file: string): string {
  fs.rmSync(file, { force: true });
  return `deleted ${file}`;
}

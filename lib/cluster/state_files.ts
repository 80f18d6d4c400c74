/**
 * @module The small files a replica keeps beside its segments: the Raft hard state (term and
 * vote) and the leader-epoch list. Both are replaced atomically (temp file, fsync, rename,
 * directory fsync) and carry a CRC, so a torn or damaged file is detected, never half-read.
 *
 * `raft-state` holds the core's binary hard-state record (messages.ts, with its own CRC).
 * `leader-epochs` is text:
 *
 * ```text
 * metaq-leader-epochs 1
 * count 3
 * 0 0          <- epoch, start offset (the base)
 * 4 1048576 1,2,3   <- and the voters from there on, when the marker names them
 * 7 2097152 1,2,3,4
 * crc 987654321
 * ```
 *
 * `atomic-entries` is text in the same shape: the byte ranges of the atomic entries this copy
 * wrote (a transaction's batch for one partition), noted before their bytes, so that a crash
 * that kept a part of one is found at start (replication.md, "Atomic entries"):
 *
 * ```text
 * metaq-atomic-entries 1
 * count 1
 * 1048576 1049200   <- start and end offset
 * crc 123456789
 * ```
 *
 * The CRC covers every line before it. Files names have no `.meta` suffix, so MetaQ tools and
 * the segment loader ignore them.
 */
import { crc32 } from "../crc32.ts";
import { decodeHardState, encodeHardState, type HardState } from "./messages.ts";
import { joinPath, type Storage } from "../store/storage.ts";

export const HARD_STATE_FILE = "raft-state";
export const EPOCHS_FILE = "leader-epochs";
export const ATOMIC_ENTRIES_FILE = "atomic-entries";

/** The bytes [start, end) of a log. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

export interface EpochStartRecord {
  readonly epoch: number;
  readonly startOffset: number;
  readonly voters?: readonly number[];
}

/** A state file that exists but cannot be trusted (torn, damaged, or another format). */
export class StateFileError extends Error {
  override readonly name = "StateFileError";
}

/** Persists the Raft hard state in the core's checksummed encoding, atomically. */
export async function writeHardState(
  storage: Storage,
  dir: string,
  state: HardState,
): Promise<void> {
  await storage.writeFileAtomic(joinPath(dir, HARD_STATE_FILE), encodeHardState(state));
}

/**
 * The saved hard state: undefined when there is none (a first start), "unreadable" when the
 * file exists but fails its checksum (replication.md 5.7 rule 3 then applies).
 */
export function readHardState(storage: Storage, dir: string): HardState | "unreadable" | undefined {
  const bytes = storage.readFile(joinPath(dir, HARD_STATE_FILE));
  if (bytes === undefined) return undefined;
  return decodeHardState(bytes) ?? "unreadable";
}

export async function writeEpochs(
  storage: Storage,
  dir: string,
  epochs: readonly EpochStartRecord[],
): Promise<void> {
  const lines = [
    "metaq-leader-epochs 1",
    `count ${epochs.length}`,
    ...epochs.map((e) => `${e.epoch} ${e.startOffset}${e.voters ? ` ${e.voters.join(",")}` : ""}`),
  ];
  await storage.writeFileAtomic(joinPath(dir, EPOCHS_FILE), sealed(lines));
}

export function readEpochs(storage: Storage, dir: string): EpochStartRecord[] | undefined {
  const lines = unsealed(storage, joinPath(dir, EPOCHS_FILE), "metaq-leader-epochs 1");
  if (!lines) return undefined;
  const count = field(lines[0], "count");
  if (lines.length !== count + 1) {
    throw new StateFileError(`${EPOCHS_FILE}: expected ${count} epochs, found ${lines.length - 1}`);
  }
  return lines.slice(1).map((line) => {
    const [epochText, startText, votersText, extra] = line.split(" ");
    const [epoch, startOffset] = [Number(epochText), Number(startText)];
    const voters = votersText?.split(",").map(Number);
    const badVoters = voters !== undefined &&
      !voters.every((id) => Number.isInteger(id) && id >= 1 && id <= 0xffff_ffff);
    if (
      !Number.isSafeInteger(epoch) || !Number.isSafeInteger(startOffset) || badVoters ||
      extra !== undefined
    ) {
      throw new StateFileError(`${EPOCHS_FILE}: bad line '${line}'`);
    }
    return { epoch, startOffset, ...(voters ? { voters } : {}) };
  });
}

export async function writeAtomicEntries(
  storage: Storage,
  dir: string,
  ranges: readonly ByteRange[],
): Promise<void> {
  const lines = [
    "metaq-atomic-entries 1",
    `count ${ranges.length}`,
    ...ranges.map((range) => `${range.start} ${range.end}`),
  ];
  await storage.writeFileAtomic(joinPath(dir, ATOMIC_ENTRIES_FILE), sealed(lines));
}

/** The noted atomic entries, oldest first; none when the file does not exist. */
export function readAtomicEntries(storage: Storage, dir: string): ByteRange[] {
  const path = joinPath(dir, ATOMIC_ENTRIES_FILE);
  const lines = unsealed(storage, path, "metaq-atomic-entries 1");
  if (!lines) return [];
  const count = field(lines[0], "count");
  if (lines.length !== count + 1) {
    throw new StateFileError(`${path}: expected ${count} ranges, found ${lines.length - 1}`);
  }
  return lines.slice(1).map((line) => {
    const [start, end, extra] = line.split(" ").map(Number);
    if (
      !Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end <= start ||
      extra !== undefined
    ) {
      throw new StateFileError(`${path}: bad line '${line}'`);
    }
    return { start, end };
  });
}

function sealed(lines: string[]): Uint8Array {
  const body = lines.map((line) => `${line}\n`).join("");
  return new TextEncoder().encode(`${body}crc ${crc32(new TextEncoder().encode(body))}\n`);
}

/** Lines after the header, checked against the CRC; undefined when the file does not exist. */
function unsealed(storage: Storage, path: string, header: string): string[] | undefined {
  const bytes = storage.readFile(path);
  if (bytes === undefined) return undefined;
  const text = new TextDecoder().decode(bytes);
  const crcAt = text.lastIndexOf("crc ");
  if (crcAt < 0 || !text.endsWith("\n")) {
    throw new StateFileError(`${path}: no checksum line (torn write?)`);
  }
  const body = text.slice(0, crcAt);
  if (Number(text.slice(crcAt + 4).trim()) !== crc32(new TextEncoder().encode(body))) {
    throw new StateFileError(`${path}: checksum mismatch`);
  }
  const lines = body.split("\n").filter((line) => line !== "");
  if (lines[0] !== header) throw new StateFileError(`${path}: unknown format '${lines[0]}'`);
  return lines.slice(1);
}

function field(line: string | undefined, name: string): number {
  const [key, value] = (line ?? "").split(" ");
  const number = Number(value);
  if (key !== name || !Number.isSafeInteger(number) || number < 0) {
    throw new StateFileError(`expected '${name} <n>', got '${line}'`);
  }
  return number;
}

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
 * `atomic-entries` holds the byte ranges of the atomic entries this copy wrote (a transaction's
 * batch for one partition), each noted before its bytes, so that a crash that kept a part of one
 * is found at start (replication.md, "Atomic entries"). Notes are appended (one fsync each
 * time) and the file is rewritten atomically without the old ones now and then; each line
 * carries the CRC of its own text:
 *
 * ```text
 * metaq-atomic-entries 2
 * 1048576 1049200 2914788141   <- start, end offset, CRC-32 of "1048576 1049200"
 * ```
 *
 * The other two files' CRC covers every line before it. Files names have no `.meta` suffix, so MetaQ tools and
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

const ATOMIC_ENTRIES_HEADER = "metaq-atomic-entries 2";

/** One note line: the range and a CRC of its text, so a torn or damaged line is told apart. */
function atomicEntryLine(range: ByteRange): string {
  const text = `${range.start} ${range.end}`;
  return `${text} ${crc32(new TextEncoder().encode(text))}\n`;
}

/** The note file holding exactly `ranges`. */
export function encodeAtomicEntries(ranges: readonly ByteRange[]): Uint8Array {
  return new TextEncoder().encode(
    `${ATOMIC_ENTRIES_HEADER}\n${ranges.map(atomicEntryLine).join("")}`,
  );
}

/** Replaces the note file with `ranges` (atomically: temp file, fsync, rename). */
export async function writeAtomicEntries(
  storage: Storage,
  dir: string,
  ranges: readonly ByteRange[],
): Promise<void> {
  await storage.writeFileAtomic(joinPath(dir, ATOMIC_ENTRIES_FILE), encodeAtomicEntries(ranges));
}

/**
 * Adds `ranges` at the end of the note file (created if needed) and waits for its fsync. The
 * file must end with a whole line: settleAtomicEntries rewrites a torn one at start.
 */
export async function appendAtomicEntries(
  storage: Storage,
  dir: string,
  ranges: readonly ByteRange[],
): Promise<void> {
  const path = joinPath(dir, ATOMIC_ENTRIES_FILE);
  const created = storage.stat(path) === undefined;
  const file = storage.open(path, { create: true });
  try {
    const size = file.size();
    const head = size === 0 ? `${ATOMIC_ENTRIES_HEADER}\n` : "";
    file.write([new TextEncoder().encode(head + ranges.map(atomicEntryLine).join(""))], size);
    await file.sync();
  } finally {
    file.close();
  }
  if (created) await storage.syncDir(dir);
}

/**
 * The noted atomic entries, oldest first; none when the file does not exist. Lines after the
 * last good one that are cut short or fail their CRC are a tail whose fsync never finished (a
 * torn write, or junk a power cut left): their entries were never written, and they are left
 * out. A good line after a bad one is damage (StateFileError).
 */
export function readAtomicEntries(storage: Storage, dir: string): ByteRange[] {
  const path = joinPath(dir, ATOMIC_ENTRIES_FILE);
  const bytes = storage.readFile(path);
  if (bytes === undefined || bytes.length === 0) return [];
  const lines = new TextDecoder().decode(bytes).split("\n");
  // The text after the last newline is an unfinished line (empty when the file ends whole).
  lines.pop();
  if (lines[0] !== ATOMIC_ENTRIES_HEADER) {
    // The file's first write never finished (what a power cut left of it, or nothing): none of
    // its notes was durable, so none of their entries was written. Another format has notes.
    if (lines.every((line) => !parseAtomicEntryLine(line))) return [];
    throw new StateFileError(`${path}: unknown format '${(lines[0] ?? "").slice(0, 40)}'`);
  }
  const ranges: ByteRange[] = [];
  let bad: string | undefined;
  for (const line of lines.slice(1)) {
    const range = parseAtomicEntryLine(line);
    if (!range) {
      bad ??= line;
      continue;
    }
    if (bad !== undefined) {
      throw new StateFileError(`${path}: bad line '${bad.slice(0, 60)}' before good ones`);
    }
    ranges.push(range);
  }
  return ranges;
}

function parseAtomicEntryLine(line: string): ByteRange | undefined {
  const parts = line.split(" ");
  if (parts.length !== 3) return undefined;
  const [start, end, crc] = parts.map(Number);
  if (crc !== crc32(new TextEncoder().encode(`${parts[0]} ${parts[1]}`))) return undefined;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end <= start) {
    return undefined;
  }
  return { start, end };
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

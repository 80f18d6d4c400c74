/**
 * @module The transaction journal: records appended to one active file under
 * `<dataLogPath>/transactions/`, made durable on request, and checkpointed into a fresh file.
 *
 * A journal file is `<sequence, 20 digits>.txlog`. It opens with a `file` record, then a
 * snapshot of everything still live when it was started (open and prepared transactions'
 * puts, commits whose batches may not be durable yet, heuristic outcomes), then a
 * `checkpoint` record; records appended later follow. A checkpoint writes such a file, makes
 * it and its directory entry durable, and deletes the older file, so the journal stays about
 * as large as the live state plus one file's growth (TX_JOURNAL_FILE_BYTES_MAX).
 *
 * Opening reads the newest file whose checkpoint is complete; older files and a newer file
 * cut short by a crash in the middle of a checkpoint are deleted. A torn tail of that file is
 * cut; damage before its end refuses the start (see JournalCorruptError).
 *
 * The TxJournal interface is all the manager sees, so a replicated journal can replace this
 * one when transactions meet Raft-replicated partitions. Not here: what records mean
 * (replay.ts) or when to sync (the manager, per flushTxLogAtCommit).
 */
import { assert } from "../../assert.ts";
import type { Clock } from "../../clock.ts";
import { describeError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { type FileHandle, joinPath, makeDirDurably, type Storage } from "../../store/storage.ts";
import { encodeRecords, scanJournal, type TxRecord } from "./journal_record.ts";

export interface TxJournal {
  /** Writes records in one piece (not yet durable). Throws JournalWriteError, leaving none. */
  append(records: readonly TxRecord[]): void;
  /** Resolves once every record appended so far is durable. Rejects on an I/O failure. */
  sync(): Promise<void>;
  /**
   * Starts a new file holding `snapshot` (the live state, as records) and deletes the old one
   * once the new one is durable. Appends made after this call go to the new file.
   */
  checkpoint(snapshot: readonly TxRecord[], nextTxNumber: number): Promise<void>;
  /** Bytes appended since the last checkpoint. */
  readonly bytesSinceCheckpoint: number;
  /** Bytes of the last checkpoint's snapshot. */
  readonly checkpointBytes: number;
  close(): Promise<void>;
}

export class JournalWriteError extends Error {
  override readonly name = "JournalWriteError";
}

export class JournalCorruptError extends Error {
  override readonly name = "JournalCorruptError";
}

export interface JournalOptions {
  readonly storage: Storage;
  /** The `transactions` directory. */
  readonly dir: string;
  readonly clock: Clock;
  readonly logger: Logger;
}

export interface OpenedJournal {
  readonly journal: FileTxJournal;
  /** Every record of the live file, in order, for replay. */
  readonly records: TxRecord[];
}

const FILE_NAME = /^(\d{20})\.txlog$/;
const fileName = (sequence: number) => `${String(sequence).padStart(20, "0")}.txlog`;

/** Opens (or creates) the journal in `options.dir` and returns its records for replay. */
export async function openJournal(options: JournalOptions): Promise<OpenedJournal> {
  const { storage, dir } = options;
  await makeDirDurably(storage, dir);
  const sequences = storage.list(dir)
    .map((name) => FILE_NAME.exec(name)?.[1])
    .filter((digits): digits is string => digits !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
  const highest = sequences.length > 0 ? sequences[sequences.length - 1] : -1;
  for (let index = sequences.length - 1; index >= 0; index--) {
    const opened = await openFile(options, sequences[index], index === sequences.length - 1);
    if (!opened) continue;
    for (const other of sequences) {
      if (other !== sequences[index]) storage.remove(joinPath(dir, fileName(other)));
    }
    await storage.syncDir(dir);
    const journal = new FileTxJournal(options, opened, highest);
    return { journal, records: opened.records };
  }
  if (sequences.length > 0) {
    options.logger.log("warn", "No complete transaction journal file; starting an empty one", {
      dir,
      files: sequences.length,
    });
    for (const sequence of sequences) storage.remove(joinPath(dir, fileName(sequence)));
  }
  return { journal: await FileTxJournal.create(options, highest + 1), records: [] };
}

interface OpenedFile {
  readonly sequence: number;
  readonly file: FileHandle;
  readonly size: number;
  readonly checkpointBytes: number;
  readonly records: TxRecord[];
}

/**
 * Reads one file. Undefined when its checkpoint never completed (a crash while it was being
 * started), which only the newest file may show; anything else wrong refuses the start.
 */
async function openFile(
  options: JournalOptions,
  sequence: number,
  newest: boolean,
): Promise<OpenedFile | undefined> {
  const path = joinPath(options.dir, fileName(sequence));
  const bytes = options.storage.readFile(path) ?? new Uint8Array(0);
  const scan = scanJournal(bytes);
  const records = scan.records.map((scanned) => scanned.record);
  const checkpointAt = scan.records.findIndex((scanned) =>
    scanned.record.type === "checkpoint" && scanned.record.sequence === sequence
  );
  const first = records[0];
  const complete = checkpointAt > 0 && first?.type === "file" && first.sequence === sequence;
  if (!complete) {
    if (newest) return undefined;
    throw new JournalCorruptError(
      `Cannot open transaction journal ${path}: it has no complete checkpoint; ` +
        "move the transactions directory aside to start without it (its prepared transactions are lost)",
    );
  }
  if (scan.kind === "corrupt") {
    throw new JournalCorruptError(
      `Cannot open transaction journal ${path}: ${scan.reason} at byte ${scan.validEnd}; ` +
        "move the transactions directory aside to start without it (its prepared transactions are lost)",
    );
  }
  const file = options.storage.open(path, { create: false });
  if (scan.kind === "tornTail") {
    file.truncate(scan.validEnd);
    await file.sync();
    options.logger.log("warn", "Cut torn tail of transaction journal", {
      file: path,
      bytesCut: bytes.length - scan.validEnd,
      reason: scan.reason,
    });
  }
  const checkpointEnd = scan.records[checkpointAt + 1]?.position ?? scan.validEnd;
  return { sequence, file, size: scan.validEnd, checkpointBytes: checkpointEnd, records };
}

export class FileTxJournal implements TxJournal {
  readonly #options: JournalOptions;
  #sequence: number;
  #file: FileHandle;
  #size: number;
  #checkpointBytes: number;
  /** Appends made so far, and how many of them are known durable. */
  #appended = 0;
  #synced = 0;
  #syncing: Promise<void> | undefined;
  /** The fdatasync in flight, and on which file. */
  #fileSync: { file: FileHandle; promise: Promise<void> } | undefined;
  /** The latest checkpoint's durability work (new file, directory, old file removal). */
  #rotation: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(options: JournalOptions, opened: OpenedFile, highestSequence: number) {
    assert(opened.sequence <= highestSequence);
    this.#options = options;
    this.#sequence = highestSequence;
    this.#file = opened.file;
    this.#size = opened.size;
    this.#checkpointBytes = opened.checkpointBytes;
  }

  /** Creates the first file of an empty journal: just a file record and a checkpoint. */
  static async create(options: JournalOptions, sequence: number): Promise<FileTxJournal> {
    const path = joinPath(options.dir, fileName(sequence));
    const file = options.storage.open(path, { create: true });
    file.truncate(0);
    const bytes = encodeRecords([
      { type: "file", sequence, createdMs: options.clock.wallMs() },
      { type: "checkpoint", sequence, nextTxNumber: 1 },
    ]);
    file.write([bytes], 0);
    await file.sync();
    await options.storage.syncDir(options.dir);
    const records = [] as TxRecord[];
    return new FileTxJournal(
      options,
      { sequence, file, size: bytes.length, checkpointBytes: bytes.length, records },
      sequence,
    );
  }

  get bytesSinceCheckpoint(): number {
    return this.#size - this.#checkpointBytes;
  }

  get checkpointBytes(): number {
    return this.#checkpointBytes;
  }

  /** Path of the active file (for logs and tests). */
  get activePath(): string {
    return this.#file.path;
  }

  append(records: readonly TxRecord[]): void {
    if (this.#closed) {
      throw new JournalWriteError("Cannot write to transaction journal: it is closed");
    }
    if (records.length === 0) return;
    const bytes = encodeRecords(records);
    const position = this.#size;
    try {
      this.#file.write([bytes], position);
    } catch (error) {
      // Cut whatever part of the write landed, so later records never follow garbage.
      this.#file.truncate(position);
      throw new JournalWriteError(
        `Cannot write to transaction journal ${this.#file.path}: ${describeError(error)}`,
        { cause: error },
      );
    }
    this.#size += bytes.length;
    this.#appended += 1;
  }

  async sync(): Promise<void> {
    const target = this.#appended;
    while (this.#synced < target) {
      if (!this.#syncing) {
        this.#syncing = this.#syncOnce().finally(() => (this.#syncing = undefined));
      }
      await this.#syncing;
    }
  }

  checkpoint(snapshot: readonly TxRecord[], nextTxNumber: number): Promise<void> {
    if (this.#closed) {
      return Promise.reject(
        new JournalWriteError("Cannot checkpoint transaction journal: it is closed"),
      );
    }
    const { storage, dir, clock } = this.#options;
    const sequence = this.#sequence + 1;
    const path = joinPath(dir, fileName(sequence));
    const bytes = encodeRecords([
      { type: "file", sequence, createdMs: clock.wallMs() },
      ...snapshot,
      { type: "checkpoint", sequence, nextTxNumber },
    ]);
    let file: FileHandle | undefined;
    try {
      file = storage.open(path, { create: true });
      file.truncate(0);
      file.write([bytes], 0);
    } catch (error) {
      file?.close();
      storage.remove(path);
      throw new JournalWriteError(
        `Cannot write transaction checkpoint ${path}: ${describeError(error)}`,
        { cause: error },
      );
    }
    const old = this.#file;
    // An fdatasync of the old file may be running: closing the file waits for it.
    const oldSync = this.#fileSync?.file === old
      ? this.#fileSync.promise.catch(() => {})
      : undefined;
    this.#file = file;
    this.#sequence = sequence;
    this.#size = this.#checkpointBytes = bytes.length;
    this.#appended += 1;
    const previous = this.#rotation;
    this.#rotation = this.#finishCheckpoint({ previous, file, old, oldSync });
    return this.#rotation;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.sync();
    await this.#rotation;
    this.#closed = true;
    this.#file.close();
  }

  async #syncOnce(): Promise<void> {
    const upTo = this.#appended;
    // A checkpoint started meanwhile holds these records in its new file: wait until that
    // file and its directory entry are durable, then sync whichever file is active.
    let rotation: Promise<void>;
    do {
      rotation = this.#rotation;
      await rotation;
    } while (rotation !== this.#rotation);
    const file = this.#file;
    const promise = file.sync();
    this.#fileSync = { file, promise };
    try {
      await promise;
    } finally {
      if (this.#fileSync?.promise === promise) this.#fileSync = undefined;
    }
    this.#synced = Math.max(this.#synced, upTo);
  }

  async #finishCheckpoint(
    parts: {
      previous: Promise<void>;
      file: FileHandle;
      old: FileHandle;
      oldSync: Promise<void> | undefined;
    },
  ): Promise<void> {
    const { storage, dir } = this.#options;
    const { previous, file, old, oldSync } = parts;
    await previous;
    await file.sync();
    await storage.syncDir(dir);
    await oldSync;
    old.close();
    storage.remove(old.path);
    await storage.syncDir(dir);
  }
}

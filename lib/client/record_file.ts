/**
 * @module RecordFile: one append-only file of MetaQ records on a client's disk, for the small
 * state a consumer keeps durably (broadcast offsets, the recovery store). It uses node:fs
 * directly, so the client needs nothing of the broker's store. Knows records, not what their
 * data means.
 *
 * Each record is lib/protocol/record.ts's `length | checksum | id | flag | data`, with flag 0,
 * 1 to `dataBytesMax` bytes of data, and an id from a counter that goes on across compactions
 * and reopens, so ids only grow along the file. Appends are group-committed: every append made
 * while an fdatasync runs is covered by the next one. `compact` replaces the file with the live
 * state atomically (a temp file, fsync, rename, fsync of the directory). With `lock`,
 * `<path>.lock` holds our pid (pid_lock.ts), so two processes never append to one file.
 *
 * Opening reads the file from the start and keeps records until the first that is not valid:
 * header or data past the end of the file, a length outside 1..dataBytesMax, a flag other than
 * 0, an id not above the one before, or a bad checksum. Appends only go to the end, so a crash
 * can only damage what was written last:
 *
 * | after the first invalid record              | verdict                                      |
 * | ------------------------------------------- | -------------------------------------------- |
 * | no valid record starts anywhere in the rest | torn tail: cut it off, log the bytes lost    |
 * | a valid record starts somewhere in the rest | damage: refuse to open; with `repair`, cut   |
 * |                                             | there and log the bytes lost                 |
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { assert } from "../assert.ts";
import { metaqChecksum } from "../crc32.ts";
import { BrokerError, describeError, isNoSpace } from "../errors.ts";
import type { Logger } from "../log.ts";
import {
  readHeader,
  RECORD_HEADER_BYTES,
  RecordLengthError,
  walkRecords,
  writeRecord,
} from "../protocol/record.ts";
import { releaseLock, takeLock } from "./pid_lock.ts";

/** The largest `dataBytesMax`: a record length is a signed 32-bit integer. */
const DATA_BYTES_MAX_LIMIT = 0x7fffffff;

export interface RecordFileOptions {
  readonly path: string;
  /** Longest record data accepted, on append and on read. */
  readonly dataBytesMax: number;
  /** Cut a damaged file at the damage instead of refusing to open it. */
  readonly repair?: boolean;
  /** Hold `<path>.lock` (our pid) so two processes never append to one file. */
  readonly lock?: boolean;
  readonly logger: Logger;
}

export class RecordFile {
  readonly options: RecordFileOptions;
  #fd: number;
  #sizeBytes: number;
  #nextId: bigint;
  #syncCount = 0;
  #failed: BrokerError | undefined;
  #waiting: PromiseWithResolvers<void> | undefined;
  #syncing: Promise<void> = Promise.resolve();
  #syncRunning = false;
  #compaction: Promise<void> | undefined;
  #held: { bytes: Uint8Array; done: PromiseWithResolvers<void> }[] = [];
  #closed = false;

  private constructor(options: RecordFileOptions, fd: number, scan: RecordScan) {
    this.options = options;
    this.#fd = fd;
    this.#sizeBytes = scan.validBytes;
    this.#nextId = scan.lastId + 1n;
  }

  /** Opens (creating) the file, recovers it by the table above, and returns its records' data. */
  static async open(
    options: RecordFileOptions,
  ): Promise<{ file: RecordFile; bodies: Uint8Array[] }> {
    assert(Number.isInteger(options.dataBytesMax));
    assert(options.dataBytesMax >= 1);
    assert(options.dataBytesMax <= DATA_BYTES_MAX_LIMIT);
    await makeDirDurably(path.dirname(options.path));
    if (options.lock) takeLock(options.path);
    try {
      return await openLocked(options, (fd, scan) => new RecordFile(options, fd, scan));
    } catch (error) {
      if (options.lock) releaseLock(options.path);
      throw error;
    }
  }

  /** Bytes of valid records in the file. */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  /** fdatasync calls made so far (for tests and stats: group commit keeps this low). */
  get syncCount(): number {
    return this.#syncCount;
  }

  /** Appends one record per body as one write; resolves once an fdatasync covers them. */
  append(bodies: readonly Uint8Array[]): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    assert(!this.#closed, "record file is closed");
    assert(bodies.length > 0, "append needs a record");
    const bytes = this.#encode(bodies);
    if (this.#compaction) {
      const done = settledQuietly(Promise.withResolvers<void>());
      this.#held.push({ bytes, done });
      return done.promise;
    }
    return this.#writeAndSync(bytes);
  }

  /**
   * Replaces the file with one record per body (the live state), atomically and durably.
   * Appends made meanwhile wait and go to the new file. A full disk leaves the old file as it
   * was and rejects with `storageFull`; any other failure fails the file.
   */
  compact(bodies: readonly Uint8Array[]): Promise<void> {
    assert(!this.#closed, "record file is closed");
    assert(!this.#compaction, "compaction already running");
    if (this.#failed) return Promise.reject(this.#failed);
    // Encoded now, so the snapshot's ids are below those of the appends held while it runs.
    const bytes = this.#encode(bodies);
    const compaction = this.#replaceWith(bytes).finally(() => {
      this.#compaction = undefined;
      this.#releaseHeld();
    });
    this.#compaction = compaction.catch(() => {}); // its caller sees the failure; close does not
    return compaction;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#compaction;
    await this.#syncing;
    fs.closeSync(this.#fd);
    if (this.options.lock) releaseLock(this.options.path);
  }

  /** Records for `bodies` with the next ids, checked as a reader will check them. */
  #encode(bodies: readonly Uint8Array[]): Uint8Array {
    const { dataBytesMax } = this.options;
    let total = 0;
    for (const body of bodies) {
      assert(body.length >= 1, "a record needs data");
      assert(body.length <= dataBytesMax, `record of ${body.length} bytes is too long`);
      total += RECORD_HEADER_BYTES + body.length;
    }
    const firstId = this.#nextId;
    const out = new Uint8Array(total);
    let at = 0;
    for (const body of bodies) {
      at += writeRecord(out, at, { id: this.#nextId++, flag: 0, data: body });
    }
    assert(scanRecords(out, dataBytesMax, firstId - 1n).validBytes === out.length);
    return out;
  }

  #writeAndSync(bytes: Uint8Array): Promise<void> {
    try {
      writeFully(this.#fd, bytes, this.#sizeBytes);
    } catch (error) {
      if (isNoSpace(error) && this.#cutBack()) {
        // A full disk refuses this append only: nothing past #sizeBytes was acknowledged, the
        // partial write is cut, and appends work again once there is room.
        return Promise.reject(this.#noSpace(error));
      }
      this.#fail(error);
      return Promise.reject(this.#failed);
    }
    this.#sizeBytes += bytes.length;
    this.#waiting ??= settledQuietly(Promise.withResolvers<void>());
    const waiting = this.#waiting.promise;
    if (!this.#syncRunning) this.#syncing = this.#runSyncs();
    return waiting;
  }

  /** One fdatasync per round; appends made during a round wait for the next one. */
  async #runSyncs(): Promise<void> {
    this.#syncRunning = true; // cleared in the turn the loop ends, so no append is stranded
    try {
      while (this.#waiting) {
        const round = this.#waiting;
        this.#waiting = undefined;
        await this.#syncRound(round);
      }
    } finally {
      this.#syncRunning = false;
    }
  }

  async #syncRound(round: PromiseWithResolvers<void>): Promise<void> {
    if (this.#failed) return round.reject(this.#failed);
    try {
      this.#syncCount += 1;
      await fdatasync(this.#fd);
      round.resolve();
    } catch (error) {
      this.#fail(error);
      round.reject(this.#failed);
    }
  }

  /** Writes `bytes` to `<path>.compact`, syncs it, and renames it over the file. */
  async #replaceWith(bytes: Uint8Array): Promise<void> {
    await this.#syncing; // appends already written get their fdatasync before the swap
    if (this.#failed) throw this.#failed;
    const temp = `${this.options.path}.compact`;
    let fd: number | undefined;
    try {
      fd = fs.openSync(temp, "w+", 0o644);
      writeFully(fd, bytes, 0);
      await fsync(fd);
      fs.renameSync(temp, this.options.path);
    } catch (error) {
      // A half-written copy helps nobody and, on a full disk, holds the space that is missing.
      if (fd !== undefined) fs.closeSync(fd);
      fs.rmSync(temp, { force: true });
      if (isNoSpace(error)) throw this.#noSpace(error); // the old file is untouched
      this.#fail(error);
      throw this.#failed;
    }
    fs.closeSync(this.#fd);
    this.#fd = fd;
    this.#sizeBytes = bytes.length;
    try {
      await syncDir(path.dirname(this.options.path));
    } catch (error) {
      this.#fail(error);
      throw this.#failed;
    }
  }

  #releaseHeld(): void {
    const held = this.#held;
    this.#held = [];
    for (const { bytes, done } of held) {
      if (this.#failed) done.reject(this.#failed);
      else this.#writeAndSync(bytes).then(done.resolve, done.reject);
    }
  }

  /** Cuts a partial write off the end of the file; false when even that fails. */
  #cutBack(): boolean {
    try {
      fs.ftruncateSync(this.#fd, this.#sizeBytes);
      return true;
    } catch {
      return false;
    }
  }

  #noSpace(error: unknown): BrokerError {
    return new BrokerError("storageFull", `${this.options.path}: ${describeError(error)}`, {
      cause: error,
    });
  }

  /** After a failed write or sync the page cache cannot be trusted: refuse everything after. */
  #fail(error: unknown): void {
    if (this.#failed) return;
    this.#failed = new BrokerError(
      "storageFailed",
      `${this.options.path}: ${describeError(error)}`,
      {
        cause: error,
      },
    );
    this.options.logger.log("error", "Record file failed; refusing further writes", {
      path: this.options.path,
      reason: describeError(error),
    });
  }
}

/**
 * Logs a file that an earlier metaq wrote in its journal format where a record file now lives
 * (`offsets.log`, `recover.log`). It is left as it was and never read: opened as a record file
 * it would look torn from its first byte and be cut to nothing.
 */
export function warnOfEarlierFile(earlierPath: string, logger: Logger): void {
  if (!fs.existsSync(earlierPath)) return;
  logger.log("warn", "Ignoring a file an earlier metaq wrote in another format", {
    path: earlierPath,
  });
}

export interface RecordScan {
  /** Data of the valid records, in file order. */
  readonly bodies: Uint8Array[];
  /** Bytes of valid records from the start of the file. */
  readonly validBytes: number;
  /** Id of the last valid record (`afterId` when there is none): the counter goes on from it. */
  readonly lastId: bigint;
  readonly verdict: "clean" | "torn" | "damaged";
  /** What is wrong with the first invalid record. */
  readonly reason?: string;
}

/** Reads records from `bytes` and classifies what stops the reading (the table at the top). */
export function scanRecords(bytes: Uint8Array, dataBytesMax: number, afterId = 0n): RecordScan {
  const bodies: Uint8Array[] = [];
  let lastId = afterId;
  let validBytes: number;
  try {
    validBytes = walkRecords(bytes, dataBytesMax, (position) => {
      const record = recordAt(bytes, position, lastId, dataBytesMax);
      if (typeof record === "string") return false;
      bodies.push(record.data);
      lastId = record.id;
    }).bytes;
  } catch (error) {
    if (!(error instanceof RecordLengthError)) throw error;
    validBytes = error.position;
  }
  if (validBytes === bytes.length) return { bodies, validBytes, lastId, verdict: "clean" };
  const reason = recordAt(bytes, validBytes, lastId, dataBytesMax);
  assert(typeof reason === "string", "the walk stopped at a valid record");
  const verdict = validRecordAfter(bytes, validBytes, lastId, dataBytesMax) ? "damaged" : "torn";
  return { bodies, validBytes, lastId, verdict, reason };
}

/** The record starting at `position` if it is valid after `lastId`, or why it is not. */
function recordAt(
  bytes: Uint8Array,
  position: number,
  lastId: bigint,
  dataBytesMax: number,
): { id: bigint; data: Uint8Array } | string {
  if (bytes.length - position < RECORD_HEADER_BYTES) return "partial record header";
  const header = readHeader(bytes, position);
  if (header.length < 1 || header.length > dataBytesMax) {
    return `record length ${header.length} outside 1 to ${dataBytesMax}`;
  }
  const end = position + RECORD_HEADER_BYTES + header.length;
  if (end > bytes.length) return "partial record data";
  if (header.flag !== 0) return `record flag ${header.flag} is not 0`;
  if (header.id <= lastId) return `record id ${header.id} is not above ${lastId}`;
  const data = bytes.subarray(position + RECORD_HEADER_BYTES, end);
  if (metaqChecksum(data) !== header.checksum) return "bad record checksum";
  return { id: header.id, data };
}

/** Whether a valid record starts anywhere after `position`: what tells damage from a torn tail. */
function validRecordAfter(
  bytes: Uint8Array,
  position: number,
  lastId: bigint,
  dataBytesMax: number,
): boolean {
  for (let start = position + 1; start + RECORD_HEADER_BYTES <= bytes.length; start++) {
    if (typeof recordAt(bytes, start, lastId, dataBytesMax) !== "string") return true;
  }
  return false;
}

/** Opens the file under its lock (taken by the caller), scans it and cuts what is invalid. */
async function openLocked(
  options: RecordFileOptions,
  make: (fd: number, scan: RecordScan) => RecordFile,
): Promise<{ file: RecordFile; bodies: Uint8Array[] }> {
  const filePath = options.path;
  fs.rmSync(`${filePath}.compact`, { force: true }); // a compaction a crash cut short
  const existed = fs.existsSync(filePath);
  const fd = fs.openSync(filePath, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
  try {
    const buffer = fs.readFileSync(fd);
    const bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    const scan = scanRecords(bytes, options.dataBytesMax);
    if (scan.verdict !== "clean") await cutInvalid(fd, scan, bytes.length, options);
    if (!existed) await syncDir(path.dirname(filePath));
    return { file: make(fd, scan), bodies: scan.bodies };
  } catch (error) {
    fs.closeSync(fd);
    throw error;
  }
}

/** Cuts a torn tail, or damage when `repair` is set; refuses damage otherwise. */
async function cutInvalid(
  fd: number,
  scan: RecordScan,
  sizeBytes: number,
  options: RecordFileOptions,
): Promise<void> {
  if (scan.verdict === "damaged" && !options.repair) {
    throw new BrokerError(
      "corruption",
      `record file ${options.path} has a ${scan.reason} at byte ${scan.validBytes} and valid ` +
        "records after it; open it with repair to cut it there",
    );
  }
  options.logger.log(scan.verdict === "damaged" ? "error" : "warn", "Cutting record file", {
    path: options.path,
    verdict: scan.verdict,
    reason: scan.reason,
    atByte: scan.validBytes,
    bytesLost: sizeBytes - scan.validBytes,
  });
  fs.ftruncateSync(fd, scan.validBytes);
  await fdatasync(fd);
}

/**
 * Creates `dir` and any missing parents, syncing each new entry's parent directory, so the
 * directory still exists after a power cut (a new directory is only as durable as its parent).
 */
async function makeDirDurably(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let current = path.resolve(dir); !isDirectory(current); current = path.dirname(current)) {
    missing.push(current);
    if (path.dirname(current) === current) break;
  }
  if (missing.length === 0) return;
  fs.mkdirSync(dir, { recursive: true });
  for (const created of missing.reverse()) await syncDir(path.dirname(created));
}

function isDirectory(dir: string): boolean {
  try {
    return fs.statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/** Writes all of `bytes` at `position`; short writes are rare but legal. */
function writeFully(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) {
    done += fs.writeSync(fd, bytes, done, bytes.length - done, position + done);
  }
}

// The durability waits use the callback API so they run off the event loop.
function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.fdatasync(fd, (error) => (error ? reject(error) : resolve()));
  });
}

function fsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.fsync(fd, (error) => (error ? reject(error) : resolve()));
  });
}

function syncDir(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.open(dir, "r", (openError, fd) => {
      if (openError) return reject(openError);
      fs.fsync(fd, (syncError) => {
        fs.close(fd, () => (syncError ? reject(syncError) : resolve()));
      });
    });
  });
}

/**
 * A rejection nobody awaits must not end the process (callers that await still see it), so
 * every completion made here carries a no-op handler.
 */
function settledQuietly<T>(resolvers: PromiseWithResolvers<T>): PromiseWithResolvers<T> {
  resolvers.promise.catch(() => {});
  return resolvers;
}

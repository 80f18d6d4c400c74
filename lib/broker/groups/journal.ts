/**
 * @module Journal: an append-only file of checksummed entries, for the small formats metaq owns
 * around groups (committed offsets, a consumer's recovery store). Appends are group-committed:
 * every append made while an fsync runs is covered by the next one. `compact` replaces the file
 * atomically with a shorter history. Knows bytes, not what the bodies mean.
 *
 * ```text
 * offset  size  field
 * 0       4     bodyLength  uint32, at most bodyBytesMax
 * 4       4     bodyCrc     CRC-32 of the body
 * 8       4     headerCrc   CRC-32 of bytes 0..7, so a torn length is never trusted
 * 12      n     body
 * ```
 *
 * Recovery reads the file from the start and keeps entries until the first one that is not
 * valid (short, bad header checksum, length above the limit, body past the end of the file, bad
 * body checksum). Appends are whole batches, so a crash can only damage the last one:
 *
 * | after the first invalid entry                     | verdict                                    |
 * | ------------------------------------------------- | ------------------------------------------ |
 * | no valid entry starts anywhere in the rest        | torn tail: truncate there, log bytes lost  |
 * | a valid entry starts somewhere in the rest        | corruption: refuse to open; with `repair`, |
 * |                                                   | truncate there and log the bytes lost      |
 */
import process from "node:process";
import { assert } from "../../assert.ts";
import { crc32 } from "../../crc32.ts";
import { BrokerError, describeError, isNoSpace } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { type FileHandle, makeDirDurably, parentDir, type Storage } from "../../store/storage.ts";

export const JOURNAL_HEADER_BYTES = 12;

export interface JournalOptions {
  readonly storage: Storage;
  readonly path: string;
  /** Longest body accepted, on write and on read. */
  readonly bodyBytesMax: number;
  /** Cut a corrupt journal at the damage instead of refusing to open it. */
  readonly repair?: boolean;
  /** Hold `<path>.lock` (our pid) so two processes never append to one journal. */
  readonly lock?: boolean;
  readonly logger: Logger;
}

export class JournalCorruptError extends Error {
  override readonly name = "JournalCorruptError";
}

export class Journal {
  readonly options: JournalOptions;
  #file: FileHandle;
  #sizeBytes: number;
  #failed: BrokerError | undefined;
  #waiting: PromiseWithResolvers<void> | undefined;
  #syncing: Promise<void> = Promise.resolve();
  #syncRunning = false;
  #compacting = false;
  #held: { bytes: Uint8Array; done: PromiseWithResolvers<void> }[] = [];
  #closed = false;

  private constructor(options: JournalOptions, file: FileHandle, sizeBytes: number) {
    this.options = options;
    this.#file = file;
    this.#sizeBytes = sizeBytes;
  }

  /** Opens (creating) the journal, recovers it by the table above, and returns its bodies. */
  static async open(options: JournalOptions): Promise<{ journal: Journal; bodies: Uint8Array[] }> {
    const { storage, path } = options;
    await makeDirDurably(storage, parentDir(path));
    if (options.lock) takeLock(storage, path);
    const bytes = storage.readFile(path) ?? new Uint8Array(0);
    const scan = scanJournal(bytes, options.bodyBytesMax);
    const file = storage.open(path, { create: true });
    if (scan.validBytes < bytes.length) {
      if (scan.verdict === "corrupt" && !options.repair) {
        file.close();
        throw new JournalCorruptError(
          `Cannot open journal ${path}: ${scan.reason} at byte ${scan.validBytes}; ` +
            "start with --repair to cut it there",
        );
      }
      options.logger.log(scan.verdict === "corrupt" ? "error" : "warn", "Truncating journal", {
        path,
        verdict: scan.verdict,
        reason: scan.reason,
        bytesLost: bytes.length - scan.validBytes,
      });
      file.truncate(scan.validBytes);
      await file.sync();
    }
    if (bytes.length === 0) await storage.syncDir(parentDir(path));
    return { journal: new Journal(options, file, scan.validBytes), bodies: scan.bodies };
  }

  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  /** Appends `bodies` as one write; resolves once an fsync covers them. */
  append(bodies: readonly Uint8Array[]): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    assert(!this.#closed, "journal is closed");
    const bytes = encodeEntries(bodies, this.options.bodyBytesMax);
    if (this.#compacting) {
      const done = settledQuietly(Promise.withResolvers<void>());
      this.#held.push({ bytes, done });
      return done.promise;
    }
    return this.#writeAndSync(bytes);
  }

  /** Replaces the file with `bodies` (the live state), atomically and durably. */
  async compact(bodies: readonly Uint8Array[]): Promise<void> {
    assert(!this.#compacting, "compaction already running");
    if (this.#failed) throw this.#failed;
    this.#compacting = true;
    let noSpace: BrokerError | undefined;
    try {
      await this.#syncing;
      const bytes = encodeEntries(bodies, this.options.bodyBytesMax);
      const { storage, path } = this.options;
      try {
        await storage.writeFileAtomic(path, bytes);
      } catch (error) {
        // The old file is untouched: a full disk only postpones the compaction.
        if (!isNoSpace(error)) throw error;
        noSpace = new BrokerError("storageFull", `journal ${path}: ${describeError(error)}`, {
          cause: error,
        });
      }
      if (!noSpace) {
        this.#file.close();
        this.#file = storage.open(path, { create: false });
        this.#sizeBytes = bytes.length;
      }
    } catch (error) {
      this.#fail(error);
    } finally {
      this.#compacting = false;
      this.#releaseHeld();
    }
    if (this.#failed) throw this.#failed;
    if (noSpace) throw noSpace;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#syncing;
    this.#file.close();
    if (this.options.lock) this.options.storage.remove(`${this.options.path}.lock`);
  }

  #writeAndSync(bytes: Uint8Array): Promise<void> {
    try {
      this.#file.write([bytes], this.#sizeBytes);
      this.#sizeBytes += bytes.length;
    } catch (error) {
      if (isNoSpace(error) && this.#cutBack()) {
        // A full disk is refused, not fatal: nothing was synced past #sizeBytes, the partial
        // write is cut, and appends work again once there is room (replication.md 5.2).
        return Promise.reject(
          new BrokerError("storageFull", `journal ${this.options.path}: ${describeError(error)}`, {
            cause: error,
          }),
        );
      }
      this.#fail(error);
      return Promise.reject(this.#failed);
    }
    this.#waiting ??= settledQuietly(Promise.withResolvers<void>());
    const waiting = this.#waiting.promise;
    if (!this.#syncRunning) this.#syncing = this.#runSyncs();
    return waiting;
  }

  /** One fsync per round; appends made during a round wait for the next one. */
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
      await this.#file.sync();
      round.resolve();
    } catch (error) {
      this.#fail(error);
      round.reject(this.#failed);
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
      this.#file.truncate(this.#sizeBytes);
      return true;
    } catch {
      return false;
    }
  }

  /** After a failed write or fsync the page cache cannot be trusted: refuse everything after. */
  #fail(error: unknown): void {
    if (this.#failed) return;
    this.#failed = new BrokerError(
      "storageFailed",
      `journal ${this.options.path}: ${describeError(error)}`,
      { cause: error },
    );
    this.options.logger.log("error", "Journal failed; refusing further writes", {
      path: this.options.path,
      reason: describeError(error),
    });
  }
}

export interface JournalScan {
  readonly bodies: Uint8Array[];
  /** Bytes of valid entries from the start of the file. */
  readonly validBytes: number;
  readonly verdict: "clean" | "torn" | "corrupt";
  readonly reason?: string;
}

/** Reads entries from `bytes` and classifies what stops the scan (the table at the top). */
export function scanJournal(bytes: Uint8Array, bodyBytesMax: number): JournalScan {
  const bodies: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    const entry = entryAt(bytes, at, bodyBytesMax);
    if (typeof entry === "string") {
      const verdict = validEntryAfter(bytes, at, bodyBytesMax) ? "corrupt" : "torn";
      return { bodies, validBytes: at, verdict, reason: entry };
    }
    bodies.push(entry.body);
    at = entry.end;
  }
  return { bodies, validBytes: at, verdict: "clean" };
}

/** The entry starting at `at`, or why there is none. */
function entryAt(
  bytes: Uint8Array,
  at: number,
  bodyBytesMax: number,
): { body: Uint8Array; end: number } | string {
  if (bytes.length - at < JOURNAL_HEADER_BYTES) return "partial header";
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, JOURNAL_HEADER_BYTES);
  if (crc32(bytes.subarray(at, at + 8)) !== view.getUint32(8)) return "bad entry header";
  const length = view.getUint32(0);
  if (length > bodyBytesMax) return `entry length ${length} above the limit`;
  const end = at + JOURNAL_HEADER_BYTES + length;
  if (end > bytes.length) return "partial body";
  const body = bytes.subarray(at + JOURNAL_HEADER_BYTES, end);
  if (crc32(body) !== view.getUint32(4)) return "bad body checksum";
  return { body, end };
}

/** Whether a valid entry starts anywhere after `at`: what tells damage from a torn tail. */
function validEntryAfter(bytes: Uint8Array, at: number, bodyBytesMax: number): boolean {
  for (let start = at + 1; start + JOURNAL_HEADER_BYTES <= bytes.length; start++) {
    if (typeof entryAt(bytes, start, bodyBytesMax) !== "string") return true;
  }
  return false;
}

/** Encodes entries back to back. */
export function encodeEntries(bodies: readonly Uint8Array[], bodyBytesMax: number): Uint8Array {
  let total = 0;
  for (const body of bodies) {
    assert(body.length <= bodyBytesMax, `journal entry of ${body.length} bytes is too long`);
    total += JOURNAL_HEADER_BYTES + body.length;
  }
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const body of bodies) {
    view.setUint32(at, body.length);
    view.setUint32(at + 4, crc32(body));
    view.setUint32(at + 8, crc32(out.subarray(at, at + 8)));
    out.set(body, at + JOURNAL_HEADER_BYTES);
    at += JOURNAL_HEADER_BYTES + body.length;
  }
  return out;
}

/** A pid file next to the journal; a lock held by a live process other than us refuses. */
function takeLock(storage: Storage, path: string): void {
  const lockPath = `${path}.lock`;
  const text = new TextDecoder().decode(storage.readFile(lockPath) ?? new Uint8Array(0)).trim();
  const holder = Number(text);
  if (holder && holder !== process.pid && isProcessAlive(holder)) {
    throw new BrokerError(
      "conflict",
      `${path} is in use by process ${holder}; give each consumer its own instance name`,
    );
  }
  const file = storage.open(lockPath, { create: true });
  file.truncate(0);
  file.write([new TextEncoder().encode(`${process.pid}\n`)], 0);
  file.close();
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === "EPERM";
  }
}

/**
 * A rejection nobody awaits must not end the process (callers that await still see it), so
 * every completion made here carries a no-op handler.
 */
function settledQuietly<T>(resolvers: PromiseWithResolvers<T>): PromiseWithResolvers<T> {
  resolvers.promise.catch(() => {});
  return resolvers;
}

/**
 * @module The file-system operations the store needs, as an interface, so the same store runs
 * on real files (storage_file.ts) or in memory with crash emulation (storage_memory.ts), and so
 * test builds can wrap it with fault injection. Writes and reads are synchronous (they hit the
 * page cache); anything that waits for the disk (sync, syncDir) is asynchronous, except the
 * optional syncNow for small group commits.
 */

export interface FileStat {
  readonly size: number;
  readonly mtimeMs: number;
}

export interface FileHandle {
  readonly path: string;
  /** Writes all of `chunks` back to back starting at `position`. */
  write(chunks: readonly Uint8Array[], position: number): void;
  /** Reads up to `length` bytes at `position` into `target` at `targetOffset`; returns bytes read. */
  read(target: Uint8Array, targetOffset: number, length: number, position: number): number;
  /**
   * Copies up to `length` bytes at `position` straight into the socket `socketFd` (sendfile),
   * without passing them through this process; returns the bytes the socket took at once (0 when
   * it is full, or where the runtime cannot). Absent where a storage has no real file.
   */
  sendTo?(socketFd: number, length: number, position: number): number;
  /** Makes every byte written so far durable (fdatasync). */
  sync(): Promise<void>;
  /**
   * The same on the calling thread, blocking it until the disk answers; absent where a storage
   * cannot (then callers use sync()). For small group commits, where handing the wait to a
   * thread pool costs as much as the wait itself (see sync_mode.ts).
   */
  syncNow?(): void;
  truncate(size: number): void;
  size(): number;
  close(): void;
}

export interface Storage {
  /** Opens a file for reading and writing; creates it when `create` is set. */
  open(path: string, options: { create: boolean }): FileHandle;
  stat(path: string): FileStat | undefined;
  /** Names (not paths) of the entries of `dir`, or [] when it does not exist. */
  list(dir: string): string[];
  isDirectory(path: string): boolean;
  makeDir(dir: string): void;
  remove(path: string): void;
  removeDir(path: string): void;
  rename(from: string, to: string): void;
  /** Makes the directory's entries durable (fsync on the directory). */
  syncDir(dir: string): Promise<void>;
  readFile(path: string): Uint8Array | undefined;
  /** Replaces `path` atomically and durably: temp file, fsync, rename, fsync of the directory. */
  writeFileAtomic(path: string, bytes: Uint8Array): Promise<void>;
  /** Sets a file's modification time (retention tests, archive moves). */
  setModifiedTime(path: string, mtimeMs: number): void;
}

/** Joins path parts with '/', which every runtime we support accepts. */
export function joinPath(...parts: string[]): string {
  return parts.filter((part) => part !== "").join("/").replace(/\/{2,}/g, "/");
}

export function parentDir(path: string): string {
  const index = path.lastIndexOf("/");
  if (index < 0) return ".";
  return index === 0 ? "/" : path.slice(0, index);
}

/**
 * Creates `dir` and any missing parents, syncing each new entry's parent directory, so the
 * directory still exists after a power cut (a new directory is only as durable as its parent).
 */
export async function makeDirDurably(storage: Storage, dir: string): Promise<boolean> {
  const missing: string[] = [];
  for (let current = dir; !storage.isDirectory(current); current = parentDir(current)) {
    missing.push(current);
    if (parentDir(current) === current) break;
  }
  if (missing.length === 0) return false;
  storage.makeDir(dir);
  for (const created of missing.reverse()) await storage.syncDir(parentDir(created));
  return true;
}

/**
 * @module Storage held in memory, with a model of what survives a power cut: file contents
 * survive up to their last sync, directory entries up to their directory's last sync. Used by
 * unit tests of recovery and by the simulator; the real-file tests use SIGKILL instead.
 */
import { type Clock, systemClock } from "../clock.ts";
import { type FileHandle, type FileStat, joinPath, parentDir, type Storage } from "./storage.ts";

interface Inode {
  data: Uint8Array;
  length: number;
  durable: Uint8Array;
  mtimeMs: number;
}

interface Directory {
  entries: Map<string, Inode | Directory>;
  durable: Map<string, Inode | Directory>;
}

const isDirectory = (node: Inode | Directory | undefined): node is Directory =>
  node !== undefined && "entries" in node;

class MemoryFile implements FileHandle {
  readonly path: string;
  readonly #inode: Inode;
  readonly #clock: Clock;
  #closed = false;

  constructor(path: string, inode: Inode, clock: Clock) {
    this.path = path;
    this.#inode = inode;
    this.#clock = clock;
  }

  write(chunks: readonly Uint8Array[], position: number): void {
    this.#checkOpen();
    let at = position;
    for (const chunk of chunks) {
      ensureCapacity(this.#inode, at + chunk.length);
      this.#inode.data.set(chunk, at);
      at += chunk.length;
      this.#inode.length = Math.max(this.#inode.length, at);
    }
    this.#inode.mtimeMs = this.#clock.wallMs();
  }

  read(target: Uint8Array, targetOffset: number, length: number, position: number): number {
    this.#checkOpen();
    const count = Math.max(0, Math.min(length, this.#inode.length - position));
    target.set(this.#inode.data.subarray(position, position + count), targetOffset);
    return count;
  }

  sync(): Promise<void> {
    this.syncNow();
    return Promise.resolve();
  }

  syncNow(): void {
    this.#checkOpen();
    this.#inode.durable = this.#inode.data.slice(0, this.#inode.length);
  }

  truncate(size: number): void {
    this.#checkOpen();
    ensureCapacity(this.#inode, size);
    this.#inode.data.fill(0, size);
    this.#inode.length = size;
  }

  size(): number {
    return this.#inode.length;
  }

  close(): void {
    this.#closed = true;
  }

  #checkOpen(): void {
    if (this.#closed) throw new Error(`Cannot use ${this.path}: file is closed`);
  }
}

export class MemoryStorage implements Storage {
  #root: Directory = { entries: new Map(), durable: new Map() };
  readonly #clock: Clock;

  /** `clock` dates modifications (the simulator passes its virtual one). */
  constructor(clock: Clock = systemClock) {
    this.#clock = clock;
  }

  open(path: string, options: { create: boolean }): FileHandle {
    const dir = this.#dir(parentDir(path));
    const name = baseName(path);
    let node = dir?.entries.get(name);
    if (!dir || isDirectory(node) || (!node && !options.create)) throw enoent(path);
    if (!node) {
      node = {
        data: new Uint8Array(0),
        length: 0,
        durable: new Uint8Array(0),
        mtimeMs: this.#clock.wallMs(),
      };
      dir.entries.set(name, node);
    }
    return new MemoryFile(path, node, this.#clock);
  }

  stat(path: string): FileStat | undefined {
    const node = this.#node(path);
    if (!node || isDirectory(node)) return undefined;
    return { size: node.length, mtimeMs: node.mtimeMs };
  }

  list(dir: string): string[] {
    return [...(this.#dir(dir)?.entries.keys() ?? [])].sort();
  }

  isDirectory(path: string): boolean {
    return isDirectory(this.#node(path));
  }

  makeDir(dir: string): void {
    let current = this.#root;
    for (const part of splitPath(dir)) {
      let next = current.entries.get(part);
      if (!next) {
        next = { entries: new Map(), durable: new Map() };
        current.entries.set(part, next);
      }
      if (!isDirectory(next)) throw new Error(`Cannot make directory ${dir}: a file is in the way`);
      current = next;
    }
  }

  remove(path: string): void {
    this.#dir(parentDir(path))?.entries.delete(baseName(path));
  }

  removeDir(path: string): void {
    this.remove(path);
  }

  rename(from: string, to: string): void {
    const node = this.#node(from);
    const target = this.#dir(parentDir(to));
    if (!node || !target) throw enoent(from);
    this.remove(from);
    target.entries.set(baseName(to), node);
  }

  syncDir(dir: string): Promise<void> {
    const node = this.#dir(dir);
    if (!node) return Promise.reject(enoent(dir));
    node.durable = new Map(node.entries);
    return Promise.resolve();
  }

  readFile(path: string): Uint8Array | undefined {
    const node = this.#node(path);
    return node && !isDirectory(node) ? node.data.slice(0, node.length) : undefined;
  }

  async writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
    const file = this.open(`${path}.tmp`, { create: true });
    file.truncate(0);
    file.write([bytes], 0);
    await file.sync();
    this.rename(`${path}.tmp`, path);
    await this.syncDir(parentDir(path));
  }

  setModifiedTime(path: string, mtimeMs: number): void {
    const node = this.#node(path);
    if (!node || isDirectory(node)) throw enoent(path);
    node.mtimeMs = mtimeMs;
  }

  /**
   * Emulates a power cut: every file falls back to its last synced contents and every
   * directory to its last synced entries. `tornTail` may put bytes after the synced contents
   * of files that had unsynced data (it is shown those bytes): some of them, as a kernel that
   * wrote back part of the cache would, or junk, as a disk that wrote part of a page would.
   */
  crash(
    tornTail?: (
      path: string,
      unsyncedBytes: number,
      unsynced: Uint8Array,
    ) => Uint8Array | undefined,
  ): void {
    const visit = (dir: Directory, path: string) => {
      dir.entries = new Map(dir.durable);
      for (const [name, node] of dir.entries) {
        const childPath = joinPath(path, name);
        if (isDirectory(node)) {
          visit(node, childPath);
          continue;
        }
        const unsynced = node.length - node.durable.length;
        const junk = unsynced > 0
          ? tornTail?.(childPath, unsynced, node.data.subarray(node.durable.length, node.length))
          : undefined;
        node.data = new Uint8Array(node.durable.length + (junk?.length ?? 0));
        node.data.set(node.durable);
        if (junk) node.data.set(junk, node.durable.length);
        node.length = node.data.length;
      }
    };
    visit(this.#root, "/");
  }

  /**
   * What `path` would hold after a power cut now (its synced contents, if every directory entry
   * on its path is synced), or undefined. The returned bytes must not be changed.
   */
  durableFile(path: string): Uint8Array | undefined {
    const node = this.#durableNode(path);
    return node && !isDirectory(node) ? node.durable : undefined;
  }

  /** Names of the entries of `dir` that would survive a power cut now. */
  durableList(dir: string): string[] {
    const node = this.#durableNode(dir);
    return isDirectory(node) ? [...node.durable.keys()].sort() : [];
  }

  #durableNode(path: string): Inode | Directory | undefined {
    let current: Inode | Directory = this.#root;
    for (const part of splitPath(path)) {
      if (!isDirectory(current)) return undefined;
      const next: Inode | Directory | undefined = current.durable.get(part);
      if (!next) return undefined;
      current = next;
    }
    return current;
  }

  #node(path: string): Inode | Directory | undefined {
    let current: Inode | Directory = this.#root;
    for (const part of splitPath(path)) {
      if (!isDirectory(current)) return undefined;
      const next: Inode | Directory | undefined = current.entries.get(part);
      if (!next) return undefined;
      current = next;
    }
    return current;
  }

  #dir(path: string): Directory | undefined {
    const node = this.#node(path);
    return isDirectory(node) ? node : undefined;
  }
}

function splitPath(path: string): string[] {
  return path.split("/").filter((part) => part !== "" && part !== ".");
}

function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

function ensureCapacity(inode: Inode, size: number): void {
  if (inode.data.length >= size) return;
  const grown = new Uint8Array(Math.max(size, inode.data.length * 2, 4096));
  grown.set(inode.data.subarray(0, inode.length));
  inode.data = grown;
}

function enoent(path: string): Error {
  return Object.assign(new Error(`ENOENT: no such file or directory, '${path}'`), {
    code: "ENOENT",
  });
}

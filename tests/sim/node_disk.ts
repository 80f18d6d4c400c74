/**
 * @module The disk of one simulated node for the driver simulator: MemoryStorage (which knows
 * what survives a power cut) behind a Storage whose fsyncs take virtual time. Each run of the
 * node gets its own view; a crash kills the view (its pending fsyncs never finish, its later
 * writes go nowhere, as a dead process's would) and cuts the power: unsynced bytes are lost,
 * or a part of them survives, or junk is left after the synced part.
 */
import type { Prng } from "../../lib/prng.ts";
import type { FileHandle, FileStat, Storage } from "../../lib/store/storage.ts";
import { parentDir } from "../../lib/store/storage.ts";
import { MemoryStorage } from "../../lib/store/storage_memory.ts";
import type { NodeTime, VirtualTime } from "./virtual_time.ts";

export interface DiskTiming {
  /** Milliseconds the next fsync takes (file or directory). */
  syncMs(): number;
}

export class NodeDisk {
  readonly memory: MemoryStorage;
  readonly #time: VirtualTime;
  readonly #timing: DiskTiming;
  #view: DiskView | undefined;
  /** One disk: fsyncs finish in the order they started. */
  #lastSyncAt = 0;
  syncs = 0;

  constructor(time: VirtualTime, clock: NodeTime, timing: DiskTiming) {
    this.#time = time;
    this.#timing = timing;
    this.memory = new MemoryStorage(clock);
  }

  /** The storage one run of the node uses; the previous view dies. */
  open(process: NodeTime): Storage {
    this.#view?.kill();
    this.#view = new DiskView(this, this.memory, process);
    return this.#view;
  }

  /** Calls `then` when an fsync started now completes (in start order), unless the run died. */
  scheduleSync(view: DiskView, process: NodeTime, then: () => void): Promise<void> {
    this.syncs++;
    const at = Math.max(this.#lastSyncAt, this.#time.now + this.#timing.syncMs());
    this.#lastSyncAt = at;
    return new Promise((resolve) => {
      this.#time.at(at, () => {
        if (!view.alive) return;
        then();
        process.run(resolve);
      });
    });
  }

  /**
   * A power cut. `random` decides per file whether unsynced bytes vanish, a prefix of them
   * survives, or junk follows the synced part.
   */
  crash(random: Prng): void {
    this.#view?.kill();
    this.#view = undefined;
    this.memory.crash((_path, _bytes, unsynced) => {
      const roll = random.float();
      if (roll < 0.5) return undefined;
      if (roll < 0.85) return unsynced.slice(0, random.int(0, unsynced.length + 1));
      const junk = new Uint8Array(random.int(1, Math.min(64, unsynced.length) + 1));
      for (let index = 0; index < junk.length; index++) junk[index] = random.nextU32() & 0xff;
      return junk;
    });
  }
}

class DiskView implements Storage {
  readonly #disk: NodeDisk;
  readonly #memory: MemoryStorage;
  readonly #process: NodeTime;
  #alive = true;

  constructor(disk: NodeDisk, memory: MemoryStorage, process: NodeTime) {
    this.#disk = disk;
    this.#memory = memory;
    this.#process = process;
  }

  get alive(): boolean {
    return this.#alive;
  }

  kill(): void {
    this.#alive = false;
  }

  open(path: string, options: { create: boolean }): FileHandle {
    return new ViewFile(this, this.#memory.open(path, options));
  }

  stat(path: string): FileStat | undefined {
    return this.#memory.stat(path);
  }

  list(dir: string): string[] {
    return this.#memory.list(dir);
  }

  isDirectory(path: string): boolean {
    return this.#memory.isDirectory(path);
  }

  makeDir(dir: string): void {
    if (this.#alive) this.#memory.makeDir(dir);
  }

  remove(path: string): void {
    if (this.#alive) this.#memory.remove(path);
  }

  removeDir(path: string): void {
    if (this.#alive) this.#memory.removeDir(path);
  }

  rename(from: string, to: string): void {
    if (this.#alive) this.#memory.rename(from, to);
  }

  syncDir(dir: string): Promise<void> {
    if (!this.#memory.isDirectory(dir)) return this.#memory.syncDir(dir);
    return this.sync(() => void this.#memory.syncDir(dir));
  }

  readFile(path: string): Uint8Array | undefined {
    return this.#memory.readFile(path);
  }

  async writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
    const file = this.open(`${path}.tmp`, { create: true });
    file.truncate(0);
    file.write([bytes], 0);
    await file.sync();
    file.close();
    this.rename(`${path}.tmp`, path);
    await this.syncDir(parentDir(path));
  }

  setModifiedTime(path: string, mtimeMs: number): void {
    if (this.#alive) this.#memory.setModifiedTime(path, mtimeMs);
  }

  /** An fsync through the disk's queue: `complete` makes the bytes durable when it finishes. */
  sync(complete: () => void): Promise<void> {
    if (!this.#alive) return new Promise(() => {});
    return this.#disk.scheduleSync(this, this.#process, complete);
  }
}

class ViewFile implements FileHandle {
  readonly #view: DiskView;
  readonly #file: FileHandle;

  constructor(view: DiskView, file: FileHandle) {
    this.#view = view;
    this.#file = file;
  }

  get path(): string {
    return this.#file.path;
  }

  write(chunks: readonly Uint8Array[], position: number): void {
    if (this.#view.alive) this.#file.write(chunks, position);
  }

  read(target: Uint8Array, targetOffset: number, length: number, position: number): number {
    return this.#file.read(target, targetOffset, length, position);
  }

  sync(): Promise<void> {
    return this.#view.sync(() => void this.#file.sync());
  }

  truncate(size: number): void {
    if (this.#view.alive) this.#file.truncate(size);
  }

  size(): number {
    return this.#file.size();
  }

  close(): void {
    // The simulator's handles stay usable for a completing fsync; closing is a no-op here.
  }
}

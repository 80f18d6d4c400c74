/**
 * @module Storage on real files through node:fs (works on Bun, Deno and Node). Durability
 * waits (fdatasync, directory fsync) use the callback API so they run off the event loop;
 * syncNow is the one synchronous fdatasync, for small group commits (see sync_mode.ts).
 */
import * as fs from "node:fs";
import { fileToSocket } from "../runtime/file_to_socket.ts";
import { type FileHandle, type FileStat, parentDir, type Storage } from "./storage.ts";

const OPEN_FLAGS = fs.constants.O_RDWR;
const CREATE_FLAGS = fs.constants.O_RDWR | fs.constants.O_CREAT;

class RealFile implements FileHandle {
  readonly path: string;
  #fd: number;
  #closed = false;

  constructor(path: string, fd: number) {
    this.path = path;
    this.#fd = fd;
  }

  write(chunks: readonly Uint8Array[], position: number): void {
    let at = position;
    let pending = chunks.filter((chunk) => chunk.length > 0);
    while (pending.length > 0) {
      let written = fs.writevSync(this.#fd, pending as Uint8Array[], at);
      at += written;
      // Short writes are rare but legal: drop what was written and go on.
      const rest: Uint8Array[] = [];
      for (const chunk of pending) {
        if (written >= chunk.length) {
          written -= chunk.length;
        } else {
          rest.push(written > 0 ? chunk.subarray(written) : chunk);
          written = 0;
        }
      }
      pending = rest;
    }
  }

  read(target: Uint8Array, targetOffset: number, length: number, position: number): number {
    if (this.#closed) throw new Error(`${this.path} is closed`); // (see sendTo)
    let total = 0;
    while (total < length) {
      const count = fs.readSync(
        this.#fd,
        target,
        targetOffset + total,
        length - total,
        position + total,
      );
      if (count === 0) break;
      total += count;
    }
    return total;
  }

  sendTo(socketFd: number, length: number, position: number): number {
    // A closed file's number may already name another file: never hand it to the kernel.
    if (this.#closed) throw new Error(`${this.path} is closed`);
    return fileToSocket?.(socketFd, this.#fd, position, length) ?? 0;
  }

  sync(): Promise<void> {
    return new Promise((resolve, reject) => {
      fs.fdatasync(this.#fd, (error) => (error ? reject(error) : resolve()));
    });
  }

  syncNow(): void {
    fs.fdatasyncSync(this.#fd);
  }

  truncate(size: number): void {
    fs.ftruncateSync(this.#fd, size);
  }

  size(): number {
    return fs.fstatSync(this.#fd).size;
  }

  close(): void {
    this.#closed = true;
    fs.closeSync(this.#fd);
  }
}

export class FileStorage implements Storage {
  open(path: string, options: { create: boolean }): FileHandle {
    return new RealFile(path, fs.openSync(path, options.create ? CREATE_FLAGS : OPEN_FLAGS, 0o644));
  }

  stat(path: string): FileStat | undefined {
    try {
      const stat = fs.statSync(path);
      return { size: stat.size, mtimeMs: stat.mtimeMs };
    } catch (error) {
      if ((error as { code?: string }).code === "ENOENT") return undefined;
      throw error;
    }
  }

  list(dir: string): string[] {
    try {
      return fs.readdirSync(dir).sort();
    } catch (error) {
      if ((error as { code?: string }).code === "ENOENT") return [];
      throw error;
    }
  }

  isDirectory(path: string): boolean {
    try {
      return fs.statSync(path).isDirectory();
    } catch {
      return false;
    }
  }

  makeDir(dir: string): void {
    fs.mkdirSync(dir, { recursive: true });
  }

  remove(path: string): void {
    fs.rmSync(path, { force: true });
  }

  removeDir(path: string): void {
    fs.rmSync(path, { recursive: true, force: true });
  }

  rename(from: string, to: string): void {
    fs.renameSync(from, to);
  }

  syncDir(dir: string): Promise<void> {
    return new Promise((resolve, reject) => {
      fs.open(dir, "r", (openError, fd) => {
        if (openError) return reject(openError);
        fs.fsync(fd, (syncError) => {
          fs.close(fd, () => (syncError ? reject(syncError) : resolve()));
        });
      });
    });
  }

  readFile(path: string): Uint8Array | undefined {
    try {
      return fs.readFileSync(path);
    } catch (error) {
      if ((error as { code?: string }).code === "ENOENT") return undefined;
      throw error;
    }
  }

  async writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
    const temp = `${path}.tmp`;
    const file = this.open(temp, { create: true });
    try {
      file.truncate(0);
      file.write([bytes], 0);
      await file.sync();
    } catch (error) {
      // A half-written copy helps nobody and, on a full disk, holds the space that is missing.
      file.close();
      fs.rmSync(temp, { force: true });
      throw error;
    }
    file.close();
    this.rename(temp, path);
    await this.syncDir(parentDir(path));
  }

  setModifiedTime(path: string, mtimeMs: number): void {
    const seconds = mtimeMs / 1000;
    fs.utimesSync(path, seconds, seconds);
  }
}

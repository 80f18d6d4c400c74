/**
 * @module Test-build instrumentation of Storage, switched on by environment variables:
 *
 * - `METAQ_TEST_SYNC_JOURNAL=<file>`: after every successful fdatasync, directory fsync and
 *   directory operation, append one JSON line (`{"op":"sync","path","length"}`,
 *   `{"op":"syncdir","path"}`, `{"op":"create"|"rename"|"remove","path","to"?}`) with a plain
 *   write, before anything covered by it is acknowledged. The fault harness reads it after a
 *   SIGKILL to emulate a power cut: it keeps exactly what was made durable.
 * - `METAQ_TEST_FSYNC_CONTROL=<file>`: read before each sync; `delay <ms>` adds latency (an
 *   inline sync blocks for it), `eio` makes the next sync fail with EIO (then the line is
 *   consumed), absent = normal.
 *
 * Production runs never set these; without them `instrumentStorage` returns its input.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { FileHandle, Storage } from "./storage.ts";

export interface StorageInstrumentation {
  /** File the durability journal is appended to. */
  readonly syncJournal?: string;
  /** File that injects fsync delays or failures. */
  readonly fsyncControl?: string;
}

export function instrumentationFromEnv(
  env: Record<string, string | undefined>,
): StorageInstrumentation {
  return { syncJournal: env.METAQ_TEST_SYNC_JOURNAL, fsyncControl: env.METAQ_TEST_FSYNC_CONTROL };
}

export function instrumentStorage(inner: Storage, options: StorageInstrumentation): Storage {
  if (!options.syncJournal && !options.fsyncControl) return inner;
  const journalFd = options.syncJournal ? fs.openSync(options.syncJournal, "a") : undefined;
  const record = (entry: Record<string, string | number>) => {
    if (journalFd === undefined) return;
    fs.writeSync(journalFd, `${JSON.stringify(entry)}\n`);
  };
  const absolute = (file: string) => path.resolve(file);
  /** The control file's instruction for the next sync: a delay in ms, an injected EIO, or none. */
  const nextFault = (): { delayMs: number } | "eio" | undefined => {
    if (!options.fsyncControl) return undefined;
    let control = "";
    try {
      control = fs.readFileSync(options.fsyncControl, "utf8").trim();
    } catch {
      return undefined;
    }
    if (control.startsWith("delay ")) return { delayMs: Number(control.slice(6)) || 0 };
    if (control !== "eio") return undefined;
    fs.writeFileSync(options.fsyncControl, "");
    return "eio";
  };
  const injectedEio = () =>
    Object.assign(new Error("EIO: i/o error, fdatasync (injected)"), { code: "EIO" });
  const beforeSync = async () => {
    const fault = nextFault();
    if (fault === "eio") throw injectedEio();
    if (fault) await new Promise((resolve) => setTimeout(resolve, fault.delayMs));
  };
  // An inline sync blocks its thread for the whole delay, as a slow fdatasync on the event loop
  // would: the slow-disk tests see what a slow disk does to it.
  const beforeSyncNow = () => {
    const fault = nextFault();
    if (fault === "eio") throw injectedEio();
    if (fault && fault.delayMs > 0) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, fault.delayMs);
    }
  };
  const wrapFile = (file: FileHandle): FileHandle => ({
    path: file.path,
    write: (chunks, position) => file.write(chunks, position),
    read: (target, targetOffset, length, position) =>
      file.read(target, targetOffset, length, position),
    // Reads are not journaled; a test build sends `get` bodies as a release build does.
    sendTo: file.sendTo
      ? (socketFd, length, position) => file.sendTo!(socketFd, length, position)
      : undefined,
    truncate: (size) => file.truncate(size),
    size: () => file.size(),
    close: () => file.close(),
    async sync() {
      await beforeSync();
      const length = file.size();
      await file.sync();
      record({ op: "sync", path: absolute(file.path), length });
    },
    syncNow: file.syncNow
      ? () => {
        beforeSyncNow();
        const length = file.size();
        file.syncNow!();
        record({ op: "sync", path: absolute(file.path), length });
      }
      : undefined,
  });
  return {
    open(file, openOptions) {
      const existed = inner.stat(file) !== undefined;
      const handle = inner.open(file, openOptions);
      if (!existed) record({ op: "create", path: absolute(file) });
      return wrapFile(handle);
    },
    stat: (file) => inner.stat(file),
    list: (dir) => inner.list(dir),
    isDirectory: (file) => inner.isDirectory(file),
    makeDir(dir) {
      const existed = inner.isDirectory(dir);
      inner.makeDir(dir);
      if (!existed) record({ op: "create", path: absolute(dir) });
    },
    remove(file) {
      inner.remove(file);
      record({ op: "remove", path: absolute(file) });
    },
    removeDir(dir) {
      inner.removeDir(dir);
      record({ op: "remove", path: absolute(dir) });
    },
    rename(from, to) {
      inner.rename(from, to);
      record({ op: "rename", path: absolute(from), to: absolute(to) });
    },
    async syncDir(dir) {
      await inner.syncDir(dir);
      record({ op: "syncdir", path: absolute(dir) });
    },
    readFile: (file) => inner.readFile(file),
    async writeFileAtomic(file, bytes) {
      // Through the wrapped primitives, so each step is journalled.
      const temp = `${file}.tmp`;
      const handle = this.open(temp, { create: true });
      try {
        handle.truncate(0);
        handle.write([bytes], 0);
        await handle.sync();
      } finally {
        handle.close();
      }
      this.rename(temp, file);
      await this.syncDir(path.dirname(file));
    },
    setModifiedTime: (file, mtimeMs) => inner.setModifiedTime(file, mtimeMs),
  };
}

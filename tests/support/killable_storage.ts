/**
 * @module A Storage view that can be killed: afterwards every call through it (and through the
 * files it opened) throws, so a broker abandoned at a simulated crash can no longer touch the
 * storage the next broker recovers from. Also fails chosen writes, for fault injection.
 */
import type { FileHandle, Storage } from "../../lib/store/storage.ts";

export interface KillableStorage extends Storage {
  kill(): void;
  /** The next write to a file whose path contains `pathPart` throws ENOSPC. */
  failNextWrite(pathPart: string): void;
}

export function killableStorage(inner: Storage): KillableStorage {
  let dead = false;
  let failing: string | undefined;
  const alive = () => {
    if (dead) throw new Error("storage view was killed (simulated crash)");
  };
  const wrapFile = (file: FileHandle): FileHandle => ({
    path: file.path,
    write(chunks, position) {
      alive();
      if (failing !== undefined && file.path.includes(failing)) {
        failing = undefined;
        throw Object.assign(new Error("ENOSPC: no space left on device (injected)"), {
          code: "ENOSPC",
        });
      }
      file.write(chunks, position);
    },
    read: (...args) => (alive(), file.read(...args)),
    sendTo: file.sendTo ? (...args) => (alive(), file.sendTo!(...args)) : undefined,
    sync: () => dead ? new Promise<void>(() => {}) : file.sync(),
    truncate: (size) => (alive(), file.truncate(size)),
    size: () => (alive(), file.size()),
    close: () => (alive(), file.close()),
  });
  return {
    kill: () => (dead = true),
    failNextWrite: (pathPart) => (failing = pathPart),
    open: (path, options) => (alive(), wrapFile(inner.open(path, options))),
    stat: (path) => (alive(), inner.stat(path)),
    list: (dir) => (alive(), inner.list(dir)),
    isDirectory: (path) => (alive(), inner.isDirectory(path)),
    makeDir: (dir) => (alive(), inner.makeDir(dir)),
    remove: (path) => (alive(), inner.remove(path)),
    removeDir: (path) => (alive(), inner.removeDir(path)),
    rename: (from, to) => (alive(), inner.rename(from, to)),
    syncDir: (dir) => dead ? new Promise<void>(() => {}) : inner.syncDir(dir),
    readFile: (path) => (alive(), inner.readFile(path)),
    writeFileAtomic: (path, bytes) => (alive(), inner.writeFileAtomic(path, bytes)),
    setModifiedTime: (path, ms) => (alive(), inner.setModifiedTime(path, ms)),
  };
}

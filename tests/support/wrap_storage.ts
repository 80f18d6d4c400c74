/** @module A Storage that delegates to another, with some methods replaced: for fault injection. */
import type { FileHandle, Storage } from "../../lib/store/storage.ts";

export function wrapStorage(inner: Storage, overrides: Partial<Storage>): Storage {
  const methods: (keyof Storage)[] = [
    "open",
    "stat",
    "list",
    "isDirectory",
    "makeDir",
    "remove",
    "removeDir",
    "rename",
    "syncDir",
    "readFile",
    "writeFileAtomic",
    "setModifiedTime",
  ];
  const wrapped: Record<string, unknown> = {};
  for (const name of methods) {
    wrapped[name] = overrides[name] ?? (inner[name] as (...args: unknown[]) => unknown).bind(inner);
  }
  return wrapped as unknown as Storage;
}

/** A file handle that delegates to `file`, with some methods replaced (counting, failing). */
export function wrapFile(file: FileHandle, overrides: Partial<FileHandle>): FileHandle {
  return {
    path: file.path,
    write: (chunks, position) => file.write(chunks, position),
    read: (...args) => file.read(...args),
    sendTo: file.sendTo ? (...args) => file.sendTo!(...args) : undefined,
    sync: () => file.sync(),
    syncNow: file.syncNow ? () => file.syncNow!() : undefined,
    truncate: (size) => file.truncate(size),
    size: () => file.size(),
    close: () => file.close(),
    ...overrides,
  };
}

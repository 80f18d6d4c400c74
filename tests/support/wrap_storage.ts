/** @module A Storage that delegates to another, with some methods replaced: for fault injection. */
import type { Storage } from "../../lib/store/storage.ts";

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

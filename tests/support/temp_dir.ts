/** @module Temporary directories that remove themselves, for tests that use real files. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export interface TempDir extends AsyncDisposable, Disposable {
  readonly path: string;
}

export function tempDir(prefix = "metaq-test-"): TempDir {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const remove = () => fs.rmSync(dir, { recursive: true, force: true });
  return {
    path: dir,
    [Symbol.dispose]: remove,
    [Symbol.asyncDispose]: () => Promise.resolve(remove()),
  };
}

import { afterAll } from "bun:test";
import * as path from "node:path";
import { FileOffsetStore } from "../../lib/broker/groups/offset_store_file.ts";
import { silentLogger } from "../../lib/log.ts";
import { FileStorage } from "../../lib/store/storage_file.ts";
import { describeOffsetStore } from "../support/offset_store_suite.ts";
import { tempDir } from "../support/temp_dir.ts";

const temp = tempDir();
afterAll(() => temp[Symbol.dispose]());
let stores = 0;

describeOffsetStore("file, on real files", {
  async open() {
    const file = path.join(temp.path, `store-${stores++}`, "_groups", "offsets.log");
    const open = () =>
      FileOffsetStore.open({
        storage: new FileStorage(),
        path: file,
        logger: silentLogger,
        lock: true,
      });
    return Object.assign(await open(), { reopen: open });
  },
});

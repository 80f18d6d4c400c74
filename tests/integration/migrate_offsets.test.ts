/**
 * A data directory from before group offsets lived in `__meta-0`: its `_groups/offsets.log`
 * (the old journal: 12-byte headers with CRCs, JSON bodies) is read once into `__meta-0`, the old
 * file is kept as `offsets.log.migrated`, and a torn last entry is left out.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import { assemble } from "../../lib/app/assemble.ts";
import { readLegacyOffsets } from "../../lib/app/migrate.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { crc32 } from "../../lib/crc32.ts";
import { silentLogger } from "../../lib/log.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";

/** One entry of the old journal, as the old writer framed it. */
function oldEntry(kind: string, entries: [string, string, number, number][]): Uint8Array {
  const body = new TextEncoder().encode(JSON.stringify({ kind, entries }));
  const out = new Uint8Array(12 + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, body.length);
  view.setUint32(4, crc32(body));
  view.setUint32(8, crc32(out.subarray(0, 8)));
  out.set(body, 12);
  return out;
}

const OLD_FILE = [
  oldEntry("commit", [["g1", "orders", 0, 100], ["g1", "orders", 1, 40]]),
  oldEntry("snapshot", [["g1", "orders", 0, 125], ["g2", "orders", 0, 7]]),
  oldEntry("reset", [["g2", "orders", 0, 3]]),
];

test("the old journal reads as its table, and a torn last entry is left out", () => {
  const whole = new Uint8Array(Buffer.concat(OLD_FILE));
  const torn = new Uint8Array(
    Buffer.concat([...OLD_FILE, oldEntry("commit", [["g3", "t", 0, 1]]).subarray(0, 20)]),
  );
  for (const bytes of [whole, torn]) {
    const { entries, bytesRead } = readLegacyOffsets(bytes);
    expect(entries).toEqual([
      { group: "g1", topic: "orders", partition: 0, offset: 125 },
      { group: "g2", topic: "orders", partition: 0, offset: 3 },
    ]);
    expect(bytesRead).toBe(whole.length);
  }
});

test("a broker starting on an old data directory moves the offsets into __meta-0 once", async () => {
  await using temp = tempDir();
  fs.mkdirSync(`${temp.path}/_groups`);
  fs.writeFileSync(`${temp.path}/_groups/offsets.log`, Buffer.concat(OLD_FILE));
  const config = buildConfig({
    overrides: { serverPort: "0", httpEnabled: "false", dataPath: temp.path },
  });
  const first = await assemble({ config, logger: silentLogger });
  const committed = async (port: number, group: string) => {
    using socket = await RawSocket.connect(port);
    socket.write(`committed ${group} orders 0 1\r\n`);
    return (await socket.readFrame()).body.toString();
  };
  expect(await committed(first.port, "g1")).toBe("125");
  expect(await committed(first.port, "g2")).toBe("3");
  await first.close();
  expect(fs.existsSync(`${temp.path}/_groups/offsets.log`)).toBe(false);
  expect(fs.existsSync(`${temp.path}/_groups/offsets.log.migrated`)).toBe(true);
  // Started again: the offsets are in __meta-0, nothing is migrated twice.
  const second = await assemble({ config, logger: silentLogger });
  expect(await committed(second.port, "g1")).toBe("125");
  await second.close();
});

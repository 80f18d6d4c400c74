/**
 * @module Child process for the store crash test: appends records with group commit as fast as
 * it can and prints each acknowledged batch as `ack <endOffset>` on stdout, until killed.
 * Usage: bun tests/support/store_writer.ts <partitionDir> <segmentBytes> <firstRecordNumber>
 */
import { systemClock } from "../../lib/clock.ts";
import { silentLogger } from "../../lib/log.ts";
import { PartitionLog } from "../../lib/store/partition_log.ts";
import { FileStorage } from "../../lib/store/storage_file.ts";
import { payloadOf } from "./crash_payload.ts";

const [dir, segmentBytes] = process.argv.slice(2);
const log = await PartitionLog.open({
  storage: new FileStorage(),
  dir,
  name: "crash-0",
  segmentBytesMax: Number(segmentBytes),
  recordDataBytesMax: 1 << 20,
  flush: { kind: "group" },
  clock: systemClock,
  logger: silentLogger,
}, { verifyAll: true, repair: false });

// Numbering continues from the records the parent found after the previous crash.
let n = Number(process.argv[4] ?? 0);
process.stdout.write(`start ${log.ackedEnd}\n`);
while (true) {
  const tickets = [];
  for (let i = 0; i < 50; i++, n++) {
    tickets.push(log.appendRecord({ id: BigInt(n + 1), flag: n, data: payloadOf(n) }));
  }
  await Promise.all(tickets.map((ticket) => ticket.done));
  process.stdout.write(`ack ${log.ackedEnd} ${n}\n`);
}

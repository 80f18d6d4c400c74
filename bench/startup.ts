/**
 * @module Row 6, start to first acknowledged put, alone: spawn a server on an empty data dir, poll
 * its port, send one 100 B message and wait for the acknowledgement (`startOnce` of
 * bench/compare.ts). Compares metaq binaries (an old build and a new one, say) and the peers on
 * the same machine, taking turns run by run:
 *
 *   bun bench/startup.ts [--rounds 7] [--binary dist/metaq]... [--nats] [--redis]
 *
 * With `--restart-partitions N` the metaq contenders start instead on a copy of a data directory
 * whose topic holds one record in each of N partitions (written once, by the first binary), so
 * the time includes recovery: each partition's last segment and directory are synced before the
 * port serves. The peers still start empty.
 *
 * Every process started is stopped (by PID) before the next one starts.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { makePayload } from "../lib/bench/load.ts";
import { BrokerConnection } from "../lib/client/connection.ts";
import { metaqChecksum } from "../lib/crc32.ts";
import { describeError } from "../lib/errors.ts";
import { encodePut } from "../lib/protocol/encoder.ts";
import type { System } from "./client.ts";
import { startOnce } from "./compare.ts";
import { loadAverage } from "./machine.ts";
import { natsBinary, startMetaq, stopAll } from "./servers.ts";
import { median } from "./stats.ts";

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      rounds: { type: "string", default: "7" },
      binary: { type: "string", multiple: true },
      nats: { type: "boolean", default: false },
      redis: { type: "boolean", default: false },
      "restart-partitions": { type: "string", default: "0" },
    },
  });
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 100) {
    throw new Error(`--rounds takes 1..100, not '${values.rounds}'`);
  }
  const partitions = Number(values["restart-partitions"]);
  if (!Number.isInteger(partitions) || partitions < 0 || partitions > 4096) {
    throw new Error(`--restart-partitions takes 0..4096, not '${values["restart-partitions"]}'`);
  }
  const contenders: { label: string; system: System; binary: string }[] = [];
  for (const binary of values.binary ?? ["dist/metaq"]) {
    contenders.push({ label: binary, system: "metaq", binary: path.resolve(binary) });
  }
  if (values.nats) contenders.push({ label: natsBinary(), system: "nats", binary: "" });
  if (values.redis) contenders.push({ label: "redis-server", system: "redis", binary: "" });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-startup-"));
  const times = contenders.map(() => [] as number[]);
  const seed = path.join(work, "seed");
  const metaqArgs = partitions > 0 ? ["--partitions", String(partitions)] : [];
  try {
    if (partitions > 0) {
      await seedPartitions(contenders[0].binary, seed, partitions);
      console.log(`seeded ${partitions} partitions with one record each`);
    }
    console.log(`load average before: ${loadAverage()}`);
    for (let round = 0; round < rounds; round++) {
      // Rotate who goes first, so no contender always runs right after the same other one.
      for (let turn = 0; turn < contenders.length; turn++) {
        const index = (turn + round) % contenders.length;
        const dir = path.join(work, `${index}-${round}`);
        const { binary, system } = contenders[index];
        try {
          if (partitions > 0 && system === "metaq") fs.cpSync(seed, dir, { recursive: true });
          times[index].push(
            await startOnce(binary, system, dir, system === "metaq" ? metaqArgs : []),
          );
        } catch (error) {
          console.log(`${contenders[index].label}: failed: ${describeError(error)}`);
        }
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    await stopAll();
    fs.rmSync(work, { recursive: true, force: true });
  }
  console.log(`load average after: ${loadAverage()}`);
  contenders.forEach((contender, index) => {
    const runs = times[index].map((ms) => ms.toFixed(1)).join(" ");
    const mid = times[index].length ? `${median(times[index]).toFixed(1)} ms` : "-";
    console.log(`${contender.label}: median ${mid} (runs: ${runs})`);
  });
}

/** A data directory (`dir/data`) whose topic `restart` holds one 100 B record per partition. */
async function seedPartitions(binary: string, dir: string, partitions: number): Promise<void> {
  const server = await startMetaq({
    binary,
    dir,
    flush: "group",
    args: ["--partitions", String(partitions)],
  });
  try {
    const connection = await BrokerConnection.connect({
      host: "127.0.0.1",
      port: server.ports[0],
    });
    try {
      const body = makePayload(100);
      for (let partition = 0; partition < partitions; partition++) {
        const opaque = connection.nextOpaque();
        const reply = await connection.request(
          encodePut({
            topic: "restart",
            partition,
            flag: 0,
            checksum: metaqChecksum(body),
            opaque,
            body,
          }),
          opaque,
        );
        if (reply.kind !== "result" || reply.code !== 200) {
          throw new Error(`seeding partition ${partition}: put refused`);
        }
      }
    } finally {
      connection.close();
    }
  } finally {
    await server.stop(); // a graceful stop: the seed is whole on disk
  }
}

if (import.meta.main) await main();

/**
 * @module Row 6, start to first acknowledged put, alone: spawn a server on an empty data dir, poll
 * its port, send one 100 B message and wait for the acknowledgement (`startOnce` of
 * bench/compare.ts). Compares metaq binaries (an old build and a new one, say) and the peers on
 * the same machine, taking turns run by run:
 *
 *   bun bench/startup.ts [--rounds 7] [--binary dist/metaq]... [--nats] [--redis]
 *
 * Every process started is stopped (by PID) before the next one starts.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { describeError } from "../lib/errors.ts";
import type { System } from "./client.ts";
import { startOnce } from "./compare.ts";
import { loadAverage } from "./machine.ts";
import { natsBinary, stopAll } from "./servers.ts";
import { median } from "./stats.ts";

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      rounds: { type: "string", default: "7" },
      binary: { type: "string", multiple: true },
      nats: { type: "boolean", default: false },
      redis: { type: "boolean", default: false },
    },
  });
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 100) {
    throw new Error(`--rounds takes 1..100, not '${values.rounds}'`);
  }
  const contenders: { label: string; system: System; binary: string }[] = [];
  for (const binary of values.binary ?? ["dist/metaq"]) {
    contenders.push({ label: binary, system: "metaq", binary: path.resolve(binary) });
  }
  if (values.nats) contenders.push({ label: natsBinary(), system: "nats", binary: "" });
  if (values.redis) contenders.push({ label: "redis-server", system: "redis", binary: "" });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-startup-"));
  const times = contenders.map(() => [] as number[]);
  console.log(`load average before: ${loadAverage()}`);
  try {
    for (let round = 0; round < rounds; round++) {
      // Rotate who goes first, so no contender always runs right after the same other one.
      for (let turn = 0; turn < contenders.length; turn++) {
        const index = (turn + round) % contenders.length;
        const dir = path.join(work, `${index}-${round}`);
        try {
          times[index].push(
            await startOnce(contenders[index].binary, contenders[index].system, dir),
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

if (import.meta.main) await main();

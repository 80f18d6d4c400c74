/**
 * @module Row 3, consume a backlog, alone: each contender (metaq binaries, an old build and a new
 * one say, and the original MetaQ when bench/install_metaq_java.sh built it) gets one server in
 * the fastest mode holding a backlog of `--messages` records of `--size` bytes, then the
 * contenders take turns reading their whole backlog with the same client (bench/client.ts, raw
 * `get`s of 1 MiB, one in flight), round after round. Prints msgs/s and the server's CPU per
 * message (user + system, /proc/PID/stat) for every run, and the medians:
 *
 *   bun bench/consume.ts [--rounds 5] [--size 1024] [--messages 1000000] [--binary dist/metaq]...
 *                        [--metaq-java]
 *
 * Every server is stopped (by PID) at the end, also when a run fails.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import type { System } from "./client.ts";
import { runClient } from "./compare.ts";
import { loadAverage, processCpuMicros } from "./machine.ts";
import {
  metaqJavaHome,
  type ServerHandle,
  startMetaq,
  startMetaqJava,
  stopAll,
} from "./servers.ts";
import { median } from "./stats.ts";

const CAP_MS = 120_000;

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      rounds: { type: "string", default: "5" },
      size: { type: "string", default: "1024" },
      messages: { type: "string", default: "1000000" },
      binary: { type: "string", multiple: true },
      "metaq-java": { type: "boolean", default: false },
    },
  });
  const rounds = Number(values.rounds);
  const size = Number(values.size);
  const messages = Number(values.messages);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50) {
    throw new Error(`--rounds takes 1..50, not '${values.rounds}'`);
  }
  if (!Number.isInteger(size) || size < 1 || size > 1024 * 1024) {
    throw new Error(`--size takes 1..1048576 bytes, not '${values.size}'`);
  }
  if (!Number.isInteger(messages) || messages < 1 || messages > 10_000_000) {
    throw new Error(`--messages takes 1..10000000, not '${values.messages}'`);
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-consume-"));
  const contenders: { label: string; system: System; server: ServerHandle }[] = [];
  const runs = new Map<string, { rate: number; cpuUsPerMessage: number }[]>();
  console.log(`load average before: ${loadAverage()}`);
  try {
    for (const [index, binary] of (values.binary ?? ["dist/metaq"]).entries()) {
      const server = await startMetaq({
        binary: path.resolve(binary),
        dir: path.join(work, `metaq-${index}`),
        flush: "threshold",
      });
      contenders.push({ label: binary, system: "metaq", server });
    }
    if (values["metaq-java"]) {
      const home = metaqJavaHome();
      if (!home) throw new Error("--metaq-java: METAQ_JAVA_HOME names no built broker");
      const server = await startMetaqJava({
        home,
        dir: path.join(work, "java"),
        flush: "threshold",
      });
      contenders.push({ label: "metaq-java", system: "metaq-java", server });
    }
    for (const contender of contenders) {
      const filled = await runClient(contender.system, "produce", contender.server.ports, {
        target: "backlog",
        size,
        messages,
        capMs: CAP_MS,
      });
      if (filled.messages < messages) {
        throw new Error(`${contender.label}: ${filled.messages} of ${messages} produced`);
      }
      runs.set(contender.label, []);
    }
    for (let round = 0; round < rounds; round++) {
      // Rotate who goes first, so no contender always runs right after the same other one.
      for (let turn = 0; turn < contenders.length; turn++) {
        const { label, system, server } = contenders[(turn + round) % contenders.length];
        const before = processCpuMicros(server.pid);
        const result = await runClient(system, "consume", server.ports, {
          target: "backlog",
          size,
          messages,
          capMs: CAP_MS,
          consumer: `round${round}`,
        });
        const after = processCpuMicros(server.pid);
        const cpuUs = before === undefined || after === undefined ? NaN : after - before;
        const run = {
          rate: result.messagesPerSecond,
          cpuUsPerMessage: cpuUs / Math.max(1, result.messages),
        };
        runs.get(label)!.push(run);
        console.log(
          `round ${round + 1} ${label}: ${Math.round(run.rate)} msgs/s, server ` +
            `${run.cpuUsPerMessage.toFixed(2)} us/msg (${result.messages} messages)`,
        );
      }
    }
  } finally {
    await stopAll();
    fs.rmSync(work, { recursive: true, force: true });
  }
  console.log(`load average after: ${loadAverage()}`);
  for (const [label, done] of runs) {
    const rate = median(done.map((run) => run.rate));
    const cpu = median(done.map((run) => run.cpuUsPerMessage));
    console.log(
      `${label}: median ${Math.round(rate)} msgs/s, ${cpu.toFixed(2)} us/msg of server CPU`,
    );
  }
}

if (import.meta.main) await main();

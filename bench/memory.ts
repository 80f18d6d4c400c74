/**
 * @module Rows 5a, 5b and 3 for metaq builds alone, taking turns run by run: a fastest-mode
 * broker's idle RSS, then a backlog produced and read back from its start (1 MiB `get`s) while
 * the server's VmRSS is sampled every 50 ms, as `bench/compare.ts` measures them; the consume
 * rate beside it, so a memory saving can be checked against row 3.
 *
 *   bun bench/memory.ts [--rounds 3] [--size 1024] [--messages 200000] [--binary dist/metaq]...
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import type { WorkloadResult } from "./client.ts";
import { loadAverage, memoryOf } from "./machine.ts";
import { startMetaq, stopAll, track } from "./servers.ts";
import { median } from "./stats.ts";

const CLIENT = path.join(import.meta.dirname ?? ".", "client.ts");

interface Figures {
  idleMiB: number;
  afterProduceMiB: number;
  consumePeakMiB: number;
  hwmMiB: number;
  produceRate: number;
  consumeRate: number;
}

function runClient(workload: string, port: number, size: number, messages: number) {
  return new Promise<WorkloadResult>((resolve, reject) => {
    const child = track(spawn(process.execPath, [
      CLIENT,
      "metaq",
      workload,
      "--port",
      String(port),
      "--size",
      String(size),
      "--messages",
      String(messages),
      "--duration-ms",
      "60000",
    ], { stdio: ["ignore", "pipe", "inherit"] }));
    let stdout = "";
    child.stdout!.on("data", (chunk) => (stdout += chunk));
    child.on("exit", (code) => {
      const line = stdout.trim().split("\n").pop() ?? "";
      if (code === 0 && line.startsWith("{")) resolve(JSON.parse(line));
      else reject(new Error(`client ${workload} exited ${code}`));
    });
  });
}

async function once(binary: string, dir: string, size: number, messages: number) {
  const server = await startMetaq({ binary, dir, flush: "threshold" });
  try {
    await new Promise((resolve) => setTimeout(resolve, 1000)); // row 5a: a second after start
    const idle = memoryOf(server.pid).rssKiB;
    const produced = await runClient("produce", server.ports[0], size, messages);
    const afterProduce = memoryOf(server.pid).rssKiB;
    let peak = afterProduce;
    const timer = setInterval(() => {
      peak = Math.max(peak, memoryOf(server.pid).rssKiB);
    }, 50);
    const consumed = await runClient("consume", server.ports[0], size, messages);
    clearInterval(timer);
    const last = memoryOf(server.pid);
    return {
      idleMiB: idle / 1024,
      afterProduceMiB: afterProduce / 1024,
      consumePeakMiB: Math.max(peak, last.rssKiB) / 1024,
      hwmMiB: last.peakKiB / 1024,
      produceRate: produced.messagesPerSecond,
      consumeRate: consumed.messagesPerSecond,
    } satisfies Figures;
  } finally {
    await server.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      rounds: { type: "string", default: "3" },
      size: { type: "string", default: "1024" },
      messages: { type: "string", default: "200000" },
      binary: { type: "string", multiple: true },
    },
  });
  const rounds = Number(values.rounds);
  const size = Number(values.size);
  const messages = Number(values.messages);
  const binaries = (values.binary ?? ["dist/metaq"]).map((binary) => path.resolve(binary));
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "metaq-memory-"));
  const results = binaries.map(() => [] as Figures[]);
  console.log(`load average before: ${loadAverage()}`);
  try {
    for (let round = 0; round < rounds; round++) {
      for (let turn = 0; turn < binaries.length; turn++) {
        const index = (turn + round) % binaries.length;
        const dir = path.join(work, `${index}-${round}`);
        const figures = await once(binaries[index], dir, size, messages);
        console.log(`${binaries[index]}: ${JSON.stringify(figures)}`);
        results[index].push(figures);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    await stopAll();
    fs.rmSync(work, { recursive: true, force: true });
  }
  console.log(`load average after: ${loadAverage()}`);
  binaries.forEach((binary, index) => {
    const of = (key: keyof Figures) => median(results[index].map((figures) => figures[key]));
    console.log(
      `${binary}: idle ${of("idleMiB").toFixed(0)} MiB, after produce ${
        of("afterProduceMiB").toFixed(0)
      } MiB, consume peak ${of("consumePeakMiB").toFixed(0)} MiB (VmHWM ${
        of("hwmMiB").toFixed(0)
      }), produce ${(of("produceRate") / 1000).toFixed(0)}k msgs/s, consume ${
        (of("consumeRate") / 1000).toFixed(0)
      }k msgs/s (medians of ${rounds})`,
    );
  });
}

if (import.meta.main) await main();

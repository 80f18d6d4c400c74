/**
 * @module Facts about the machine a benchmark ran on, and its load, so every figure is printed
 * with the conditions it was measured under. Linux /proc only; elsewhere the fields say "?".
 */
import * as fs from "node:fs";
import * as os from "node:os";

export interface MachineFacts {
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly filesystem: string;
}

export function machineFacts(dir: string): MachineFacts {
  return {
    cpu: os.cpus()[0]?.model?.trim() ?? "?",
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    filesystem: filesystemOf(dir),
  };
}

/** 1, 5 and 15 minute load averages as text ("1.52 0.98 0.61"). */
export function loadAverage(): string {
  return os.loadavg().map((value) => value.toFixed(2)).join(" ");
}

/** CPU time all processes used since boot, in clock ticks, for busy-share over an interval. */
export function cpuTicks(): { busy: number; total: number } {
  try {
    const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0];
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = fields[3] + (fields[4] ?? 0);
    const total = fields.reduce((sum, value) => sum + value, 0);
    return { busy: total - idle, total };
  } catch {
    return { busy: 0, total: 0 };
  }
}

/** Share of all cores busy between two cpuTicks() readings, in percent. */
export function busyPercent(from: { busy: number; total: number }, to = cpuTicks()): number {
  const total = to.total - from.total;
  return total > 0 ? Math.round(((to.busy - from.busy) / total) * 100) : 0;
}

/** VmRSS and VmHWM of a process in KiB (0 when it is gone). */
export function memoryOf(pid: number): { rssKiB: number; peakKiB: number } {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const field = (name: string) =>
      Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0);
    return { rssKiB: field("VmRSS"), peakKiB: field("VmHWM") };
  } catch {
    return { rssKiB: 0, peakKiB: 0 };
  }
}

function filesystemOf(dir: string): string {
  try {
    const mounts = fs.readFileSync("/proc/mounts", "utf8").trim().split("\n")
      .map((line) => line.split(" "))
      .filter(([, mount]) =>
        dir === mount || dir.startsWith(mount.endsWith("/") ? mount : `${mount}/`)
      )
      .sort((a, b) => b[1].length - a[1].length);
    return mounts.length > 0 ? `${mounts[0][2]} on ${mounts[0][0]}` : "?";
  } catch {
    return "?";
  }
}

/**
 * CPU time a process has used (user + system, its threads included), in microseconds, from
 * `/proc/<pid>/stat` (fields 14 and 15, in clock ticks of 1/100 s on Linux); undefined when it is
 * gone or /proc is missing. The 10 ms tick makes a short run's figure coarse: compare runs of a
 * second or more.
 */
export function processCpuMicros(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis don't.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks * (1_000_000 / CLOCK_TICKS_PER_SECOND) : undefined;
  } catch {
    return undefined;
  }
}

/** USER_HZ: 100 on every Linux architecture the project runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

/** Size of a file in bytes, or undefined. */
export function fileBytes(file: string): number | undefined {
  try {
    return fs.statSync(file).size;
  } catch {
    return undefined;
  }
}

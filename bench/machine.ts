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

/**
 * @module Faults of one node's machine rather than its links or process (reliability plan 1.2):
 * a skewed or jumping wall clock, slow or failing fsync, and a small disk that can be filled. The
 * first two go through the broker's test-build hooks, files the launcher names in every node's
 * environment (`METAQ_TEST_CLOCK_FILE`, `METAQ_TEST_FSYNC_CONTROL`; absent means no fault); the
 * disk is a tmpfs of a fixed size mounted for the node (needs root: `smallDiskSkipReason` says
 * why not otherwise). Also `metaqCli`, the operator's command line against the cluster.
 */
import { execFile, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import process from "node:process";
import type { Cluster } from "./launcher.ts";
import { METAQ_BINARY } from "./launcher.ts";

/** Sets node `id`'s wall-clock offset (ms, may be negative); the node sees it within 100 ms. */
export function setClockOffset(cluster: Cluster, id: number, offsetMs: number): void {
  fs.writeFileSync(cluster.node(id).clockOffsetPath, `${Math.round(offsetMs)}\n`);
  cluster.options.log(`node ${id} wall clock offset ${offsetMs} ms`);
}

/** Adds `ms` to every fsync of node `id` (0: back to normal). Read before each sync. */
export function setFsyncDelay(cluster: Cluster, id: number, ms: number): void {
  fs.writeFileSync(cluster.node(id).fsyncControlPath, ms > 0 ? `delay ${Math.round(ms)}\n` : "");
  cluster.options.log(`node ${id} fsync delay ${ms} ms`);
}

/** Makes node `id`'s next fsync fail with EIO (once: the broker consumes the line). */
export function failNextFsync(cluster: Cluster, id: number): void {
  fs.writeFileSync(cluster.node(id).fsyncControlPath, "eio");
  cluster.options.log(`node ${id} next fsync fails with EIO`);
}

/** Whether node `id`'s injected EIO is still pending (no fsync has consumed it yet). */
export function fsyncFailurePending(cluster: Cluster, id: number): boolean {
  try {
    return fs.readFileSync(cluster.node(id).fsyncControlPath, "utf8").trim() === "eio";
  } catch {
    return false;
  }
}

export interface CliOutcome {
  readonly code: number | string;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `metaq <args>` without blocking this process (its proxies carry the nodes' links), killed
 * after `timeoutMs`.
 */
export function metaqCli(cluster: Cluster, args: string[], timeoutMs: number): Promise<CliOutcome> {
  return new Promise((resolve) => {
    execFile(
      cluster.options.binary ?? METAQ_BINARY,
      args,
      { encoding: "utf8", timeout: timeoutMs },
      (error, stdout, stderr) => {
        const code = error ? (error as { code?: number | string }).code ?? "killed" : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

/** Why a tmpfs cannot be mounted here (not root, or the mount fails), or undefined. */
export function smallDiskSkipReason(): string | undefined {
  if (process.platform !== "linux") return "needs Linux (tmpfs)";
  if (process.getuid?.() !== 0) return "needs root to mount a tmpfs (CI runs as root)";
  const probe = fs.mkdtempSync(path.join(process.env.TMPDIR ?? "/tmp", "metaq-tmpfs-probe-"));
  try {
    const mount = spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", probe]);
    if (mount.status !== 0) return `cannot mount a tmpfs: ${String(mount.stderr).trim()}`;
    spawnSync("umount", [probe]);
    return undefined;
  } finally {
    fs.rmSync(probe, { recursive: true, force: true });
  }
}

const MOUNTED = new Set<string>();
let exitHookInstalled = false;

/**
 * A node's data directory on a tmpfs of `bytes`: `<node dir>/disk` is the mount, the data
 * directory a symlink to `disk/data`, and `disk/filler` takes up space on demand. Attach and
 * detach happen with the node stopped; its files are copied across, so nothing is lost and what
 * was there counts as durable.
 */
export class SmallDisk {
  readonly cluster: Cluster;
  readonly id: number;
  readonly bytes: number;
  readonly mount: string;
  #attached = false;

  constructor(cluster: Cluster, id: number, bytes: number) {
    this.cluster = cluster;
    this.id = id;
    this.bytes = bytes;
    this.mount = path.join(cluster.node(id).dir, "disk");
  }

  get filler(): string {
    return path.join(this.mount, "filler");
  }

  /** Moves the stopped node's data onto a fresh tmpfs. */
  attach(): void {
    const node = this.cluster.node(this.id);
    if (node.state !== "stopped") throw new Error(`Cannot move node ${this.id}: it is running`);
    fs.mkdirSync(this.mount, { recursive: true });
    run("mount", ["-t", "tmpfs", "-o", `size=${this.bytes}`, "tmpfs", this.mount]);
    MOUNTED.add(this.mount);
    installExitHook();
    this.#attached = true;
    fs.cpSync(node.dataDir, path.join(this.mount, "data"), { recursive: true });
    fs.rmSync(node.dataDir, { recursive: true });
    fs.symlinkSync(path.join(this.mount, "data"), node.dataDir);
    this.cluster.resetDurability(this.id);
    this.cluster.options.log(`node ${this.id} data on a ${this.bytes}-byte tmpfs at ${this.mount}`);
  }

  /** Moves the stopped node's data back to the run directory and unmounts. Idempotent. */
  detach(): void {
    if (!this.#attached) return;
    const node = this.cluster.node(this.id);
    if (node.state !== "stopped") throw new Error(`Cannot move node ${this.id}: it is running`);
    fs.rmSync(node.dataDir, { force: true });
    fs.cpSync(path.join(this.mount, "data"), node.dataDir, { recursive: true });
    unmount(this.mount);
    this.#attached = false;
    this.cluster.resetDurability(this.id);
    this.cluster.options.log(`node ${this.id} data back from the tmpfs`);
  }

  /** Unmounts without copying (teardown after a failure); the node must be stopped or dead. */
  abandon(): void {
    if (!this.#attached) return;
    unmount(this.mount);
    this.#attached = false;
  }

  /** Bytes still free on the disk. */
  freeBytes(): number {
    const stats = fs.statfsSync(this.mount);
    return Number(stats.bavail) * Number(stats.bsize);
  }

  /** Grows the filler until at most `leaveBytes` are free (or the disk refuses); returns free. */
  fill(leaveBytes: number): number {
    const chunk = new Uint8Array(64 * 1024).fill(0x5a);
    const fd = fs.openSync(this.filler, "a");
    try {
      for (let i = 0; i < 1_000_000; i++) {
        const free = this.freeBytes();
        if (free <= leaveBytes) break;
        const length = Math.min(chunk.length, free - leaveBytes);
        try {
          fs.writeSync(fd, chunk, 0, length);
        } catch (error) {
          if ((error as { code?: string }).code === "ENOSPC") break;
          throw error;
        }
      }
    } finally {
      fs.closeSync(fd);
    }
    const free = this.freeBytes();
    this.cluster.options.log(`node ${this.id} disk filled: ${free} bytes free`);
    return free;
  }

  /** Deletes the filler: the space comes back. */
  free(): void {
    fs.rmSync(this.filler, { force: true });
    this.cluster.options.log(`node ${this.id} disk freed: ${this.freeBytes()} bytes free`);
  }
}

function run(command: string, args: string[]): void {
  const outcome = spawnSync(command, args, { encoding: "utf8" });
  if (outcome.status !== 0) {
    throw new Error(`${command} ${args.join(" ")} failed: ${outcome.stderr.trim()}`);
  }
}

function unmount(mount: string): void {
  const outcome = spawnSync("umount", [mount], { encoding: "utf8" });
  // A process still holding a file (a node being killed) keeps it busy: detach it lazily.
  if (outcome.status !== 0) spawnSync("umount", ["-l", mount]);
  MOUNTED.delete(mount);
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const mount of MOUNTED) spawnSync("umount", ["-l", mount]);
  });
}

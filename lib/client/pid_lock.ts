/**
 * @module PidLock: `<path>.lock`, holding the pid of the process that writes `<path>`, so two
 * processes never append to one client file (two consumers started with one instance name).
 * The lock is created with O_EXCL, so of two processes starting together one wins. A lock whose
 * process is gone is stale and taken over, and so is one holding our own pid, because a restarted
 * container reuses pids. Two processes that take over one stale lock in the same instant can
 * both succeed: the lock guards against a mistake, not against that race.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import process from "node:process";
import { BrokerError } from "../errors.ts";

/** Stale locks removed in one take before giving up (each removal races another process). */
const TAKE_ATTEMPTS_MAX = 3;

/** Locks this process holds, so a second open in this process is refused as well. */
const held = new Set<string>();

/** Takes `<filePath>.lock` or throws `conflict` naming who holds it. */
export function takeLock(filePath: string): void {
  const lockPath = path.resolve(`${filePath}.lock`);
  if (held.has(lockPath)) {
    throw new BrokerError("conflict", `${filePath} is already open in this process`);
  }
  for (let attempt = 0; attempt < TAKE_ATTEMPTS_MAX; attempt++) {
    if (createLock(lockPath)) {
      held.add(lockPath);
      return;
    }
    const holder = lockHolder(lockPath);
    if (holder === "gone") continue;
    if (holder === "unknown") {
      throw new BrokerError(
        "conflict",
        `${lockPath} names no process; remove it if nothing uses ${filePath}`,
      );
    }
    if (holder !== process.pid && isProcessAlive(holder)) {
      throw new BrokerError(
        "conflict",
        `${filePath} is in use by process ${holder}; give each consumer its own instance name`,
      );
    }
    fs.rmSync(lockPath, { force: true });
  }
  throw new BrokerError("conflict", `${lockPath} keeps coming back; another process takes it`);
}

/** Gives the lock up; leaves it alone if another process has taken it over meanwhile. */
export function releaseLock(filePath: string): void {
  const lockPath = path.resolve(`${filePath}.lock`);
  if (!held.delete(lockPath)) return;
  if (lockHolder(lockPath) === process.pid) fs.rmSync(lockPath, { force: true });
}

/** Creates the lock with our pid; false when it exists already. */
function createLock(lockPath: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(lockPath, "wx", 0o644);
  } catch (error) {
    if ((error as { code?: string }).code === "EEXIST") return false;
    throw error;
  }
  try {
    fs.writeSync(fd, `${process.pid}\n`);
  } finally {
    fs.closeSync(fd);
  }
  return true;
}

/** The pid in the lock, "gone" when there is no lock, "unknown" when it holds no pid. */
function lockHolder(lockPath: string): number | "gone" | "unknown" {
  let text: string;
  try {
    text = fs.readFileSync(lockPath, "utf8").trim();
  } catch (error) {
    if ((error as { code?: string }).code === "ENOENT") return "gone";
    throw error;
  }
  const pid = Number(text);
  return /^[0-9]+$/.test(text) && Number.isSafeInteger(pid) && pid > 0 ? pid : "unknown";
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === "EPERM";
  }
}

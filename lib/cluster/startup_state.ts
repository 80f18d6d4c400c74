/**
 * @module How this node last stopped, for the recovery rules of replication.md 5.7: a
 * clean-stop marker written after a graceful shutdown (so tail damage found at the next start
 * is corruption, not an interrupted write), and the kernel boot id recorded at every start (so
 * a machine restart is told apart from a process crash when fsync runs on a timer).
 *
 * `METAQ_TEST_BOOT_ID_FILE` replaces /proc/sys/kernel/random/boot_id, so tests can simulate a
 * reboot.
 */
import * as fs from "node:fs";
import process from "node:process";
import { joinPath, type Storage } from "../store/storage.ts";
import { CLUSTER_DIR } from "./membership.ts";

const CLEAN_STOP_FILE = "clean-stop";
const BOOT_ID_FILE = "boot-id";

export interface StartupState {
  /** The previous run ended with a graceful shutdown. */
  readonly cleanStop: boolean;
  /** The machine restarted since the previous run (boot ids differ). */
  readonly rebooted: boolean;
  readonly bootId: string;
}

export function currentBootId(): string {
  const path = process.env.METAQ_TEST_BOOT_ID_FILE ?? "/proc/sys/kernel/random/boot_id";
  try {
    return fs.readFileSync(path, "utf8").trim() || "unknown";
  } catch {
    return "unknown";
  }
}

/** Reads how the last run ended and records this run's boot id. */
export async function readStartupState(storage: Storage, dataPath: string): Promise<StartupState> {
  const dir = joinPath(dataPath, CLUSTER_DIR);
  const bootId = currentBootId();
  const cleanStop = storage.readFile(joinPath(dir, CLEAN_STOP_FILE)) !== undefined;
  const previous = storage.readFile(joinPath(dir, BOOT_ID_FILE));
  const previousBootId = previous ? new TextDecoder().decode(previous).trim() : undefined;
  await storage.writeFileAtomic(
    joinPath(dir, BOOT_ID_FILE),
    new TextEncoder().encode(`${bootId}\n`),
  );
  return { cleanStop, rebooted: previousBootId !== undefined && previousBootId !== bootId, bootId };
}

/** Forgets the clean-stop marker once its news has been acted on (so a later crash is seen). */
export async function clearCleanStop(storage: Storage, dataPath: string): Promise<void> {
  const dir = joinPath(dataPath, CLUSTER_DIR);
  if (storage.readFile(joinPath(dir, CLEAN_STOP_FILE)) === undefined) return;
  storage.remove(joinPath(dir, CLEAN_STOP_FILE));
  await storage.syncDir(dir);
}

/** Written after every log was flushed at a graceful shutdown. */
export async function markCleanStop(storage: Storage, dataPath: string): Promise<void> {
  await storage.writeFileAtomic(
    joinPath(dataPath, CLUSTER_DIR, CLEAN_STOP_FILE),
    new TextEncoder().encode(`${currentBootId()}\n`),
  );
}

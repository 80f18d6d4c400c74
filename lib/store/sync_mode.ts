/**
 * @module Where a group commit's fdatasync runs: on the event loop ("inline") or on the runtime's
 * thread pool. The partition log asks, does the sync, and reports how long it waited; the one
 * outside input is whether the machine's CPUs are oversubscribed (a parameter, for tests).
 *
 * Handing an fdatasync to the pool costs two thread hand-offs (wake a pool thread, then wake the
 * event loop with the result: 150-190 us per put under `perf trace` on this 2-core machine, as much
 * as a quiet disk's fdatasync), and a put that waits for its ack pays them. Inline, as Redis does
 * with `appendfsync always`, saves them. But with the CPUs oversubscribed (load 3-12: other test
 * suites on both cores) an fdatasync called from the busy event-loop thread took 2-5 ms at p90
 * where the pool's, hand-offs included, took 0.6-3 ms (probably because that thread is slower to
 * be scheduled again once the disk answers), and window-1 producers got up to 2-4x fewer puts/s
 * inline than on the pool (Redis `always`, inline too, fell as far). So inline is only tried while
 * the machine's CPUs have room (less than BUSY_CPU_FRACTION busy over the last second), and then
 * the chooser measures both modes: it keeps a
 * moving average of what each cost small batches, uses the cheaper one, and tries the other one
 * batch in EXPLORE_EVERY to notice when that changes. (bench/README.md, row 2w, has the figures.)
 *
 * Only small batches are candidates (a producer that waits for each ack). A large one (a
 * pipelined producer, a busy broker) always syncs on the pool, where its fsync overlaps the next
 * batch's CPU work. Not inline either after a slow sync (an inline sync stalls every connection
 * for as long as it takes), or when another partition's writer waits to run in this turn (two
 * inline syncs would run one after the other, where the pool runs them side by side). A cluster
 * node is given a chooser that never syncs inline (lib/app/assemble.ts says why).
 */

/** Records above which a batch's fsync goes to the pool (its CPU work is worth overlapping). */
export const INLINE_SYNC_RECORDS_MAX = 16;
/** Bytes above which a batch's fsync goes to the pool. */
export const INLINE_SYNC_BYTES_MAX = 64 * 1024;
/**
 * Share of the machine's CPU time in use (every process, this one included) from which inline
 * syncs are not tried. Measured over the last second, not by the load average: that one trails by
 * a minute, so right after a burst of work it still read ~2 on this 2-core machine while a window-1
 * producer and its broker left most of both cores idle (the benchmark's row 2w, which then ran on
 * the pool where inline would have won).
 */
export const BUSY_CPU_FRACTION = 0.9;
/** A sync slower than this sends the next ones to the pool until one is fast again. */
export const INLINE_SYNC_LATENCY_MAX_MS = 2;
/**
 * One small batch in this many tries the mode the averages do not prefer. A try of the pool costs
 * its batch ~200 us more than inline on a quiet machine, so one in 8 cost a window-1 producer ~10 %
 * of its puts (bench/README.md, row 2w); at one in 64 a producer at 3k puts/s still tries the
 * other mode ~50 times a second.
 */
export const EXPLORE_EVERY = 64;
/**
 * Weight of a new sample in the moving averages: small, because sync latencies have a heavy
 * tail (p99 10-20x the median on a shared machine) and a few samples would make the choice flip
 * at random. The mean is what matters (a producer awaiting each put gets 1 / mean puts/s).
 */
const AVERAGE_WEIGHT = 1 / 32;
/** Samples above this count as this much: one stall of another process's making is not a trend. */
const SAMPLE_MS_MAX = 10;

export type SyncMode = "inline" | "pool";

/** Whether the machine's CPUs are oversubscribed now (inline syncs then lose: see above). */
export type BusyProbe = () => boolean;

export interface SyncCandidate {
  /** Whether the file can sync on the calling thread at all. */
  readonly inlineAvailable: boolean;
  /** Records and bytes of the batch this sync acknowledges. */
  readonly records: number;
  readonly bytes: number;
  /** How long the previous sync of this log took (0 before the first). */
  readonly lastSyncLatencyMs: number;
  /** Other logs' writers scheduled to run in this event-loop turn. */
  readonly otherWritersWaiting: number;
}

/** Whether a batch may sync inline at all (the chooser then picks between the two). */
export function mayInline(candidate: SyncCandidate): boolean {
  return candidate.inlineAvailable &&
    candidate.records <= INLINE_SYNC_RECORDS_MAX &&
    candidate.bytes <= INLINE_SYNC_BYTES_MAX &&
    candidate.lastSyncLatencyMs < INLINE_SYNC_LATENCY_MAX_MS &&
    candidate.otherWritersWaiting === 0;
}

/** Picks a mode for each sync and learns from what each one cost. */
export class SyncModeChooser {
  #averageMs: Record<SyncMode, number | undefined> = { inline: undefined, pool: undefined };
  #smallBatches = 0;
  readonly #busy: BusyProbe;

  constructor(options: { busy: BusyProbe }) {
    this.#busy = options.busy;
  }

  /** The mode for this sync; `measured` says whether to report its latency with record(). */
  choose(candidate: SyncCandidate): { mode: SyncMode; measured: boolean } {
    if (!mayInline(candidate) || this.#busy()) return { mode: "pool", measured: false };
    this.#smallBatches += 1;
    const { inline, pool } = this.#averageMs;
    if (inline === undefined) return { mode: "inline", measured: true };
    if (pool === undefined) return { mode: "pool", measured: true };
    const preferred: SyncMode = inline <= pool ? "inline" : "pool";
    const explore = this.#smallBatches % EXPLORE_EVERY === 0;
    return { mode: explore ? other(preferred) : preferred, measured: true };
  }

  /** How long a small batch waited for its sync in `mode`, from the call to the ack. */
  record(mode: SyncMode, sampleMs: number): void {
    const latencyMs = Math.min(sampleMs, SAMPLE_MS_MAX);
    const average = this.#averageMs[mode];
    this.#averageMs[mode] = average === undefined
      ? latencyMs
      : average + (latencyMs - average) * AVERAGE_WEIGHT;
  }

  /** The moving averages (for tests and diagnostics). */
  get averagesMs(): Readonly<Record<SyncMode, number | undefined>> {
    return { ...this.#averageMs };
  }
}

/** The machine's CPU time so far, all CPUs together: idle and in all (any unit, both the same). */
export type CpuTimes = () => { idle: number; total: number };

/**
 * Busy while the CPUs were at least BUSY_CPU_FRACTION busy between two readings, read at most once
 * a second (`nowMs` is monotonic; reading costs a few syscalls). Where the runtime reports no CPU
 * times (all zeros), never busy.
 */
export function cpuBusyProbe(options: { nowMs: () => number; cpuTimes: CpuTimes }): BusyProbe {
  let checkedMs = -Infinity;
  let last: { idle: number; total: number } | undefined;
  let busy = false;
  return () => {
    const now = options.nowMs();
    if (now - checkedMs >= 1000) {
      checkedMs = now;
      const times = options.cpuTimes();
      if (last && times.total > last.total) {
        const idleShare = (times.idle - last.idle) / (times.total - last.total);
        busy = 1 - idleShare >= BUSY_CPU_FRACTION;
      }
      last = times;
    }
    return busy;
  };
}

function other(mode: SyncMode): SyncMode {
  return mode === "inline" ? "pool" : "inline";
}

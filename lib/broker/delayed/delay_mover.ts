/**
 * @module Moving old pending messages forward in `__delay-0`, so the log can be compacted past
 * them. The log is only ever dropped below its oldest live record (DelayState.liveFloor); one
 * message due in 40 days would otherwise keep everything written after it. When the log holds
 * much more than what is live, the writer appends a copy of the oldest pending records (same
 * bytes: same id, time and payload); applying a copy only moves where the message lives
 * (DelayIndex.add), so the old record becomes dead and the floor moves up.
 *
 * A copy is written only while the message is held out of the heap (DelayFirer.hold): no firing
 * and no cancel can name it until the copy is applied, so a copy never follows a record that
 * ended its message (which would bring it back). Schedules are not moved: a schedule's record is
 * written again at each of its occurrences.
 */
import { RECORD_HEADER_BYTES } from "../../protocol/record.ts";
import type { StateLog } from "../../store/state_log.ts";
import type { DelayFirer } from "./delay_firer.ts";
import type { DelayState } from "./delay_state.ts";

/** Records moved per round at most. */
const MOVE_RECORDS_MAX = 4096;

export interface MoveOptions {
  readonly journal: StateLog;
  readonly state: DelayState;
  readonly firer: DelayFirer;
  /** The log's segment size: moving is worth it once a few segments hold nothing live. */
  readonly segmentBytes: number;
}

/**
 * Moves the pending messages of the oldest `segmentBytes` of live data forward when the log is
 * more than twice what is live and holds at least four segments; resolves with how many moved.
 */
export async function moveOldestForward(options: MoveOptions): Promise<number> {
  const { journal, state, firer, segmentBytes } = options;
  const log = journal.log;
  const floor = state.liveFloor();
  const total = log.endOffset - log.startOffset;
  if (floor === undefined || total < 4 * segmentBytes || total < 2 * state.liveBytes) return 0;
  const index = state.index;
  const held = index.pendingBelow(floor + segmentBytes, MOVE_RECORDS_MAX)
    .filter((slot) => firer.hold(slot));
  try {
    await Promise.all(held.map((slot) => {
      const bytes = new Uint8Array(index.lengthOf(slot));
      log.readInto(bytes, 0, index.offsetOf(slot), bytes.length);
      return journal.append(bytes.subarray(RECORD_HEADER_BYTES));
    }));
  } finally {
    for (const slot of held) firer.release(slot);
  }
  return held.length;
}

/**
 * @module Message ids in MetaQ's snowflake layout: bits 63..22 are milliseconds since
 * 2011-04-27T09:14:20.503Z, bits 21..12 the broker id, bits 11..0 a sequence. Unlike MetaQ
 * (which read a monotonic clock) we use wall time, and we never go below the newest id found
 * on disk, so ids stay unique and increasing per broker across restarts and clock steps back.
 */
import { assert } from "../assert.ts";
import type { Clock } from "../clock.ts";
import { BROKER_ID_MAX } from "../limits.ts";

export const ID_EPOCH_MS = 1303895660503;
const SEQUENCE_BITS = 12n;
const BROKER_BITS = 10n;
const SEQUENCE_MAX = 4095;

/**
 * A message id held as two 32-bit halves plus its decimal text, so the put path never does
 * BigInt arithmetic per message.
 */
export class MessageId {
  readonly high32: number;
  readonly low32: number;
  readonly #decimal: string;

  constructor(high32: number, low32: number, decimal: string) {
    this.high32 = high32;
    this.low32 = low32;
    this.#decimal = decimal;
  }

  static of(id: bigint): MessageId {
    const unsigned = BigInt.asUintN(64, id);
    return new MessageId(Number(unsigned >> 32n), Number(unsigned & 0xffffffffn), id.toString());
  }

  toString(): string {
    return this.#decimal;
  }

  toBigInt(): bigint {
    return BigInt.asIntN(64, (BigInt(this.high32) << 32n) | BigInt(this.low32));
  }
}

const DECIMAL_SPLIT = 1_000_000;

export class MessageIdGenerator {
  readonly #clock: Clock;
  readonly #brokerBits: bigint;
  #lastMs = -1;
  #sequence = 0;
  #base = 0n;
  /** The base id of #lastMs as 32-bit halves and as decimal high/low parts (split at 10^6). */
  #baseHigh32 = 0;
  #baseLow32 = 0;
  #baseDecimalHigh = 0;
  #baseDecimalLow = 0;

  constructor(options: { brokerId: number; clock: Clock }) {
    assert(Number.isInteger(options.brokerId));
    assert(options.brokerId >= 0 && options.brokerId <= BROKER_ID_MAX);
    this.#clock = options.clock;
    this.#brokerBits = BigInt(options.brokerId) << SEQUENCE_BITS;
  }

  /** Never hand out an id at or below `id` (the newest one recovered from disk). */
  observe(id: bigint): void {
    const ms = Number(id >> (SEQUENCE_BITS + BROKER_BITS)) + ID_EPOCH_MS;
    if (ms > this.#lastMs) {
      this.#lastMs = ms;
      this.#sequence = SEQUENCE_MAX; // the next id moves to the following millisecond
      this.#base = this.#baseFor(ms);
    }
  }

  next(): bigint {
    this.#advance();
    return this.#base + BigInt(this.#sequence);
  }

  /** The next id without BigInt arithmetic (the sequence sits in the low 12 bits, no carry). */
  nextId(): MessageId {
    this.#advance();
    const sequence = this.#sequence;
    let low = this.#baseDecimalLow + sequence;
    let high = this.#baseDecimalHigh;
    if (low >= DECIMAL_SPLIT) {
      high += 1;
      low -= DECIMAL_SPLIT;
    }
    const lowText = low < 100_000 ? String(low).padStart(6, "0") : String(low);
    return new MessageId(this.#baseHigh32, (this.#baseLow32 | sequence) >>> 0, `${high}${lowText}`);
  }

  /**
   * Up to `wanted` ids that follow one another (one millisecond's sequence numbers, so id i of
   * the run is `first + i`): a batch of records takes its ids a run at a time, and its reply
   * names them as runs instead of one by one.
   */
  nextRun(wanted: number): { readonly first: MessageId; readonly count: number } {
    assert(Number.isSafeInteger(wanted) && wanted >= 1);
    const first = this.nextId();
    const count = Math.min(wanted, SEQUENCE_MAX - this.#sequence + 1);
    this.#sequence += count - 1;
    return { first, count };
  }

  #advance(): void {
    // A clock before MetaQ's epoch would make ids zero or negative.
    const now = Math.max(this.#clock.wallMs(), ID_EPOCH_MS + 1);
    if (now > this.#lastMs) {
      this.#lastMs = now;
      this.#sequence = 0;
      this.#base = this.#baseFor(now);
    } else if (this.#sequence >= SEQUENCE_MAX) {
      // Sequence exhausted (or the clock stepped back): borrow the next millisecond.
      this.#lastMs += 1;
      this.#sequence = 0;
      this.#base = this.#baseFor(this.#lastMs);
    } else {
      this.#sequence += 1;
    }
  }

  #baseFor(ms: number): bigint {
    const base = (BigInt(ms - ID_EPOCH_MS) << (SEQUENCE_BITS + BROKER_BITS)) | this.#brokerBits;
    this.#baseHigh32 = Number(base >> 32n);
    this.#baseLow32 = Number(base & 0xffffffffn);
    this.#baseDecimalHigh = Number(base / BigInt(DECIMAL_SPLIT));
    this.#baseDecimalLow = Number(base % BigInt(DECIMAL_SPLIT));
    return base;
  }
}

/** Wall-clock milliseconds encoded in a message id. */
export function idTimestampMs(id: bigint): number {
  return Number(id >> (SEQUENCE_BITS + BROKER_BITS)) + ID_EPOCH_MS;
}

/** Broker id encoded in a message id. */
export function idBrokerId(id: bigint): number {
  return Number((id >> SEQUENCE_BITS) & 1023n);
}

/**
 * @module Where a message forwarded by an edge's uplink came from, as it travels in MetaQ's
 * message attribute, and the message id the hub stores it under. Pure: shared by the edge that
 * writes these (lib/uplink), the hub that checks them (`uput`) and any client that reads them.
 *
 * ```text
 * attribute = origin [";" original-attribute]
 * origin    = "metaq-origin:" site "/" topic "/" partition "/" offset "/" id
 * ```
 *
 * `site` names the edge (letters, digits, `_ . -`), `topic`, `partition` and `offset` locate the
 * message in the edge's log, `id` is its message id there (signed 64-bit decimal). A message
 * that had an attribute at the edge keeps it after the `;` (an empty attribute stays empty;
 * no attribute means no `;`). A message forwarded twice (edge to edge to hub) carries the
 * nearest origin first.
 *
 * The hub stores a forwarded message under an id computed from (site, topic, partition,
 * offset) with bit 63 set. Ids a broker makes itself are never negative (their top bits are a
 * timestamp), so these never meet the ids `fput` and `commitbatch` look for, and the same
 * origin always gets the same id: `Log.appendMissing` then accepts each origin once.
 */

/** The first characters of every origin attribute. */
export const ORIGIN_PREFIX = "metaq-origin:";

/** A site name: what the `site` of an origin may be. */
export const SITE_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$/;

export interface Origin {
  readonly site: string;
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly id: bigint;
}

const ORIGIN_PATTERN = new RegExp(
  "^" + ORIGIN_PREFIX.replace(/[.-]/g, "\\$&") +
    String
      .raw`([A-Za-z0-9_][A-Za-z0-9_.\-]*)/([A-Za-z0-9_][A-Za-z0-9_.\-]*)/(\d{1,10})/(\d{1,16})/(-?\d{1,20})(;[\s\S]*)?$`,
);

/** The origin part of the attribute, without the original attribute. */
export function formatOrigin(origin: Origin): string {
  const { site, topic, partition, offset, id } = origin;
  return `${ORIGIN_PREFIX}${site}/${topic}/${partition}/${offset}/${id}`;
}

/** The attribute a forwarded message carries at the hub. */
export function originAttribute(origin: Origin, attribute?: string): string {
  const text = formatOrigin(origin);
  return attribute === undefined ? text : `${text};${attribute}`;
}

/**
 * The origin and the original attribute of a forwarded message's attribute; undefined when the
 * attribute is not an origin (the message was not forwarded by an uplink).
 */
export function parseOriginAttribute(
  attribute: string,
): { origin: Origin; attribute?: string } | undefined {
  const match = ORIGIN_PATTERN.exec(attribute);
  if (!match) return undefined;
  const [, site, topic, partitionText, offsetText, idText, rest] = match;
  const offset = Number(offsetText);
  if (!Number.isSafeInteger(offset)) return undefined;
  const id = BigInt(idText);
  if (id !== BigInt.asIntN(64, id)) return undefined;
  const origin = { site, topic, partition: Number(partitionText), offset, id };
  return rest === undefined ? { origin } : { origin, attribute: rest.slice(1) };
}

/**
 * The id the hub stores the message from (site, topic, partition, offset) under: a 63-bit hash
 * of those with bit 63 set, so it is negative and never an id a broker makes. Two different
 * origins share an id with probability 2^-63; only origins compared in one `appendMissing`
 * window could ever be confused (see docs/uplink.md).
 */
export function originId(site: string, topic: string, partition: number, offset: number): bigint {
  const [high, low] = new OriginIds(site, topic, partition).halvesAt(offset);
  return BigInt.asIntN(64, (BigInt(high >>> 0) << 32n) | BigInt(low >>> 0));
}

/** Whether `id` is in the range of ids the hub gives forwarded messages. */
export function isOriginId(id: bigint): boolean {
  return id < 0n;
}

/**
 * The origin ids of one source partition, without BigInt arithmetic (this runs once per message
 * forwarded): the hash of `site/topic/partition/` is taken once, each offset's digits continue
 * it. The hash: two multiply-xorshift lanes over the UTF-16 code units, each fed the other's
 * state at the end, then MurmurHash3's finalizer. Not cryptographic: it has to spread similar
 * keys (consecutive offsets) apart, fast.
 */
export class OriginIds {
  readonly #a: number;
  readonly #b: number;
  readonly #length: number;

  constructor(site: string, topic: string, partition: number) {
    const prefix = `${site}/${topic}/${partition}/`;
    const lanes = new Int32Array([0x6a09e667, 0xbb67ae85]);
    feed(lanes, prefix);
    this.#a = lanes[0];
    this.#b = lanes[1];
    this.#length = prefix.length;
  }

  /** The id at `offset` as signed 32-bit halves, high first (bit 31 of the high half set). */
  halvesAt(offset: number): [number, number] {
    const digits = String(offset);
    let a = this.#a;
    let b = this.#b;
    for (let i = 0; i < digits.length; i++) {
      const unit = digits.charCodeAt(i);
      a = Math.imul(a ^ unit, 0x01000193);
      a ^= a >>> 13;
      b = Math.imul(b + unit, 0x5bd1e995);
      b ^= b >>> 15;
    }
    const length = this.#length + digits.length;
    a = avalanche(a ^ Math.imul(b, 0x27d4eb2d) ^ length);
    b = avalanche(b ^ Math.imul(a, 0x165667b1));
    return [a | 0x80000000, b | 0];
  }
}

/** The lanes' step over every code unit of `text` (the same as halvesAt's over digits). */
function feed(lanes: Int32Array, text: string): void {
  let a = lanes[0];
  let b = lanes[1];
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    a = Math.imul(a ^ unit, 0x01000193);
    a ^= a >>> 13;
    b = Math.imul(b + unit, 0x5bd1e995);
    b ^= b >>> 15;
  }
  lanes[0] = a;
  lanes[1] = b;
}

/** The final mix of MurmurHash3's 32-bit variant: every input bit reaches every output bit. */
function avalanche(value: number): number {
  let h = value;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h;
}

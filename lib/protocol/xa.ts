/**
 * @module XA codes on the wire: the javax.transaction.xa XAException and XAResource codes that
 * MetaQ's broker puts in `XAException:code=<n>,msg=<text>` replies and in prepare's answer, and
 * that a client parses back. Values only: when each failure happens is the broker's business
 * (lib/broker/tx/), what a client does with it is xa_resource.ts's.
 */

/** javax.transaction.xa.XAException and XAResource codes that MetaQ's broker uses. */
export const XA = {
  /** Prepare's answer: the branch has work and is now prepared. */
  OK: 0,
  /** Prepare's answer: the branch did no work and is already finished. */
  RDONLY: 3,
  /** Heuristically rolled back. */
  HEURRB: 6,
  /** Heuristically committed. */
  HEURCOM: 7,
  /** Heuristically completed (part committed, part rolled back, or forgotten). */
  HEURHAZ: 8,
  /** Rolled back for an unspecified reason (MetaQ: a commit the store could not write). */
  RBOTHER: 104,
  /** The resource manager failed. */
  RMERR: -3,
  /** The XID names no transaction. */
  NOTA: -4,
  /** The call is not allowed in the transaction's state. */
  PROTO: -6,
} as const;

/**
 * @module Assertions for programmer errors. A failed assertion is a bug, never an operating
 * error: it throws, the process exits non-zero, and recovery runs on the next start.
 */

/** Thrown when an invariant does not hold. Never caught to keep serving. */
export class AssertionError extends Error {
  override readonly name = "AssertionError";
}

/** Throws an {@link AssertionError} unless `condition` is truthy. */
export function assert(condition: unknown, message = "Assertion failed"): asserts condition {
  if (!condition) throw new AssertionError(message);
}

/** Marks a branch that the type system proves unreachable. */
export function unreachable(value: never): never {
  throw new AssertionError(`Unreachable: ${String(value)}`);
}

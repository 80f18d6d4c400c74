/** @module A promise with its resolve and reject functions, for completions fed by callbacks. */

export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A rejection nobody awaited must not crash the process; awaiting callers still see it.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/**
 * @module Copying file bytes straight into a TCP socket (Linux `sendfile(2)`), the primitive the
 * original MetaQ serves `get` with. A `get` answered through a buffer costs two copies per byte:
 * page cache into the buffer, then the buffer into the socket. `sendfile` lets the kernel hand
 * the page-cache pages to the socket, so the broker copies nothing (bench/README.md, Consume).
 *
 * No runtime offers this for a node:net socket, so on Bun it is called through `bun:ffi` on the
 * socket's descriptor. Everywhere else (Deno, Node, a libc that will not load) `fileToSocket`
 * is undefined and callers keep the portable path: read into a buffer, write the buffer.
 */

/** Copies up to `length` bytes of file `fileFd` at `position` into socket `socketFd`. */
export type FileToSocket = (
  socketFd: number,
  fileFd: number,
  position: number,
  length: number,
) => number;

/**
 * Bytes the kernel took at once, 0 when the socket is full or the call failed; never blocks on
 * the socket (node:net sockets are non-blocking). Undefined where the runtime cannot do it.
 */
export const fileToSocket: FileToSocket | undefined = loadSendfile();

/**
 * The descriptor of a node:net socket, where the runtime exposes it (Bun's native handle has
 * `fd`); undefined otherwise. Used only together with `fileToSocket`.
 */
export function socketDescriptor(socket: unknown): number | undefined {
  const handle = (socket as { _handle?: { fd?: unknown } } | undefined)?._handle;
  const fd = handle?.fd;
  return typeof fd === "number" && Number.isInteger(fd) && fd >= 0 ? fd : undefined;
}

/** The parts of `bun:ffi` used here; looked up at run time, so Deno needs no Bun types. */
interface BunFfi {
  dlopen(
    library: string,
    symbols: Record<string, { args: string[]; returns: string }>,
  ): { symbols: { sendfile(out: number, input: number, offset: unknown, count: number): unknown } };
  ptr(view: ArrayBufferView): unknown;
}

function loadSendfile(): FileToSocket | undefined {
  if (typeof (globalThis as { Bun?: unknown }).Bun === "undefined") return undefined;
  if ((globalThis as { process?: { platform?: string } }).process?.platform !== "linux") {
    return undefined; // macOS's sendfile has another signature; the portable path serves there
  }
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process
    ?.env;
  if (env?.METAQ_SENDFILE === "0") return undefined; // the portable path, for comparisons
  let ffi: BunFfi;
  let sendfile: (out: number, input: number, offset: unknown, count: number) => unknown;
  try {
    const load = (import.meta as unknown as { require?: (id: string) => unknown }).require;
    if (!load) return undefined;
    ffi = load("bun:ffi") as BunFfi;
    // ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
    sendfile = ffi.dlopen("libc.so.6", {
      sendfile: { args: ["i32", "i32", "ptr", "u64"], returns: "i64" },
    }).symbols.sendfile;
  } catch {
    return undefined; // no glibc (musl, a sandbox without FFI): the portable path serves
  }
  // The kernel reads the file position from here (and advances it there, not in the file's own
  // position, which other readers share): one cell, reused, since calls never overlap.
  const position = new BigInt64Array(1);
  return (socketFd, fileFd, at, length) => {
    position[0] = BigInt(at);
    const sent = Number(sendfile(socketFd, fileFd, ffi.ptr(position), length));
    return sent > 0 ? sent : 0;
  };
}

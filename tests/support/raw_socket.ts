/**
 * @module A raw TCP client for wire-level tests: send exact bytes, read exact bytes back, and
 * notice when the broker closes the connection.
 */
import * as net from "node:net";

export class RawSocket implements Disposable {
  readonly socket: net.Socket;
  // Chunks as they arrived, joined only when a reader looks at them: joining on every chunk
  // copied a 64 MiB frame hundreds of times (tests of the largest message spent seconds here).
  #chunks: Buffer[] = [];
  #length = 0;
  #waiters: (() => void)[] = [];
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#length += chunk.length;
      for (const wake of this.#waiters.splice(0)) wake();
    });
    socket.on("close", () => {
      this.closed = true;
      for (const wake of this.#waiters.splice(0)) wake();
    });
    socket.on("error", () => {});
  }

  static connect(port: number, host = "127.0.0.1"): Promise<RawSocket> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ port, host }, () => resolve(new RawSocket(socket)));
      socket.once("error", reject);
    });
  }

  /** Connects from a chosen local address (another 127.x address, for per-IP limits). */
  static connectFrom(port: number, localAddress: string, host = "127.0.0.1"): Promise<RawSocket> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(
        { port, host, localAddress },
        () => resolve(new RawSocket(socket)),
      );
      socket.once("error", reject);
    });
  }

  write(bytes: string | Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Waits until at least `count` bytes arrived (or the socket closed, or the time ran out). */
  async read(count: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.#length < count && !this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, Math.max(1, deadline - Date.now()));
      });
    }
    const received = this.#joined();
    const taken = received.subarray(0, count);
    this.#keep(received.subarray(taken.length));
    return Buffer.from(taken);
  }

  /** Reads one `result`/`value` frame: header line plus its body. */
  async readFrame(timeoutMs = 5000): Promise<{ header: string; body: Buffer }> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#joined().includes("\r\n") && !this.closed && Date.now() < deadline) {
      await this.#wait(deadline);
    }
    const received = this.#joined();
    const end = received.indexOf("\r\n");
    if (end < 0) throw new Error(`no frame received (closed=${this.closed})`);
    const header = received.subarray(0, end).toString();
    const tokens = header.split(" ");
    const length = Number(tokens[0] === "value" ? tokens[1] : tokens[2]);
    this.#keep(received.subarray(end + 2));
    return { header, body: await this.read(length, Math.max(1, deadline - Date.now())) };
  }

  /** Resolves true once the broker closed the connection, false after the timeout. */
  async waitClosed(timeoutMs = 3000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await this.#wait(deadline);
    return this.closed;
  }

  /** Everything received and not yet read, as one buffer. */
  #joined(): Buffer {
    if (this.#chunks.length !== 1) this.#keep(Buffer.concat(this.#chunks, this.#length));
    return this.#chunks[0];
  }

  #keep(rest: Buffer): void {
    this.#chunks = [rest];
    this.#length = rest.length;
  }

  #wait(deadline: number): Promise<void> {
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      setTimeout(resolve, Math.max(1, Math.min(50, deadline - Date.now())));
    });
  }

  [Symbol.dispose](): void {
    this.socket.destroy();
  }
}

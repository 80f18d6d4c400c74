/**
 * @module PeerTransport: byte frames between cluster nodes over TCP (node:net). Each node dials
 * every other node for its outgoing traffic and accepts their connections for incoming
 * traffic, so every direction of every pair is one connection (the fault harness puts a proxy
 * on each). Frames are `u32 length | u32 crc32(payload) | payload`; a bad CRC or an oversized
 * frame closes the connection. Delivery is best effort, as Raft expects: a message to a peer
 * that is down, or whose link is backed up past a bound, is dropped, never buffered without end.
 * Knows nothing of Raft: payloads are opaque.
 */
import * as net from "node:net";
import { crc32 } from "../crc32.ts";
import { describeError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { PeerAddress } from "./cluster_config.ts";

export const PEER_FRAME_BYTES_MAX = 64 * 1024 * 1024;
/** Outgoing bytes buffered for one peer; beyond it, messages to that peer are dropped. */
export const PEER_BUFFER_BYTES_MAX = 32 * 1024 * 1024;
const RECONNECT_DELAYS_MS = [50, 100, 200, 400, 800, 1000];
const HANDSHAKE_MAGIC = "metaq-peer/1";

export interface PeerTransportOptions {
  readonly nodeId: number;
  readonly host: string;
  readonly port: number;
  readonly peers: readonly PeerAddress[];
  readonly logger: Logger;
  /** Called for every verified frame from a peer. */
  readonly onFrame: (from: number, payload: Uint8Array) => void;
  /** Called when a peer's outgoing link comes up (for example to resend state). */
  readonly onConnected?: (peer: number) => void;
}

interface Outgoing {
  readonly peer: PeerAddress;
  socket: net.Socket | undefined;
  connected: boolean;
  attempts: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  queue: Uint8Array[];
  flushScheduled: boolean;
  dropped: number;
}

export class PeerTransport {
  readonly #options: PeerTransportOptions;
  readonly #server: net.Server;
  readonly #outgoing = new Map<number, Outgoing>();
  readonly #incoming = new Set<net.Socket>();
  #closed = false;

  constructor(options: PeerTransportOptions) {
    this.#options = options;
    this.#server = net.createServer({ noDelay: true }, (socket) => this.#accept(socket));
    for (const peer of options.peers) {
      if (peer.id === options.nodeId) continue;
      this.#outgoing.set(peer.id, {
        peer,
        socket: undefined,
        connected: false,
        attempts: 0,
        timer: undefined,
        queue: [],
        flushScheduled: false,
        dropped: 0,
      });
    }
  }

  /** Starts listening and dialing; resolves with the bound peer port. */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(this.#options.port, this.#options.host, () => {
        this.#server.off("error", reject);
        for (const outgoing of this.#outgoing.values()) this.#dial(outgoing);
        resolve((this.#server.address() as net.AddressInfo).port);
      });
    });
  }

  /** Whether the outgoing link to `peer` is up. */
  isConnected(peer: number): boolean {
    return this.#outgoing.get(peer)?.connected ?? false;
  }

  /** Messages dropped for `peer` because its link was down or backed up. */
  droppedCount(peer: number): number {
    return this.#outgoing.get(peer)?.dropped ?? 0;
  }

  /** Queues `payload` for `peer`; frames sent in one turn leave in one write. */
  send(peer: number, payload: Uint8Array): void {
    const outgoing = this.#outgoing.get(peer);
    if (!outgoing || this.#closed) return;
    const socket = outgoing.socket;
    if (!outgoing.connected || !socket || socket.writableLength > PEER_BUFFER_BYTES_MAX) {
      outgoing.dropped += 1;
      return;
    }
    outgoing.queue.push(frame(payload));
    if (!outgoing.flushScheduled) {
      outgoing.flushScheduled = true;
      queueMicrotask(() => this.#flush(outgoing));
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const outgoing of this.#outgoing.values()) {
      if (outgoing.timer) clearTimeout(outgoing.timer);
      outgoing.socket?.destroy();
    }
    for (const socket of this.#incoming) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #flush(outgoing: Outgoing): void {
    outgoing.flushScheduled = false;
    const queue = outgoing.queue;
    outgoing.queue = [];
    if (!outgoing.connected || !outgoing.socket || queue.length === 0) return;
    outgoing.socket.write(queue.length === 1 ? queue[0] : join(queue));
  }

  #dial(outgoing: Outgoing): void {
    if (this.#closed) return;
    const { peer } = outgoing;
    const socket = net.createConnection({ host: peer.host, port: peer.port, noDelay: true });
    outgoing.socket = socket;
    socket.on("connect", () => {
      outgoing.connected = true;
      outgoing.attempts = 0;
      socket.write(frame(new TextEncoder().encode(`${HANDSHAKE_MAGIC} ${this.#options.nodeId}`)));
      this.#options.onConnected?.(peer.id);
    });
    socket.on("data", () => {}); // peers never answer on our outgoing link
    socket.on("error", () => {});
    socket.on("close", () => {
      outgoing.connected = false;
      outgoing.socket = undefined;
      if (this.#closed) return;
      const delay =
        RECONNECT_DELAYS_MS[Math.min(outgoing.attempts++, RECONNECT_DELAYS_MS.length - 1)];
      outgoing.timer = setTimeout(() => this.#dial(outgoing), delay);
    });
  }

  #accept(socket: net.Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    this.#incoming.add(socket);
    socket.setNoDelay(true);
    let from: number | undefined;
    const reader = new FrameReader();
    socket.on("data", (chunk: Uint8Array) => {
      let frames: Uint8Array[];
      try {
        frames = reader.push(chunk);
      } catch (error) {
        this.#options.logger.log("warn", "Closing peer link: bad frame", {
          peer: from,
          reason: describeError(error),
        });
        socket.destroy();
        return;
      }
      for (const payload of frames) {
        if (from === undefined) {
          from = parseHandshake(payload, this.#options.peers);
          if (from === undefined) {
            this.#options.logger.log("warn", "Closing peer link: unknown node", {
              remote: socket.remoteAddress,
            });
            return socket.destroy();
          }
          continue;
        }
        this.#options.onFrame(from, payload);
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => this.#incoming.delete(socket));
  }
}

/** Splits a byte stream into verified frames. */
export class FrameReader {
  #buffer: Uint8Array = new Uint8Array(0);

  push(chunk: Uint8Array): Uint8Array[] {
    this.#buffer = this.#buffer.length === 0 ? chunk : concat(this.#buffer, chunk);
    const frames: Uint8Array[] = [];
    let position = 0;
    while (this.#buffer.length - position >= 8) {
      const view = new DataView(this.#buffer.buffer, this.#buffer.byteOffset + position, 8);
      const length = view.getUint32(0);
      const checksum = view.getUint32(4);
      if (length > PEER_FRAME_BYTES_MAX) {
        throw new Error(`frame of ${length} bytes exceeds the limit`);
      }
      if (this.#buffer.length - position - 8 < length) break;
      const payload = this.#buffer.subarray(position + 8, position + 8 + length);
      if (crc32(payload) !== checksum) throw new Error("frame checksum mismatch");
      frames.push(payload);
      position += 8 + length;
    }
    this.#buffer = position === this.#buffer.length
      ? new Uint8Array(0)
      : this.#buffer.subarray(position);
    return frames;
  }
}

export function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, payload.length);
  view.setUint32(4, crc32(payload));
  out.set(payload, 8);
  return out;
}

function parseHandshake(payload: Uint8Array, peers: readonly PeerAddress[]): number | undefined {
  const [magic, id] = new TextDecoder().decode(payload).split(" ");
  if (magic !== HANDSHAKE_MAGIC) return undefined;
  const nodeId = Number(id);
  return peers.some((peer) => peer.id === nodeId) ? nodeId : undefined;
}

function join(parts: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const part of parts) total += part.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

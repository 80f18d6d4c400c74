/**
 * @module PeerTransport: byte frames between cluster nodes over TCP (node:net). Each node dials
 * every other node for its outgoing traffic and accepts their connections for incoming
 * traffic, so every direction of every pair is one connection (the fault harness puts a proxy
 * on each). Frames are `u32 length | u32 crc32(payload) | payload`; a bad CRC or an oversized
 * frame closes the connection. Delivery is best effort, as Raft expects: a message to a peer
 * that is down, or whose link is backed up past a bound, is dropped, never buffered without end.
 * Knows nothing of Raft: payloads are opaque.
 *
 * Before any frame is delivered, both ends prove they hold the cluster secret
 * (lib/security/peer_auth.ts); with TLS material the links are also mutual TLS.
 */
import * as net from "node:net";
import * as tls from "node:tls";
import { crc32 } from "../crc32.ts";
import { crc32ContinueParts } from "./referenced_crc.ts";
import { describeError } from "../errors.ts";
import { PEER_BUFFER_BYTES_MAX, PEER_FRAME_BYTES_MAX } from "../limits.ts";
import type { Logger } from "../log.ts";
import {
  decodeChallenge,
  decodeHello,
  encodeChallenge,
  encodeHello,
  type Hello,
  newNonce,
  peerProof,
  proofsEqual,
} from "../security/peer_auth.ts";
import type { TlsFiles } from "../security/tls.ts";
import type { PeerAddress } from "./cluster_config.ts";
import { concatBytes } from "../bytes.ts";
import type { PeerHandlers, PeerNetwork } from "./peer_network.ts";

export { PEER_FRAME_BYTES_MAX };
const RECONNECT_DELAYS_MS = [50, 100, 200, 400, 800, 1000];
/** A link that has not finished the handshake in this time is closed. */
const HANDSHAKE_TIMEOUT_MS = 5000;
/** Handshake frames are short lines; anything longer is not a handshake. */
const HANDSHAKE_FRAME_BYTES_MAX = 256;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The handlers (PeerHandlers) are called for verified frames only. */
export interface PeerTransportOptions extends PeerHandlers {
  readonly nodeId: number;
  readonly host: string;
  readonly port: number;
  readonly peers: readonly PeerAddress[];
  readonly logger: Logger;
  /** The cluster secret both ends of every link prove; undefined: an empty key (no identity). */
  readonly secret?: string;
  /** Mutual TLS on every link with this certificate, key and CA. */
  readonly tls?: TlsFiles;
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

export class PeerTransport implements PeerNetwork {
  readonly #options: PeerTransportOptions;
  readonly #server: net.Server;
  readonly #outgoing = new Map<number, Outgoing>();
  /** Incoming links, with the node each one proved to be (undefined during its handshake). */
  readonly #incoming = new Map<net.Socket, number | undefined>();
  #closed = false;

  constructor(options: PeerTransportOptions) {
    this.#options = options;
    const secure = options.tls;
    this.#server = secure
      ? tls.createServer({
        cert: secure.cert,
        key: secure.key,
        ca: secure.ca,
        requestCert: true,
        rejectUnauthorized: true,
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      }, (socket) => this.#accept(socket))
      : net.createServer({ noDelay: true }, (socket) => this.#accept(socket));
    if (secure) this.#server.on("tlsClientError", () => {});
    for (const peer of options.peers) {
      if (peer.id !== options.nodeId) this.#outgoing.set(peer.id, newOutgoing(peer));
    }
  }

  /**
   * The nodes to dial from now on (the cluster's members changed): new ones are dialed, links
   * to nodes no longer listed are closed, a node at a new address is dialed there.
   */
  setPeers(peers: readonly PeerAddress[]): void {
    if (this.#closed) return;
    const wanted = new Map(
      peers.filter((peer) => peer.id !== this.#options.nodeId).map((peer) => [peer.id, peer]),
    );
    for (const [id, outgoing] of [...this.#outgoing]) {
      const peer = wanted.get(id);
      if (peer && peer.host === outgoing.peer.host && peer.port === outgoing.peer.port) continue;
      if (outgoing.timer) clearTimeout(outgoing.timer);
      outgoing.socket?.destroy();
      this.#outgoing.delete(id);
    }
    for (const [id, peer] of wanted) {
      if (this.#outgoing.has(id)) continue;
      const outgoing = newOutgoing(peer);
      this.#outgoing.set(id, outgoing);
      if (this.#server.listening) this.#dial(outgoing);
    }
  }

  /** The nodes this transport dials. */
  get peerIds(): number[] {
    return [...this.#outgoing.keys()].sort((a, b) => a - b);
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

  /**
   * Whether a frame for `peer` would be taken now (see send): callers ask before they encode a
   * large message, so a backed-up link does not cost a copy of every message it drops.
   */
  canSend(peer: number, mustDeliver = false): boolean {
    const outgoing = this.#outgoing.get(peer);
    if (!outgoing || this.#closed || !outgoing.connected || !outgoing.socket) return false;
    const room = PEER_BUFFER_BYTES_MAX + (mustDeliver ? PEER_FRAME_BYTES_MAX : 0);
    return outgoing.socket.writableLength <= room;
  }

  /** Messages dropped for `peer` because its link was down or backed up. */
  droppedCount(peer: number): number {
    return this.#outgoing.get(peer)?.dropped ?? 0;
  }

  /**
   * Queues `payload` for `peer`; frames sent in one turn leave in one write. Returns false when
   * it was dropped: the link is down, or backed up past PEER_BUFFER_BYTES_MAX (Raft sends again
   * what was dropped); a frame nobody sends again (`mustDeliver`: a forwarded request or its
   * reply) is dropped only past room for one more largest frame, which bounds memory.
   */
  send(peer: number, payload: Uint8Array, mustDeliver = false): boolean {
    const framed = new Uint8Array(PEER_FRAME_HEADER_BYTES + payload.length);
    framed.set(payload, PEER_FRAME_HEADER_BYTES);
    return this.sendFramed(peer, framed, mustDeliver);
  }

  /**
   * Like send, for a payload already placed after PEER_FRAME_HEADER_BYTES free bytes of
   * `framed` (the header is written in place): a large payload is not copied again. `framed`
   * may be a list of parts, the payload continuing from the first into the others (large
   * entries referenced, not copied: see encodeEnvelopeParts); they must not change until sent.
   */
  sendFramed(
    peer: number,
    framed: Uint8Array | readonly Uint8Array[],
    mustDeliver = false,
  ): boolean {
    const outgoing = this.#outgoing.get(peer);
    if (!outgoing || !this.canSend(peer, mustDeliver)) {
      if (outgoing) outgoing.dropped += 1;
      return false;
    }
    if (framed instanceof Uint8Array) {
      writeFrameHeader(framed);
      outgoing.queue.push(framed);
    } else {
      writeFrameHeader(framed[0], framed.slice(1));
      outgoing.queue.push(...framed);
    }
    if (!outgoing.flushScheduled) {
      outgoing.flushScheduled = true;
      queueMicrotask(() => this.#flush(outgoing));
    }
    return true;
  }

  /** Drops the outgoing link to `peer` and dials it again (see PeerNetwork.redial). */
  redial(peer: number): void {
    const outgoing = this.#outgoing.get(peer);
    if (this.#closed || !outgoing?.connected || !outgoing.socket) return;
    // A reset, not a close: the kernel drops the bytes it still holds for the old connection
    // instead of retransmitting them to the peer later (a forwarded request the forwarder has
    // given up on and sent elsewhere). Its 'close' dials again.
    resetAndDestroy(outgoing.socket);
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const outgoing of this.#outgoing.values()) {
      if (outgoing.timer) clearTimeout(outgoing.timer);
      outgoing.socket?.destroy();
    }
    for (const socket of this.#incoming.keys()) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #flush(outgoing: Outgoing): void {
    outgoing.flushScheduled = false;
    const queue = outgoing.queue;
    outgoing.queue = [];
    const socket = outgoing.socket;
    if (!outgoing.connected || !socket || queue.length === 0) return;
    // Small frames and parts of one turn are joined into one write; a large one is written
    // alone, never copied in JavaScript. Corked, several writes leave in one send, so a frame's
    // header part does not travel as a packet of its own (a wake-up of the peer for nothing it
    // can use); but the runtime joins corked writes into one new buffer (Bun's net: a
    // Buffer.concat in _writev), which for a 1 MiB entry costs ~90 us per follower and an
    // allocation of its size: more than the peer's extra wake-up. So a turn's writes are corked
    // only while they are small enough to copy cheaply.
    let queuedBytes = 0;
    for (const part of queue) queuedBytes += part.length;
    const corked = queue.length > 1 && queuedBytes <= CORKED_BYTES_MAX &&
      queue.some((part) => part.length >= LARGE_PART_BYTES);
    if (corked) socket.cork();
    let small: Uint8Array[] = [];
    const writeSmall = () => {
      if (small.length === 0) return;
      socket.write(small.length === 1 ? small[0] : concatBytes(small));
      small = [];
    };
    for (const part of queue) {
      if (part.length < LARGE_PART_BYTES) {
        small.push(part);
        continue;
      }
      writeSmall();
      socket.write(part);
    }
    writeSmall();
    if (corked) socket.uncork();
  }

  #dial(outgoing: Outgoing): void {
    if (this.#closed || this.#outgoing.get(outgoing.peer.id) !== outgoing) return;
    const { peer } = outgoing;
    const secure = this.#options.tls;
    const socket = secure
      ? tls.connect({
        host: peer.host,
        port: peer.port,
        cert: secure.cert,
        key: secure.key,
        ca: secure.ca,
        // Nodes are named by address in `peers`, not by certificate name: the CA and the
        // cluster secret prove who they are.
        checkServerIdentity: () => undefined,
      })
      : net.createConnection({ host: peer.host, port: peer.port, noDelay: true });
    outgoing.socket = socket;
    const hello: Hello = { from: this.#options.nodeId, to: peer.id, nonce: newNonce() };
    const reader = new FrameReader(HANDSHAKE_FRAME_BYTES_MAX);
    let proven = false;
    const timer = setTimeout(() => socket.destroy(), HANDSHAKE_TIMEOUT_MS);
    socket.on(secure ? "secureConnect" : "connect", () => {
      socket.setNoDelay(true);
      socket.write(frame(encoder.encode(encodeHello(hello))));
    });
    socket.on("data", (chunk: Uint8Array) => {
      if (proven) return; // peers never answer on our outgoing link after the handshake
      let frames: Uint8Array[];
      try {
        frames = reader.push(chunk);
      } catch {
        return void socket.destroy();
      }
      if (frames.length === 0) return;
      const challenge = decodeChallenge(decoder.decode(frames[0]));
      const secret = this.#options.secret ?? "";
      if (
        !challenge ||
        !proofsEqual(peerProof(secret, "accept", hello, challenge.nonce), challenge.proof)
      ) {
        this.#options.logger.log(
          "warn",
          "Closing peer link: the peer did not prove the cluster secret",
          {
            peer: peer.id,
          },
        );
        return void socket.destroy();
      }
      proven = true;
      clearTimeout(timer);
      socket.write(frame(encoder.encode(peerProof(secret, "dial", hello, challenge.nonce))));
      outgoing.connected = true;
      outgoing.attempts = 0;
      this.#options.onConnected?.(peer.id);
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      outgoing.connected = false;
      outgoing.socket = undefined;
      // Closed for good, or dropped from the peers (setPeers): no redial.
      if (this.#closed || this.#outgoing.get(peer.id) !== outgoing) return;
      const delay =
        RECONNECT_DELAYS_MS[Math.min(outgoing.attempts++, RECONNECT_DELAYS_MS.length - 1)];
      outgoing.timer = setTimeout(() => this.#dial(outgoing), delay);
    });
  }

  /**
   * `socket` is now node `from`'s link here: an older one from that node is gone on its side
   * (it dials one link per peer), so it is closed here too, and bytes a stalled connection
   * still had on their way are not read after the new link's.
   */
  #supersede(socket: net.Socket, from: number): void {
    for (const [other, node] of this.#incoming) {
      if (other !== socket && node === from) {
        this.#incoming.delete(other);
        other.destroy();
      }
    }
    this.#incoming.set(socket, from);
  }

  #accept(socket: net.Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    this.#incoming.set(socket, undefined);
    socket.setNoDelay(true);
    let from: number | undefined;
    let hello: Hello | undefined;
    let listenerNonce = "";
    const reader = new FrameReader();
    const timer = setTimeout(() => {
      if (from === undefined) socket.destroy();
    }, HANDSHAKE_TIMEOUT_MS);
    const refuse = (reason: string) => {
      this.#options.logger.log("warn", "Closing peer link: handshake refused", {
        remote: socket.remoteAddress,
        reason,
      });
      socket.destroy();
    };
    socket.on("data", (chunk: Uint8Array) => {
      reader.append(chunk);
      while (!socket.destroyed) {
        let payload: Uint8Array | undefined;
        try {
          // Until the handshake is done only short frames are read, so a stranger cannot make
          // this node buffer a large one.
          payload = reader.next(from === undefined ? HANDSHAKE_FRAME_BYTES_MAX : undefined);
        } catch (error) {
          this.#options.logger.log("warn", "Closing peer link: bad frame", {
            peer: from,
            reason: describeError(error),
          });
          socket.destroy();
          return;
        }
        if (!payload) {
          if (from !== undefined && reader.inFrame) this.#options.onFrameProgress?.(from);
          return;
        }
        if (from !== undefined) {
          this.#options.onFrame(from, payload);
          continue;
        }
        const secret = this.#options.secret ?? "";
        if (!hello) {
          hello = decodeHello(decoder.decode(payload));
          if (!hello || hello.to !== this.#options.nodeId) return refuse("not a metaq peer hello");
          const claimed = hello.from;
          // Any node that proves the cluster secret may send here, listed or not: a node
          // joining the cluster is heard before anyone dials it.
          if (claimed === this.#options.nodeId || !Number.isInteger(claimed) || claimed < 1) {
            return refuse(`node ${claimed} cannot be a peer`);
          }
          listenerNonce = newNonce();
          const proof = peerProof(secret, "accept", hello, listenerNonce);
          socket.write(frame(encoder.encode(encodeChallenge(listenerNonce, proof))));
          continue;
        }
        const expected = peerProof(secret, "dial", hello, listenerNonce);
        if (!proofsEqual(expected, decoder.decode(payload))) {
          return refuse(`node ${hello.from} did not prove the cluster secret`);
        }
        from = hello.from;
        clearTimeout(timer);
        this.#supersede(socket, from);
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      this.#incoming.delete(socket);
    });
  }
}

/**
 * Splits a byte stream into verified frames. Chunks are kept as they arrive and copied once,
 * when a whole frame is there: a large frame (a replicated 64 MiB record) arrives in thousands
 * of chunks, and joining them one by one would copy it thousands of times.
 */
export class FrameReader {
  #chunks: Uint8Array[] = [];
  /** Bytes of the first chunk already taken. */
  #position = 0;
  /** Bytes buffered and not yet taken. */
  #buffered = 0;
  readonly #frameBytesMax: number;

  constructor(frameBytesMax = PEER_FRAME_BYTES_MAX) {
    this.#frameBytesMax = frameBytesMax;
  }

  /** Every verified frame completed by `chunk`. Throws on a bad checksum or length. */
  push(chunk: Uint8Array): Uint8Array[] {
    this.append(chunk);
    const frames: Uint8Array[] = [];
    for (let payload = this.next(); payload; payload = this.next()) frames.push(payload);
    return frames;
  }

  append(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
  }

  /** Whether part of a frame is buffered (a frame is arriving). */
  get inFrame(): boolean {
    return this.#buffered > 0;
  }

  /** The next complete frame, or undefined; `frameBytesMax` may tighten the limit for it. */
  next(frameBytesMax = this.#frameBytesMax): Uint8Array | undefined {
    if (this.#buffered < 8) return undefined;
    const header = this.#peek(8);
    const view = new DataView(header.buffer, header.byteOffset, 8);
    const length = view.getUint32(0);
    const checksum = view.getUint32(4);
    if (length > frameBytesMax) throw new Error(`frame of ${length} bytes exceeds the limit`);
    if (this.#buffered - 8 < length) return undefined;
    this.#take(8);
    const payload = this.#take(length);
    if (crc32(payload) !== checksum) throw new Error("frame checksum mismatch");
    return payload;
  }

  /** The first `count` buffered bytes, left in the buffer. */
  #peek(count: number): Uint8Array {
    const first = this.#chunks[0];
    if (first.length - this.#position >= count) {
      return first.subarray(this.#position, this.#position + count);
    }
    const out = new Uint8Array(count);
    let filled = 0;
    let position = this.#position;
    for (const chunk of this.#chunks) {
      const part = chunk.subarray(position, position + (count - filled));
      out.set(part, filled);
      filled += part.length;
      position = 0;
      if (filled === count) break;
    }
    return out;
  }

  /** Takes the first `count` buffered bytes (a view when they lie in one chunk, else a copy). */
  #take(count: number): Uint8Array {
    const first = this.#chunks[0];
    if (count === 0) return new Uint8Array(0);
    if (first.length - this.#position >= count) {
      const view = first.subarray(this.#position, this.#position + count);
      this.#consume(count);
      return view;
    }
    const out = new Uint8Array(count);
    let filled = 0;
    while (filled < count) {
      const chunk = this.#chunks[0];
      const part = chunk.subarray(this.#position, this.#position + (count - filled));
      out.set(part, filled);
      filled += part.length;
      this.#consume(part.length);
    }
    return out;
  }

  #consume(count: number): void {
    this.#position += count;
    this.#buffered -= count;
    if (this.#position === this.#chunks[0].length) {
      this.#chunks.shift();
      this.#position = 0;
    }
  }
}

/**
 * Closes `socket` with a reset where the runtime offers one, else with a plain close. TLS links
 * close plainly: the reset was only tried here on plain TCP sockets (under Bun).
 */
function resetAndDestroy(socket: net.Socket): void {
  try {
    if (typeof socket.resetAndDestroy === "function" && !(socket instanceof tls.TLSSocket)) {
      socket.resetAndDestroy();
      return;
    }
  } catch {
    // fall through to a plain close
  }
  socket.destroy();
}

/** A frame or part this large is written on its own (joining it with others would copy it). */
const LARGE_PART_BYTES = 16 * 1024;
/** Most bytes of one turn's writes that are corked (joined by the runtime: see #flush). */
const CORKED_BYTES_MAX = 256 * 1024;

/** Bytes before a frame's payload: its length and the CRC-32 of the payload. */
export const PEER_FRAME_HEADER_BYTES = 8;

export function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(PEER_FRAME_HEADER_BYTES + payload.length);
  out.set(payload, PEER_FRAME_HEADER_BYTES);
  writeFrameHeader(out);
  return out;
}

/**
 * Fills in the header of a frame whose payload follows its first PEER_FRAME_HEADER_BYTES and
 * continues in `more`, if any.
 */
function writeFrameHeader(framed: Uint8Array, more: readonly Uint8Array[] = []): void {
  const payload = framed.subarray(PEER_FRAME_HEADER_BYTES);
  let length = payload.length;
  for (const part of more) length += part.length;
  const crc = crc32ContinueParts(more, crc32(payload));
  const view = new DataView(framed.buffer, framed.byteOffset, PEER_FRAME_HEADER_BYTES);
  view.setUint32(0, length);
  view.setUint32(4, crc);
}

function newOutgoing(peer: PeerAddress): Outgoing {
  return {
    peer,
    socket: undefined,
    connected: false,
    attempts: 0,
    timer: undefined,
    queue: [],
    flushScheduled: false,
    dropped: 0,
  };
}

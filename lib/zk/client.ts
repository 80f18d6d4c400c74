/**
 * @module A small ZooKeeper client: one session kept across connection losses and server
 * changes, requests answered in order, one-shot watches re-armed on the server after a reconnect
 * (setWatches), and a new session started by itself when the old one expires (as zkclient, the
 * library MetaQ's brokers use, does), announced so owners can re-register their ephemeral nodes.
 *
 * Why not a library: the native `zookeeper` addon does not load in Bun, and the pure-JavaScript
 * `node-zookeeper-client` has had no functional change since 2019 (dependency bumps only), is
 * callback-based with two runtime dependencies and leaves session expiry to its caller. metaq
 * needs ten operations; their codec (protocol.ts) is small and tested byte for byte.
 *
 * Paths are absolute; a connect string may end in a chroot (`h1:2181,h2:2181/apps/meta`), which
 * is prefixed to every path sent and removed from every path received, as ZooKeeper's own client
 * does.
 */
import * as net from "node:net";
import type { Logger } from "../log.ts";
import { silentLogger } from "../log.ts";
import {
  type ConnectResponse,
  type CreateMode,
  decodeConnectResponse,
  decodeReply,
  decodeStat,
  decodeWatchEvent,
  encodeConnectRequest,
  encodeRequest,
  EVENT,
  FrameSplitter,
  type Request,
  type Stat,
  XID,
  ZK_CODES,
  ZkError,
} from "./protocol.ts";

export interface ZkClientOptions {
  /** `host:port[,host:port...][/chroot]`. */
  readonly connect: string;
  readonly sessionTimeoutMs: number;
  /** How long `open` waits for the first session (zk.zkConnectionTimeoutMs). */
  readonly connectionTimeoutMs: number;
  readonly logger?: Logger;
}

/**
 * `session`: a new session (the first, or one after expiry: ephemeral nodes and watches of the
 * old one are gone). `reconnected`: the same session on a new connection. `disconnected`: the
 * connection dropped; the session may still live. `expired`: the server said the session is gone.
 */
export type ZkState = "session" | "reconnected" | "disconnected" | "expired";

export interface WatchedEvent {
  /** created, deleted, dataChanged or childrenChanged. */
  readonly type: "created" | "deleted" | "dataChanged" | "childrenChanged";
  readonly path: string;
}
export type Watcher = (event: WatchedEvent) => void;

interface Pending {
  readonly request: Request;
  readonly resolve: (reply: ReturnType<typeof decodeReply>) => void;
  readonly reject: (error: Error) => void;
}

interface Server {
  readonly host: string;
  readonly port: number;
}

/** Pause between connection attempts, growing to this bound. */
const RETRY_DELAY_MS_MIN = 50;
const RETRY_DELAY_MS_MAX = 1000;
const EVENT_NAMES = {
  [EVENT.nodeCreated]: "created",
  [EVENT.nodeDeleted]: "deleted",
  [EVENT.nodeDataChanged]: "dataChanged",
  [EVENT.nodeChildrenChanged]: "childrenChanged",
} as const;

export class ZkClient {
  readonly #servers: readonly Server[];
  readonly #chroot: string;
  readonly #options: ZkClientOptions;
  readonly #logger: Logger;
  #sessionId = 0n;
  #password: Uint8Array = new Uint8Array(16);
  #lastZxid = 0n;
  #negotiatedTimeoutMs: number;
  #socket: net.Socket | undefined;
  #connected = false;
  #closed = false;
  #xid = 1;
  #serverIndex = 0;
  /** Requests sent on the current connection, in order; replies come back in the same order. */
  readonly #inFlight = new Map<number, Pending>();
  /** Requests made while no connection was up: sent once one is. */
  #queued: { xid: number; pending: Pending }[] = [];
  readonly #dataWatches = new Map<string, Set<Watcher>>();
  readonly #existWatches = new Map<string, Set<Watcher>>();
  readonly #childWatches = new Map<string, Set<Watcher>>();
  readonly #listeners = new Set<(state: ZkState) => void>();
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #lastReceivedMs = 0;
  #lastSentMs = 0;
  #firstSession = Promise.withResolvers<void>();
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;

  private constructor(options: ZkClientOptions) {
    const { servers, chroot } = parseConnectString(options.connect);
    this.#servers = shuffled(servers);
    this.#chroot = chroot;
    this.#options = options;
    this.#negotiatedTimeoutMs = options.sessionTimeoutMs;
    this.#logger = options.logger ?? silentLogger;
  }

  /** Connects and waits for a session, or fails after `connectionTimeoutMs`. */
  static async open(options: ZkClientOptions): Promise<ZkClient> {
    const client = new ZkClient(options);
    client.#loop = client.#run();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `Cannot connect to ZooKeeper at ${options.connect}: no session within ` +
                `${options.connectionTimeoutMs} ms`,
            ),
          ),
        options.connectionTimeoutMs,
      );
    });
    try {
      await Promise.race([client.#firstSession.promise, timeout]);
    } catch (error) {
      await client.close();
      throw error;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  /** The current session's id (0 before the first). */
  get sessionId(): bigint {
    return this.#sessionId;
  }

  /** The session's password: with the id it lets another connection resume (or end) it. */
  get sessionPassword(): Uint8Array {
    return this.#password.slice();
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** The session timeout the server granted. */
  get sessionTimeoutMs(): number {
    return this.#negotiatedTimeoutMs;
  }

  /** Calls `listener` on every state change; returns a function that stops it. */
  onState(listener: (state: ZkState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Creates a node and returns its path (with the sequence number for sequential modes). */
  async create(path: string, data: string | Uint8Array | null, mode: CreateMode): Promise<string> {
    const reply = await this.#call({
      op: "create",
      path: this.#full(path),
      data: bytes(data),
      mode,
    });
    return this.#relative(reply.body.string());
  }

  /** Deletes a node; `version` -1 matches any version. */
  async delete(path: string, version = -1): Promise<void> {
    await this.#call({ op: "delete", path: this.#full(path), version });
  }

  /** The node's Stat, or undefined when it does not exist; `watcher` fires on its next change. */
  async exists(path: string, watcher?: Watcher): Promise<Stat | undefined> {
    const full = this.#full(path);
    try {
      const reply = await this.#call({ op: "exists", path: full, watch: watcher !== undefined });
      if (watcher) addWatch(this.#dataWatches, full, watcher);
      return decodeStat(reply.body);
    } catch (error) {
      if (!(error instanceof ZkError) || error.code !== ZK_CODES.noNode) throw error;
      if (watcher) addWatch(this.#existWatches, full, watcher);
      return undefined;
    }
  }

  async getData(
    path: string,
    watcher?: Watcher,
  ): Promise<{ data: Uint8Array | null; stat: Stat }> {
    const full = this.#full(path);
    const reply = await this.#call({ op: "getData", path: full, watch: watcher !== undefined });
    if (watcher) addWatch(this.#dataWatches, full, watcher);
    return { data: reply.body.buffer(), stat: decodeStat(reply.body) };
  }

  async setData(path: string, data: string | Uint8Array | null, version = -1): Promise<Stat> {
    const reply = await this.#call({
      op: "setData",
      path: this.#full(path),
      data: bytes(data),
      version,
    });
    return decodeStat(reply.body);
  }

  async getChildren(path: string, watcher?: Watcher): Promise<string[]> {
    const full = this.#full(path);
    const reply = await this.#call({ op: "getChildren", path: full, watch: watcher !== undefined });
    if (watcher) addWatch(this.#childWatches, full, watcher);
    return reply.body.strings();
  }

  /** Waits until the server this client talks to has caught up with the leader. */
  async sync(path: string): Promise<void> {
    await this.#call({ op: "sync", path: this.#full(path) });
  }

  /** Ends the session (its ephemeral nodes go at once) and the connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#connected) {
      await Promise.race([
        this.#call({ op: "closeSession" }).catch(() => {}),
        new Promise((resolve) => setTimeout(resolve, 2000)),
      ]);
    }
    this.#closed = true;
    this.#socket?.destroy();
    this.#wake?.();
    this.#failAll(new ZkError(ZK_CODES.connectionLoss));
    await this.#loop;
  }

  /** Drops the connection without ending the session (tests of reconnection). */
  dropConnection(): void {
    this.#socket?.destroy();
  }

  #call(request: Request): Promise<ReturnType<typeof decodeReply>> {
    if (this.#closed) return Promise.reject(new ZkError(ZK_CODES.connectionLoss));
    const { promise, resolve, reject } = Promise.withResolvers<ReturnType<typeof decodeReply>>();
    const pending: Pending = { request, resolve, reject };
    const xid = this.#xid++;
    if (this.#xid > 0x7fffffff) this.#xid = 1;
    if (this.#connected && this.#socket) this.#send(xid, pending);
    else this.#queued.push({ xid, pending });
    return promise;
  }

  #send(xid: number, pending: Pending): void {
    this.#inFlight.set(xid, pending);
    this.#write(encodeRequest(xid, pending.request));
  }

  #write(frame: Uint8Array): void {
    this.#lastSentMs = performance.now();
    this.#socket?.write(frame);
  }

  /** Connects, serves the connection until it drops, and tries again until closed. */
  async #run(): Promise<void> {
    let delayMs = RETRY_DELAY_MS_MIN;
    while (!this.#closed) {
      const server = this.#servers[this.#serverIndex++ % this.#servers.length];
      try {
        await this.#serve(server);
        delayMs = RETRY_DELAY_MS_MIN;
      } catch (error) {
        this.#logger.log("debug", "zookeeper connection failed", {
          server: `${server.host}:${server.port}`,
          error: error instanceof Error ? error.message : String(error),
        });
      }
      if (this.#closed) break;
      // Try every server quickly, then back off (bounded) before the next round.
      if (this.#serverIndex % this.#servers.length === 0) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          setTimeout(resolve, delayMs);
        });
        delayMs = Math.min(delayMs * 2, RETRY_DELAY_MS_MAX);
      }
    }
  }

  async #serve(server: Server): Promise<void> {
    const socket = await connectSocket(server, this.#options.connectionTimeoutMs);
    if (this.#closed) {
      socket.destroy();
      return;
    }
    this.#socket = socket;
    const splitter = new FrameSplitter();
    const ended = Promise.withResolvers<void>();
    let handshake: PromiseWithResolvers<ConnectResponse> | undefined = Promise.withResolvers();
    socket.on("data", (chunk: Uint8Array) => {
      this.#lastReceivedMs = performance.now();
      try {
        for (const body of splitter.push(chunk)) {
          if (handshake) {
            handshake.resolve(decodeConnectResponse(body));
            handshake = undefined;
          } else this.#receive(body);
        }
      } catch (error) {
        socket.destroy(error instanceof Error ? error : new Error(String(error)));
      }
    });
    socket.on("close", () => {
      handshake?.reject(new Error("connection closed during handshake"));
      ended.resolve();
    });
    socket.on("error", () => {});
    try {
      socket.write(encodeConnectRequest({
        lastZxidSeen: this.#lastZxid,
        timeoutMs: this.#options.sessionTimeoutMs,
        sessionId: this.#sessionId,
        password: this.#password,
      }));
      const response = await withTimeout(handshake.promise, this.#options.connectionTimeoutMs);
      if (response.timeoutMs <= 0) {
        this.#expire();
        return;
      }
      this.#established(response);
      await ended.promise;
    } finally {
      this.#connectionLost(socket);
    }
  }

  #established(response: ConnectResponse): void {
    const newSession = response.sessionId !== this.#sessionId;
    this.#sessionId = response.sessionId;
    this.#password = response.password;
    this.#negotiatedTimeoutMs = response.timeoutMs;
    this.#connected = true;
    this.#lastReceivedMs = performance.now();
    if (!newSession) this.#restoreWatches();
    for (const { xid, pending } of this.#queued.splice(0)) this.#send(xid, pending);
    this.#startPings();
    this.#logger.log("debug", newSession ? "zookeeper session" : "zookeeper reconnected", {
      session: `0x${response.sessionId.toString(16)}`,
      timeoutMs: response.timeoutMs,
    });
    if (newSession) this.#firstSession.resolve();
    this.#emit(newSession ? "session" : "reconnected");
  }

  /** The server refused the old session: forget it, its watches and its requests. */
  #expire(): void {
    this.#logger.log("warn", "zookeeper session expired", {
      session: `0x${this.#sessionId.toString(16)}`,
    });
    this.#sessionId = 0n;
    this.#password = new Uint8Array(16);
    this.#lastZxid = 0n;
    this.#dataWatches.clear();
    this.#existWatches.clear();
    this.#childWatches.clear();
    for (const { pending } of this.#queued.splice(0)) {
      pending.reject(new ZkError(ZK_CODES.sessionExpired));
    }
    this.#emit("expired");
  }

  #connectionLost(socket: net.Socket): void {
    socket.destroy();
    if (this.#socket === socket) this.#socket = undefined;
    clearInterval(this.#pingTimer);
    const wasConnected = this.#connected;
    this.#connected = false;
    // A request in flight may or may not have been applied: its caller decides (connectionLoss).
    for (const pending of this.#inFlight.values()) {
      if (pending.request.op !== "ping") pending.reject(new ZkError(ZK_CODES.connectionLoss));
    }
    this.#inFlight.clear();
    if (wasConnected) this.#emit("disconnected");
  }

  #receive(body: Uint8Array): void {
    const reply = decodeReply(body);
    if (reply.zxid > 0n) this.#lastZxid = reply.zxid;
    if (reply.xid === XID.ping || reply.xid === XID.setWatches) return;
    if (reply.xid === XID.notification) {
      this.#notify(decodeWatchEvent(reply.body));
      return;
    }
    const pending = this.#inFlight.get(reply.xid);
    if (!pending) return;
    this.#inFlight.delete(reply.xid);
    if (reply.err !== 0) {
      const path = "path" in pending.request ? this.#relative(pending.request.path) : undefined;
      pending.reject(new ZkError(reply.err, path));
    } else pending.resolve(reply);
  }

  #notify(event: { type: number; path: string }): void {
    const name = EVENT_NAMES[event.type as keyof typeof EVENT_NAMES];
    if (!name) return;
    const fired = new Set<Watcher>();
    const take = (watches: Map<string, Set<Watcher>>) => {
      for (const watcher of watches.get(event.path) ?? []) fired.add(watcher);
      watches.delete(event.path);
    };
    if (name !== "childrenChanged") {
      take(this.#dataWatches);
      take(this.#existWatches);
    }
    if (name === "childrenChanged" || name === "deleted") take(this.#childWatches);
    const path = this.#relative(event.path);
    for (const watcher of fired) {
      try {
        watcher({ type: name, path });
      } catch (error) {
        this.#logger.log("error", "zookeeper watcher failed", { path, error: String(error) });
      }
    }
  }

  /** After a reconnect in the same session, tell the server which watches this client holds. */
  #restoreWatches(): void {
    const data = [...this.#dataWatches.keys()];
    const exist = [...this.#existWatches.keys()];
    const child = [...this.#childWatches.keys()];
    if (data.length + exist.length + child.length === 0) return;
    this.#write(
      encodeRequest(XID.setWatches, {
        op: "setWatches",
        relativeZxid: this.#lastZxid,
        data,
        exist,
        child,
      }),
    );
  }

  /**
   * Pings when idle for a third of the session timeout, and drops a connection silent for two
   * thirds of it (ZooKeeper's own read timeout), so a dead server is left before the session
   * would expire there.
   */
  #startPings(): void {
    clearInterval(this.#pingTimer);
    const readTimeoutMs = (this.#negotiatedTimeoutMs * 2) / 3;
    const tickMs = Math.max(10, Math.floor(readTimeoutMs / 4));
    this.#pingTimer = setInterval(() => {
      const now = performance.now();
      if (now - this.#lastReceivedMs > readTimeoutMs) {
        this.#logger.log("debug", "zookeeper server silent: reconnecting");
        this.#socket?.destroy();
        return;
      }
      if (now - this.#lastSentMs >= readTimeoutMs / 2) {
        this.#write(encodeRequest(XID.ping, { op: "ping" }));
      }
    }, tickMs);
  }

  #failAll(error: Error): void {
    for (const pending of this.#inFlight.values()) pending.reject(error);
    this.#inFlight.clear();
    for (const { pending } of this.#queued.splice(0)) pending.reject(error);
  }

  #emit(state: ZkState): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(state);
      } catch (error) {
        this.#logger.log("error", "zookeeper state listener failed", {
          state,
          error: String(error),
        });
      }
    }
  }

  #full(path: string): string {
    if (!path.startsWith("/")) throw new Error(`Cannot use ZooKeeper path ${path}: not absolute`);
    if (this.#chroot === "") return path;
    return path === "/" ? this.#chroot : this.#chroot + path;
  }

  #relative(path: string): string {
    if (this.#chroot === "" || !path.startsWith(this.#chroot)) return path;
    return path.slice(this.#chroot.length) || "/";
  }
}

/** Splits `h1:p1,h2:p2/chroot`; a host without a port gets 2181. */
export function parseConnectString(connect: string): { servers: Server[]; chroot: string } {
  const slash = connect.indexOf("/");
  const hosts = slash < 0 ? connect : connect.slice(0, slash);
  let chroot = slash < 0 ? "" : connect.slice(slash);
  if (chroot === "/") chroot = "";
  if (chroot.endsWith("/")) throw new Error(`Cannot use ZooKeeper chroot ${chroot}: ends with /`);
  const servers: Server[] = [];
  for (const part of hosts.split(",").map((text) => text.trim()).filter(Boolean)) {
    const match = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(part);
    if (!match) throw new Error(`Cannot read ZooKeeper server "${part}": expected host:port`);
    const port = match[2] === undefined ? 2181 : Number(match[2]);
    if (port < 1 || port > 65535) throw new Error(`Cannot use ZooKeeper port in "${part}"`);
    servers.push({ host: match[1].replace(/^\[|\]$/g, ""), port });
  }
  if (servers.length === 0) throw new Error(`Cannot read ZooKeeper servers from "${connect}"`);
  return { servers, chroot };
}

function addWatch(watches: Map<string, Set<Watcher>>, path: string, watcher: Watcher): void {
  let set = watches.get(path);
  if (!set) watches.set(path, set = new Set());
  set.add(watcher);
}

function bytes(data: string | Uint8Array | null): Uint8Array | null {
  return typeof data === "string" ? new TextEncoder().encode(data) : data;
}

function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let index = out.length - 1; index > 0; index--) {
    const other = Math.floor(Math.random() * (index + 1));
    [out[index], out[other]] = [out[other], out[index]];
  }
  return out;
}

function connectSocket(server: Server, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: server.host, port: server.port });
    socket.setNoDelay(true);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`Cannot connect to ${server.host}:${server.port}: timed out`));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      resolve(socket);
    });
    socket.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

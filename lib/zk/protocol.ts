/**
 * @module ZooKeeper's client wire protocol, for exactly the operations metaq uses: the session
 * handshake, ping, create, delete, exists, getData, setData, getChildren, setWatches, close and
 * the watch notification. Pure: requests in, framed bytes out; frames in, replies out. The
 * socket, the session and the watches live in client.ts.
 *
 * ```text
 * frame            int length, then `length` bytes
 * ConnectRequest   int protocolVersion, long lastZxidSeen, int timeOut, long sessionId,
 *                  buffer passwd, boolean readOnly
 * ConnectResponse  int protocolVersion, int timeOut, long sessionId, buffer passwd, [boolean]
 * request          int xid, int type, then the operation's record
 * reply            int xid, long zxid, int err, then (err == 0) the operation's record
 * notification     reply with xid -1, then int type, int state, ustring path
 * Stat             long czxid mzxid ctime mtime, int version cversion aversion,
 *                  long ephemeralOwner, int dataLength numChildren, long pzxid
 * ```
 */
import { JuteReader, JuteWriter } from "./jute.ts";

/** Operation codes (ZooDefs.OpCode). */
export const OP = {
  notification: 0,
  create: 1,
  delete: 2,
  exists: 3,
  getData: 4,
  setData: 5,
  getChildren: 8,
  sync: 9,
  ping: 11,
  setWatches: 101,
  closeSession: -11,
} as const;

/** The xids the server and client reserve for themselves. */
export const XID = { notification: -1, ping: -2, setWatches: -8 } as const;

/** Create flags (CreateMode). */
export const CREATE_MODE = {
  persistent: 0,
  ephemeral: 1,
  persistentSequential: 2,
  ephemeralSequential: 3,
} as const;
export type CreateMode = keyof typeof CREATE_MODE;

/** The error codes a reply carries (KeeperException.Code), by name. */
export const ZK_CODES = {
  ok: 0,
  systemError: -1,
  runtimeInconsistency: -2,
  dataInconsistency: -3,
  connectionLoss: -4,
  marshallingError: -5,
  unimplemented: -6,
  operationTimeout: -7,
  badArguments: -8,
  unknownSession: -12,
  apiError: -100,
  noNode: -101,
  noAuth: -102,
  badVersion: -103,
  noChildrenForEphemerals: -108,
  nodeExists: -110,
  notEmpty: -111,
  sessionExpired: -112,
  invalidCallback: -113,
  invalidAcl: -114,
  authFailed: -115,
  sessionMoved: -118,
  notReadOnly: -119,
  ephemeralOnLocalSession: -120,
  noWatcher: -121,
} as const;
export type ZkCodeName = keyof typeof ZK_CODES;

const CODE_NAMES = new Map<number, ZkCodeName>(
  Object.entries(ZK_CODES).map(([name, code]) => [code, name as ZkCodeName]),
);

/** A failed operation: the server's code (or connectionLoss/sessionExpired from the client). */
export class ZkError extends Error {
  override readonly name = "ZkError";
  readonly code: number;
  readonly codeName: ZkCodeName | "unknown";

  constructor(code: number, path?: string) {
    const codeName = CODE_NAMES.get(code) ?? "unknown";
    super(`ZooKeeper ${codeName} (${code})${path === undefined ? "" : ` for ${path}`}`);
    this.code = code;
    this.codeName = codeName;
  }
}

/** True when `error` is a ZkError with the code `name`. */
export function isZkError(error: unknown, name: ZkCodeName): boolean {
  return error instanceof ZkError && error.code === ZK_CODES[name];
}

/** Watch event types (Watcher.Event.EventType). */
export const EVENT = {
  nodeCreated: 1,
  nodeDeleted: 2,
  nodeDataChanged: 3,
  nodeChildrenChanged: 4,
} as const;

export interface Stat {
  readonly czxid: bigint;
  readonly mzxid: bigint;
  readonly ctime: bigint;
  readonly mtime: bigint;
  readonly version: number;
  readonly cversion: number;
  readonly aversion: number;
  /** The session owning an ephemeral node; 0 for a persistent one. */
  readonly ephemeralOwner: bigint;
  readonly dataLength: number;
  readonly numChildren: number;
  readonly pzxid: bigint;
}

export interface ConnectRequest {
  readonly lastZxidSeen: bigint;
  readonly timeoutMs: number;
  /** 0 asks for a new session; an earlier id resumes that one. */
  readonly sessionId: bigint;
  readonly password: Uint8Array;
}

export interface ConnectResponse {
  readonly protocolVersion: number;
  /** The timeout the server granted; 0 or less means the session asked for has expired. */
  readonly timeoutMs: number;
  readonly sessionId: bigint;
  readonly password: Uint8Array;
}

export type Request =
  | {
    readonly op: "create";
    readonly path: string;
    readonly data: Uint8Array | null;
    readonly mode: CreateMode;
  }
  | { readonly op: "delete"; readonly path: string; readonly version: number }
  | { readonly op: "exists"; readonly path: string; readonly watch: boolean }
  | { readonly op: "getData"; readonly path: string; readonly watch: boolean }
  | {
    readonly op: "setData";
    readonly path: string;
    readonly data: Uint8Array | null;
    readonly version: number;
  }
  | { readonly op: "getChildren"; readonly path: string; readonly watch: boolean }
  | { readonly op: "sync"; readonly path: string }
  | { readonly op: "ping" }
  | { readonly op: "closeSession" }
  | {
    readonly op: "setWatches";
    readonly relativeZxid: bigint;
    readonly data: readonly string[];
    readonly exist: readonly string[];
    readonly child: readonly string[];
  };

/** A frame's body: the reply header and a reader positioned at the operation's record. */
export interface Reply {
  readonly xid: number;
  readonly zxid: bigint;
  readonly err: number;
  readonly body: JuteReader;
}

export interface WatchEvent {
  readonly type: number;
  readonly state: number;
  readonly path: string;
}

/** The largest frame accepted from a server (ZooKeeper's own jute.maxbuffer is 1 MiB). */
export const FRAME_BYTES_MAX = 16 * 1024 * 1024;

/** Everyone may read, write, create, delete and administer (ZooDefs.Ids.OPEN_ACL_UNSAFE). */
const PERMS_ALL = 31;

export function encodeConnectRequest(request: ConnectRequest): Uint8Array {
  return frame(
    new JuteWriter()
      .int(0)
      .long(request.lastZxidSeen)
      .int(request.timeoutMs)
      .long(request.sessionId)
      .buffer(request.password)
      .boolean(false),
  );
}

export function decodeConnectResponse(body: Uint8Array): ConnectResponse {
  const reader = new JuteReader(body);
  const protocolVersion = reader.int();
  const timeoutMs = reader.int();
  const sessionId = reader.long();
  const password = reader.buffer() ?? new Uint8Array(0);
  // A trailing readOnly flag follows from 3.4 servers on; nothing here needs it.
  return { protocolVersion, timeoutMs, sessionId, password };
}

/** One framed request with its header. */
export function encodeRequest(xid: number, request: Request): Uint8Array {
  const writer = new JuteWriter().int(xid).int(OP[request.op]);
  switch (request.op) {
    case "create":
      writer.string(request.path).buffer(request.data);
      writer.int(1).int(PERMS_ALL).string("world").string("anyone");
      writer.int(CREATE_MODE[request.mode]);
      break;
    case "delete":
      writer.string(request.path).int(request.version);
      break;
    case "exists":
    case "getData":
    case "getChildren":
      writer.string(request.path).boolean(request.watch);
      break;
    case "setData":
      writer.string(request.path).buffer(request.data).int(request.version);
      break;
    case "sync":
      writer.string(request.path);
      break;
    case "setWatches":
      writer.long(request.relativeZxid).strings(request.data).strings(request.exist)
        .strings(request.child);
      break;
    case "ping":
    case "closeSession":
      break;
  }
  return frame(writer);
}

export function decodeReply(body: Uint8Array): Reply {
  const reader = new JuteReader(body);
  return { xid: reader.int(), zxid: reader.long(), err: reader.int(), body: reader };
}

export function decodeStat(reader: JuteReader): Stat {
  return {
    czxid: reader.long(),
    mzxid: reader.long(),
    ctime: reader.long(),
    mtime: reader.long(),
    version: reader.int(),
    cversion: reader.int(),
    aversion: reader.int(),
    ephemeralOwner: reader.long(),
    dataLength: reader.int(),
    numChildren: reader.int(),
    pzxid: reader.long(),
  };
}

export function decodeWatchEvent(reader: JuteReader): WatchEvent {
  return { type: reader.int(), state: reader.int(), path: reader.string() };
}

/** Cuts a byte stream into frame bodies; a length beyond FRAME_BYTES_MAX is an error. */
export class FrameSplitter {
  #pending: Uint8Array = new Uint8Array(0);

  push(chunk: Uint8Array): Uint8Array[] {
    const bytes = this.#pending.length === 0 ? chunk : joined(this.#pending, chunk);
    const bodies: Uint8Array[] = [];
    let at = 0;
    while (bytes.length - at >= 4) {
      const length = new DataView(bytes.buffer, bytes.byteOffset + at, 4).getInt32(0);
      if (length < 0 || length > FRAME_BYTES_MAX) {
        throw new RangeError(`Cannot read ZooKeeper frame: length ${length}`);
      }
      if (bytes.length - at - 4 < length) break;
      bodies.push(bytes.slice(at + 4, at + 4 + length));
      at += 4 + length;
    }
    this.#pending = bytes.slice(at);
    return bodies;
  }
}

function frame(writer: JuteWriter): Uint8Array {
  const body = writer.bytes();
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setInt32(0, body.length);
  out.set(body, 4);
  return out;
}

function joined(first: Uint8Array, second: Uint8Array): Uint8Array {
  const out = new Uint8Array(first.length + second.length);
  out.set(first);
  out.set(second, first.length);
  return out;
}

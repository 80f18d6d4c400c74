/**
 * The ZooKeeper codec byte for byte. The expected bytes were produced by ZooKeeper 3.8's own jute
 * classes (org.apache.zookeeper.proto.*, serialized with BinaryOutputArchive, the way its Java
 * client writes them), so these tests compare against the reference implementation, not against
 * this codec's idea of itself.
 */
import { expect, test } from "bun:test";
import { JuteError, JuteReader } from "../../../lib/zk/jute.ts";
import {
  decodeConnectResponse,
  decodeReply,
  decodeStat,
  decodeWatchEvent,
  encodeConnectRequest,
  encodeRequest,
  FRAME_BYTES_MAX,
  FrameSplitter,
  isZkError,
  ZkError,
} from "../../../lib/zk/protocol.ts";

const hex = (text: string) => Uint8Array.from(text.match(/../g)!.map((byte) => parseInt(byte, 16)));
const toHex = (bytes: Uint8Array) =>
  [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
const PASSWORD = Uint8Array.from({ length: 16 }, (_, index) => index + 1);

/** `body` with the 4-byte length ZooKeeper puts before every packet. */
function framed(body: string): string {
  return (body.length / 2).toString(16).padStart(8, "0") + body;
}

test("a connect request is Java's ConnectRequest record, then the readOnly flag, framed", () => {
  const java = "000000000000001122334455000075300102030405060708" +
    "000000100102030405060708090a0b0c0d0e0f10";
  const bytes = encodeConnectRequest({
    lastZxidSeen: 0x1122334455n,
    timeoutMs: 30000,
    sessionId: 0x0102030405060708n,
    password: PASSWORD,
  });
  expect(toHex(bytes)).toBe(framed(java + "00"));
});

test("a connect response decodes, with or without the trailing readOnly flag", () => {
  const java = "0000000000000fa0000000000a0b0c0d000000100102030405060708090a0b0c0d0e0f10";
  for (const body of [java, java + "00"]) {
    const response = decodeConnectResponse(hex(body));
    expect(response).toEqual({
      protocolVersion: 0,
      timeoutMs: 4000,
      sessionId: 0x0a0b0c0dn,
      password: PASSWORD,
    });
  }
});

test("create sends the path, the data, OPEN_ACL_UNSAFE and the mode after the request header", () => {
  const header = "0000000700000001";
  const java = "0000001a2f6d6574612f62726f6b6572732f6964732f312f6d6173746572" +
    "000000156d6574613a2f2f3132372e302e302e313a38313233" +
    "000000010000001f00000005776f726c6400000006616e796f6e6500000001";
  const bytes = encodeRequest(7, {
    op: "create",
    path: "/meta/brokers/ids/1/master",
    data: new TextEncoder().encode("meta://127.0.0.1:8123"),
    mode: "ephemeral",
  });
  expect(toHex(bytes)).toBe(framed(header + java));
});

test("a null data buffer is written as length -1, as zkclient creates parent nodes", () => {
  const java =
    "000000052f6d657461ffffffff000000010000001f00000005776f726c6400000006616e796f6e6500000000";
  const bytes = encodeRequest(1, { op: "create", path: "/meta", data: null, mode: "persistent" });
  expect(toHex(bytes)).toBe(framed("0000000100000001" + java));
});

test("delete, getData, setData and setWatches match Java's records", () => {
  expect(toHex(encodeRequest(2, { op: "delete", path: "/a", version: -1 })))
    .toBe(framed("0000000200000002" + "000000022f61ffffffff"));
  expect(toHex(encodeRequest(3, { op: "getData", path: "/a/b", watch: true })))
    .toBe(framed("0000000300000004" + "000000042f612f6201"));
  expect(toHex(encodeRequest(4, { op: "setData", path: "/a", data: hex("78"), version: 3 })))
    .toBe(framed("0000000400000005" + "000000022f61000000017800000003"));
  const setWatches = encodeRequest(-8, {
    op: "setWatches",
    relativeZxid: 0x10n,
    data: ["/d"],
    exist: ["/e1", "/e2"],
    child: [],
  });
  expect(toHex(setWatches)).toBe(
    framed(
      "fffffff800000065" +
        "000000000000001000000001000000022f6400000002000000032f6531000000032f653200000000",
    ),
  );
});

test("ping and closeSession are a bare header", () => {
  expect(toHex(encodeRequest(-2, { op: "ping" }))).toBe(framed("fffffffe0000000b"));
  expect(toHex(encodeRequest(9, { op: "closeSession" }))).toBe(framed("00000009fffffff5"));
});

test("a reply header, a Stat, a watch event and a children list decode", () => {
  const reply = decodeReply(hex(
    "ffffffff000000000000004200000000" +
      "0000000400000003000000112f6d6574612f62726f6b6572732f696473",
  ));
  expect(reply.xid).toBe(-1);
  expect(reply.zxid).toBe(0x42n);
  expect(reply.err).toBe(0);
  expect(decodeWatchEvent(reply.body)).toEqual({ type: 4, state: 3, path: "/meta/brokers/ids" });
  const stat = decodeStat(
    new JuteReader(hex(
      "000000000000000100000000000000020000000000000003000000000000000400000005000000060000000700000000000000990000000800000009000000000000000a",
    )),
  );
  expect(stat).toEqual({
    czxid: 1n,
    mzxid: 2n,
    ctime: 3n,
    mtime: 4n,
    version: 5,
    cversion: 6,
    aversion: 7,
    ephemeralOwner: 0x99n,
    dataLength: 8,
    numChildren: 9,
    pzxid: 10n,
  });
  expect(new JuteReader(hex("0000000200000001310000000132")).strings()).toEqual(["1", "2"]);
});

test("a short or lying record is a JuteError, never a read past its end", () => {
  expect(() => new JuteReader(hex("000000")).int()).toThrow(JuteError);
  expect(() => new JuteReader(hex("00000005616263")).string()).toThrow(JuteError);
  expect(() => new JuteReader(hex("fffffffe")).buffer()).toThrow(JuteError);
  expect(() => new JuteReader(hex("7fffffff")).strings()).toThrow(JuteError);
  expect(new JuteReader(hex("ffffffff")).buffer()).toBeNull();
});

test("frames split at every byte boundary come out whole and in order", () => {
  const stream = hex(framed("0102") + framed("") + framed("030405"));
  for (let cut = 0; cut <= stream.length; cut++) {
    const splitter = new FrameSplitter();
    const bodies = [
      ...splitter.push(stream.subarray(0, cut)),
      ...splitter.push(stream.subarray(cut)),
    ];
    expect(bodies.map(toHex), `cut=${cut}`).toEqual(["0102", "", "030405"]);
  }
});

test("a frame longer than the bound is refused before it is buffered", () => {
  const splitter = new FrameSplitter();
  const length = new Uint8Array(4);
  new DataView(length.buffer).setInt32(0, FRAME_BYTES_MAX + 1);
  expect(() => splitter.push(length)).toThrow(RangeError);
});

test("ZkError names the server's code", () => {
  const error = new ZkError(-110, "/meta/brokers/ids/1/master");
  expect(error.message).toBe("ZooKeeper nodeExists (-110) for /meta/brokers/ids/1/master");
  expect(isZkError(error, "nodeExists")).toBe(true);
  expect(isZkError(error, "noNode")).toBe(false);
  expect(new ZkError(-9999).codeName).toBe("unknown");
});

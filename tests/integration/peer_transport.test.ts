import { expect, test } from "bun:test";
import * as net from "node:net";
import type { PeerAddress } from "../../lib/cluster/cluster_config.ts";
import {
  frame,
  FrameReader,
  PEER_FRAME_HEADER_BYTES,
  PeerTransport,
} from "../../lib/cluster/peer_transport.ts";
import { silentLogger } from "../../lib/log.ts";
import { freePorts } from "../support/free_port.ts";

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * `count` peers on free ports, and a maker of the transport of each id (on the same port each
 * time, so a test can restart one); frames received are handed to `onFrame` with both ids.
 */
async function transportsOnFreePorts(
  count: number,
  onFrame: (from: number, to: number, payload: Uint8Array) => void,
): Promise<{ peers: PeerAddress[]; make: (id: number) => PeerTransport }> {
  const ports = await freePorts(count);
  const peers: PeerAddress[] = ports.map((port, index) => ({
    id: index + 1,
    host: "127.0.0.1",
    port,
  }));
  const make = (id: number) =>
    new PeerTransport({
      nodeId: id,
      host: "127.0.0.1",
      port: ports[id - 1],
      peers,
      logger: silentLogger,
      onFrame: (from, payload) => onFrame(from, id, payload),
    });
  return { peers, make };
}

test("three transports exchange verified frames in both directions and reconnect after a restart", async () => {
  const received: string[] = [];
  const { peers, make } = await transportsOnFreePorts(
    3,
    (from, to, payload) => received.push(`${from}->${to}:${new TextDecoder().decode(payload)}`),
  );
  const transports = [make(1), make(2), make(3)];
  await Promise.all(transports.map((transport) => transport.listen()));
  await until(() =>
    transports.every((t, i) => peers.every((p) => p.id === i + 1 || t.isConnected(p.id)))
  );
  for (const [index, transport] of transports.entries()) {
    for (const peer of peers) {
      if (peer.id !== index + 1) {
        transport.send(peer.id, new TextEncoder().encode(`hello-${peer.id}`));
      }
    }
  }
  await until(() => received.length === 6);
  expect(received.sort()).toEqual([
    "1->2:hello-2",
    "1->3:hello-3",
    "2->1:hello-1",
    "2->3:hello-3",
    "3->1:hello-1",
    "3->2:hello-2",
  ]);

  await transports[1].close();
  await until(() => !transports[0].isConnected(2));
  transports[0].send(2, new TextEncoder().encode("lost"));
  expect(transports[0].droppedCount(2)).toBe(1);
  transports[1] = make(2);
  await transports[1].listen();
  await until(() => transports[0].isConnected(2));
  transports[0].send(2, new TextEncoder().encode("again"));
  await until(() => received.includes("1->2:again"));
  await Promise.all(transports.map((transport) => transport.close()));
});

test("a stranger or a corrupted frame gets the link closed", async () => {
  const [port] = await freePorts(1);
  const frames: string[] = [];
  const transport = new PeerTransport({
    nodeId: 1,
    host: "127.0.0.1",
    port,
    peers: [{ id: 1, host: "127.0.0.1", port }, { id: 2, host: "127.0.0.1", port: 1 }],
    logger: silentLogger,
    onFrame: (from, payload) => frames.push(`${from}:${new TextDecoder().decode(payload)}`),
  });
  await transport.listen();
  const connectAndSend = (bytes: Uint8Array) =>
    new Promise<boolean>((resolve) => {
      const socket = net.createConnection({ port, host: "127.0.0.1" }, () => socket.write(bytes));
      socket.on("close", () => resolve(true));
      socket.on("error", () => {});
      setTimeout(() => {
        socket.destroy();
        resolve(false);
      }, 1000);
    });
  expect(await connectAndSend(frame(new TextEncoder().encode("metaq-peer/1 9")))).toBe(true); // not a member
  const good = frame(new TextEncoder().encode("metaq-peer/1 2"));
  const bad = frame(new TextEncoder().encode("payload"));
  bad[10] ^= 1;
  expect(await connectAndSend(new Uint8Array([...good, ...bad]))).toBe(true);
  expect(frames).toEqual([]);
  await transport.close();
});

test("the frame reader reassembles frames split at every byte", () => {
  const wire = new Uint8Array([
    ...frame(new Uint8Array([1, 2, 3])),
    ...frame(new Uint8Array(0)),
    ...frame(new Uint8Array([9])),
  ]);
  for (let cut = 0; cut <= wire.length; cut++) {
    const reader = new FrameReader();
    const frames = [...reader.push(wire.slice(0, cut)), ...reader.push(wire.slice(cut))];
    expect(frames.map((f) => [...f])).toEqual([[1, 2, 3], [], [9]]);
  }
});

test("with a cluster secret only nodes that prove it connect; a stranger's frames are never delivered", async () => {
  const ports = await freePorts(3);
  const peers: PeerAddress[] = ports.slice(0, 2).map((port, index) => ({
    id: index + 1,
    host: "127.0.0.1",
    port,
  }));
  const received: string[] = [];
  const make = (id: number, secret: string, port = ports[id - 1], list = peers) =>
    new PeerTransport({
      nodeId: id,
      host: "127.0.0.1",
      port,
      peers: list,
      logger: silentLogger,
      secret,
      onFrame: (from, payload) =>
        received.push(`${from}->${id}:${new TextDecoder().decode(payload)}`),
    });
  const one = make(1, "right-secret-0123456789");
  await one.listen();
  // A stranger claiming to be node 2 with the wrong secret, on its own port.
  const stranger = make(2, "wrong-secret-0123456789", ports[2], [
    peers[0],
    { id: 2, host: "127.0.0.1", port: ports[2] },
  ]);
  await stranger.listen();
  await new Promise((resolve) => setTimeout(resolve, 500));
  expect(stranger.isConnected(1)).toBe(false);
  stranger.send(1, new TextEncoder().encode("forged"));
  // The real node 2 with the right secret connects both ways.
  const two = make(2, "right-secret-0123456789");
  await two.listen();
  await until(() => one.isConnected(2) && two.isConnected(1));
  two.send(1, new TextEncoder().encode("genuine"));
  one.send(2, new TextEncoder().encode("reply"));
  await until(() => received.length === 2);
  expect(received.sort()).toEqual(["1->2:reply", "2->1:genuine"]);
  expect(stranger.isConnected(1)).toBe(false);
  // A raw client that skips the proof cannot get a frame through either.
  const raw = net.createConnection({ port: ports[0], host: "127.0.0.1" });
  await new Promise((resolve) => raw.once("connect", resolve));
  let rawClosed = false;
  raw.on("error", () => {});
  raw.on("close", () => (rawClosed = true));
  raw.on("data", () => {});
  raw.write(frame(new TextEncoder().encode(`metaq-peer/2 2 1 ${"ab".repeat(16)}`)));
  raw.write(frame(new TextEncoder().encode("0".repeat(64))));
  raw.write(frame(new TextEncoder().encode("forged-after-bad-proof")));
  await until(() => rawClosed);
  expect(received.length).toBe(2);
  await Promise.all([one.close(), two.close(), stranger.close()]);
});

// 200 kB: the turn's writes are corked (joined by the runtime). 1.2 MB: past CORKED_BYTES_MAX
// they are not, so the header parts leave as writes of their own; the large parts' CRCs are
// remembered (REMEMBERED_CRC_BYTES_MIN) and the second frame reuses the first's entry.
for (const largeBytes of [200_000, 1_200_000]) {
  test(`frames sent in parts arrive whole and verified, between ordinary frames (${largeBytes} B)`, async () => {
    const received: Uint8Array[] = [];
    const { make } = await transportsOnFreePorts(
      2,
      (_from, _to, payload) => received.push(payload.slice()),
    );
    const transports = [make(1), make(2)];
    await Promise.all(transports.map((transport) => transport.listen()));
    await until(() => transports[0].isConnected(2));
    const large = new Uint8Array(largeBytes).map((_, index) => index * 7);
    const headed = (bytes: number[]) => {
      const head = new Uint8Array(PEER_FRAME_HEADER_BYTES + bytes.length);
      head.set(bytes, PEER_FRAME_HEADER_BYTES);
      return head;
    };
    const tail = new Uint8Array([4, 5]);
    transports[0].send(2, new Uint8Array([9]));
    expect(transports[0].sendFramed(2, [headed([1, 2, 3]), large, tail])).toBe(true);
    transports[0].send(2, new Uint8Array([8]));
    expect(transports[0].sendFramed(2, [headed([6]), large])).toBe(true);
    await until(() => received.length === 4);
    expect(received[0]).toEqual(new Uint8Array([9]));
    expect(received[1].length).toBe(3 + large.length + 2);
    expect(received[1].subarray(0, 3)).toEqual(new Uint8Array([1, 2, 3]));
    expect(received[1].subarray(3, 3 + large.length)).toEqual(large);
    expect(received[1].subarray(3 + large.length)).toEqual(tail);
    expect(received[2]).toEqual(new Uint8Array([8]));
    expect(received[3].length).toBe(1 + large.length);
    expect(received[3][0]).toBe(6);
    expect(received[3].subarray(1)).toEqual(large);
    await Promise.all(transports.map((transport) => transport.close()));
  });
}

/**
 * The per-connection bounds that need a handler which holds requests: maxPendingRequests (reading
 * stops at the maximum, the request past it waits unread) and maxConnectionBufferBytes (reading
 * stops while that many reply bytes wait for a client that does not read). Real TCP on 127.0.0.1.
 */
import { expect, test } from "bun:test";
import * as net from "node:net";
import { result } from "../../lib/protocol/reply.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { silentLogger } from "../../lib/log.ts";
import type { CommandTable } from "../../lib/protocol/command_table.ts";
import type { ExtensionCommand } from "../../lib/protocol/commands.ts";
import type { RequestContext, Respond } from "../../lib/protocol/reply.ts";
import { assemble } from "../../lib/app/assemble.ts";
import { RawSocket } from "../support/raw_socket.ts";
import { tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

async function brokerWith(dir: string, overrides: Record<string, string>) {
  const held: Respond[] = [];
  let served = 0;
  // Two commands of a test part: one never answers until released, one answers N bytes.
  const commands: CommandTable = {
    "ext:hold": {
      spec: { args: 0 },
      handle: (_command: ExtensionCommand, _context: RequestContext, respond: Respond) => {
        served += 1;
        held.push(respond);
      },
    },
    "ext:big": {
      spec: { args: 1 },
      handle: (command: ExtensionCommand, _context: RequestContext, respond: Respond) => {
        served += 1;
        respond(result(200, "x".repeat(Number(command.args[0]))));
      },
    },
  };
  const running = await assemble({
    config: buildConfig({ overrides: { serverPort: "0", dataPath: dir, ...overrides } }),
    logger: silentLogger,
    extraCommands: [commands],
  });
  return { running, held, served: () => served };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 100));

test("maxPendingRequests: the maximum is read, the request past it waits until replies go out", async () => {
  await using temp = tempDir();
  const { running, held, served } = await brokerWith(temp.path, { maxPendingRequests: "4" });
  try {
    using socket = await RawSocket.connect(running.port);
    socket.write("hold 1\r\nhold 2\r\nhold 3\r\nhold 4\r\n");
    await waitFor("four held", () => served() === 4);
    socket.write("hold 5\r\n");
    await settle();
    expect(served()).toBe(4); // the fifth is not read while four wait
    for (const respond of held.splice(0, 2)) respond(result(200));
    await waitFor("the fifth read", () => served() === 5);
    for (const respond of held.splice(0)) respond(result(200));
    const headers = [];
    for (let i = 0; i < 5; i++) headers.push((await socket.readFrame()).header);
    expect(headers.map((header) => header.split(" ")[3]).sort()).toEqual(["1", "2", "3", "4", "5"]);
  } finally {
    await running.close();
  }
});

test("maxConnectionBufferBytes: reading stops while replies wait for a client that does not read", async () => {
  await using temp = tempDir();
  const bufferMax = 64 * 1024;
  const { running, served } = await brokerWith(temp.path, {
    maxConnectionBufferBytes: String(bufferMax),
  });
  try {
    const socket = net.createConnection({ port: running.port, host: "127.0.0.1" });
    await new Promise((resolve) => socket.once("connect", resolve));
    socket.pause(); // never reads: replies pile up in the broker
    // 50 MiB of replies: the kernel's socket buffers take a few MiB, the broker then holds at
    // most about bufferMax + one reply, so it stops long before it served every request.
    const requests = 100;
    for (let i = 0; i < requests; i++) socket.write(`big ${512 * 1024} ${i}\r\n`);
    await waitFor("the broker to stop", async () => {
      const before = served();
      await settle();
      return served() === before;
    });
    const stalled = served();
    expect(stalled).toBeLessThan(requests);
    // Reading resumes when the client reads: every request is answered.
    let received = 0;
    socket.on("data", (chunk: Uint8Array) => (received += chunk.length));
    socket.resume();
    await waitFor("every reply", () => served() === requests);
    await waitFor("every byte", () => received >= requests * 512 * 1024);
    socket.destroy();
  } finally {
    await running.close();
  }
});

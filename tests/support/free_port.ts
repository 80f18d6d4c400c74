/**
 * @module Finds free TCP ports on 127.0.0.1 for a test to bind later (peer ports are given to
 * every node before any node starts). They are taken below Linux's ephemeral range (32768+): a
 * port the kernel handed out and took back (bind to port 0) may be handed out again at once, to
 * another listener on port 0 or to an outgoing connection's source, before the test binds it
 * (a browser test's cluster failed with EADDRINUSE that way). Below the range only an explicit
 * bind takes a port.
 */
import * as net from "node:net";

const PORT_MIN = 20_000;
const PORT_MAX = 32_000;
const ATTEMPTS_MAX = 500;

export async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let attempt = 0; ports.length < count && attempt < ATTEMPTS_MAX; attempt++) {
    const port = PORT_MIN + Math.floor(Math.random() * (PORT_MAX - PORT_MIN));
    if (!ports.includes(port) && await bindable(port)) ports.push(port);
  }
  if (ports.length < count) {
    throw new Error(`found ${ports.length} of ${count} free ports in ${ATTEMPTS_MAX} attempts`);
  }
  return ports;
}

/** Whether `port` can be bound on 127.0.0.1 now (bound and released at once). */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/**
 * A peer link that looks up but carries nothing is dialed again. After a network fault that
 * dropped packets heals, a TCP connection can stay in the kernel's retransmission backoff for
 * seconds or minutes while a new one would get through at once (the CI campaign's T09 over
 * network namespaces: node 2's link to node 3 stayed silent for 53 s and, with node 1 isolated,
 * no group could elect). Here a relay in front of node 2's peer port does the same to the links
 * open when it stalls (bytes towards node 2 are swallowed, the connection stays up) and passes
 * new ones. Three nodes in process, real TCP; node 3 is stopped first, so node 1 and node 2
 * are the only quorum and nothing commits until node 1's link to node 2 carries bytes again.
 */
import { expect, test } from "bun:test";
import * as net from "node:net";
import { type App, assemble } from "../../lib/app/assemble.ts";
import { MetaqClient } from "../../lib/client/client.ts";
import { buildConfig } from "../../lib/config/config.ts";
import { silentLogger } from "../../lib/log.ts";
import { FAST_RAFT } from "../support/cluster_in_process.ts";
import { freePorts } from "../support/free_port.ts";
import { tempDir } from "../support/temp_dir.ts";
import { waitFor } from "../support/wait.ts";

const TOPIC = "stall";
const encoder = new TextEncoder();

/** A TCP relay to `target` whose open connections can be stalled one way (towards the target). */
class StallingRelay {
  readonly server: net.Server;
  readonly #links: { client: net.Socket; upstream: net.Socket; stalled: boolean }[] = [];
  /** Connections accepted, and stalled connections that were closed from each side. */
  accepted = 0;
  stalledClosedByDialer = 0;
  stalledClosedByTarget = 0;

  constructor(target: number) {
    this.server = net.createServer((client) => {
      this.accepted += 1;
      const upstream = net.createConnection({ host: "127.0.0.1", port: target });
      const link = { client, upstream, stalled: false };
      this.#links.push(link);
      // A stalled link swallows what the dialer sends: its kernel sees the bytes taken, as a
      // sender whose packets vanish on the way sees nothing wrong until it retransmits.
      client.on("data", (chunk) => {
        if (!link.stalled) upstream.write(chunk);
      });
      upstream.on("data", (chunk) => client.write(chunk));
      client.on("close", () => {
        // Nor does a stalled link carry the dialer's reset: only the target can close its end.
        if (link.stalled) this.stalledClosedByDialer += 1;
        else upstream.destroy();
      });
      upstream.on("close", () => {
        if (link.stalled) this.stalledClosedByTarget += 1;
        client.destroy();
      });
      client.on("error", () => {});
      upstream.on("error", () => {});
    });
  }

  listen(port: number): Promise<void> {
    return new Promise((resolve) => this.server.listen(port, "127.0.0.1", resolve));
  }

  /** Stalls every connection open now; later ones pass. Returns how many were stalled. */
  stallOpenLinks(): number {
    const open = this.#links.filter((link) => !link.client.destroyed);
    for (const link of open) link.stalled = true;
    return open.length;
  }

  close(): void {
    for (const link of this.#links) {
      link.client.destroy();
      link.upstream.destroy();
    }
    this.server.close();
  }
}

test(
  "a stalled peer link is dropped and dialed again, and the quorum it carries commits again",
  async () => {
    await using temp = tempDir("metaq-stalled-link-");
    const [port1, port2, port3, relayPort] = await freePorts(4);
    const relay = new StallingRelay(port2);
    await relay.listen(relayPort);
    // Nodes 1 and 3 reach node 2 through the relay; node 2 listens on its own port.
    const peersVia = (second: number) =>
      `1=127.0.0.1:${port1},2=127.0.0.1:${second},3=127.0.0.1:${port3}`;
    const nodes: App[] = await Promise.all([1, 2, 3].map((id) =>
      assemble({
        config: buildConfig({
          fileText: "[system]\nnumPartitions=1\n",
          overrides: {
            serverPort: "0",
            dashboardHttpPort: "0",
            httpEnabled: "false",
            dataPath: `${temp.path}/n${id}`,
            nodeId: String(id),
            peers: peersVia(id === 2 ? port2 : relayPort),
            ...FAST_RAFT,
          },
        }),
        logger: silentLogger,
      })
    ));
    const client = new MetaqClient({
      brokers: [`127.0.0.1:${nodes[1].port}`],
      requestTimeoutMs: 2_000,
      routeToLeaders: false,
    });
    const put = (text: string) => client.put(TOPIC, 0, { payload: encoder.encode(text) });
    /** Puts `text` through node 2 until it is acknowledged; false if not within `timeoutMs`. */
    const putUntilAcked = async (text: string, timeoutMs: number): Promise<boolean> => {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        try {
          await put(text);
          return true;
        } catch {
          // no leader, or no quorum yet: ask again shortly
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
      return false;
    };
    try {
      expect(await putUntilAcked("before", 20_000)).toBe(true);
      // Node 3 goes: every group needs node 1 and node 2 from now on.
      await nodes[2].close();
      expect(await putUntilAcked("two nodes", 20_000)).toBe(true);

      const acceptedBefore = relay.accepted;
      expect(relay.stallOpenLinks()).toBeGreaterThan(0); // node 1's link to node 2 at least
      // Nothing node 1 sends reaches node 2 on that link: no group can commit until it is redialed.
      expect(await putUntilAcked("after the stall", 20_000)).toBe(true);
      // Node 1 dialed a new link (node 2 said it heard nothing from it), reset the stalled one,
      // and node 2 closed its end of the stalled one when the new one proved itself.
      expect(relay.accepted).toBeGreaterThan(acceptedBefore);
      await waitFor(
        "the stalled link closed at both ends",
        () => relay.stalledClosedByDialer > 0 && relay.stalledClosedByTarget > 0,
        { timeoutMs: 10_000 },
      );
      expect(nodes[0].cluster!.isConnected(2)).toBe(true);
      expect(nodes[1].cluster!.isConnected(1)).toBe(true);
    } finally {
      client.close();
      await Promise.allSettled(nodes.map((node) => node.close()));
      relay.close();
    }
  },
  120_000,
);

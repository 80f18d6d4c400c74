/**
 * A group coordinator deposed while paused must not answer with a committed offset its successor
 * has moved on from (the mixed chaos soak T20 saw committed offsets read ~120 KB behind what a
 * commit had been acknowledged at). The request is written to the paused coordinator's socket
 * before it resumes, so it is read before any of its timers run: exactly what a client of a
 * node that was stopped (SIGSTOP, a VM pause, a long GC) sends its way.
 */
import { expect, test } from "bun:test";
import { MetaqClient } from "../../lib/client/client.ts";
import { agreedLeader, eventually, startClusterProcesses } from "../support/cluster_process.ts";
import { tempDir } from "../support/temp_dir.ts";

const encoder = new TextEncoder();

function clientOf(address: string): MetaqClient {
  return new MetaqClient({
    brokers: [address],
    reconnectAttemptsMax: 2,
    requestTimeoutMs: 20_000,
    // No idle heartbeat: the client must not give up on the paused node by itself.
    heartbeatIdleMs: 600_000,
  });
}

/** An operator's reset of group `g` on orders-0 through `client`; resolves once acknowledged. */
function reset(client: MetaqClient, offset: number): Promise<string> {
  return client.extension("adjust", ["g", "orders", "0", String(offset), "safe"]);
}

/** Rounds of the race: the resumed node's first turn sometimes runs its timers first. */
const ROUNDS = 3;

test(
  "a coordinator deposed while paused never serves the offset its successor replaced",
  async () => {
    await using temp = tempDir();
    const nodes = await startClusterProcesses({ dataDir: temp.path });
    const clients: MetaqClient[] = [];
    try {
      const starts: number[] = [];
      {
        const writer = clientOf(nodes[0].address);
        clients.push(writer);
        for (let index = 0; index <= 2 * ROUNDS; index++) {
          const payload = encoder.encode(`record-${index}`);
          starts.push((await writer.put("orders", 0, { payload })).offset);
        }
      }
      for (let round = 0; round < ROUNDS; round++) {
        const [before, after] = [starts[2 * round + 1], starts[2 * round + 2]];
        const coordinator = await agreedLeader(nodes, "__meta-0", 30_000);
        const survivor = nodes.find((node) => node !== coordinator)!;
        const atCoordinator = clientOf(coordinator.address);
        const atSurvivor = clientOf(survivor.address);
        clients.push(atCoordinator, atSurvivor);
        await reset(atCoordinator, before);
        expect(Number(await atCoordinator.extension("committed", ["g", "orders", "0"]))).toBe(
          before,
        );
        coordinator.child!.kill("SIGSTOP");
        try {
          // The others elect a new coordinator, which takes the next write.
          await eventually("a new coordinator that takes a reset", async () => {
            try {
              await reset(atSurvivor, after);
              return true;
            } catch {
              return false;
            }
          }, 30_000);
          expect(Number(await atSurvivor.extension("committed", ["g", "orders", "0"]))).toBe(
            after,
          );
          // Queued in the paused node's socket: read the moment it resumes.
          const stale = atCoordinator.extension("committed", ["g", "orders", "0"]).then(
            (text) => Number(text),
            (error: Error) => error.message,
          );
          // Resume only once the request has left the client (sent, waiting for its answer).
          const connection = await atCoordinator.connection();
          await eventually(
            "the read written to the paused node's socket",
            () => Promise.resolve(connection.inFlight === 1 && connection.bufferedBytes === 0),
            5_000,
          );
          coordinator.child!.kill("SIGCONT");
          const outcome = await stale;
          // Refused (it no longer coordinates) or the current offset; never the replaced one.
          expect(outcome).not.toBe(before);
          if (typeof outcome === "number") expect(outcome).toBe(after);
        } finally {
          coordinator.child!.kill("SIGCONT");
        }
      }
    } finally {
      for (const client of clients) client.close();
      for (const node of nodes) await node.kill();
    }
  },
  180_000,
);

/**
 * A node that was stopped (SIGSTOP: a VM pause, a long collection) and resumes has heard nothing
 * from its peers for the pause, yet their frames wait in its own sockets: it must not tell them
 * that it hears nothing from them (stalled_links.ts), which would make them drop and dial again
 * links that work, and lose what those links were carrying. Nor may it act on their saying, during
 * the pause, that they heard nothing from it. Three `metaq serve` processes.
 */
import { expect, test } from "bun:test";
import { MetaqClient } from "../../lib/client/client.ts";
import { eventually, startClusterProcesses } from "../support/cluster_process.ts";
import { tempDir } from "../support/temp_dir.ts";

/** The fault: longer than the election timeout (800-1600 ms here), so the others see silence. */
const PAUSE_MS = 3_000;
/** After the resume, long enough for the node's next few descriptions (one a second). */
const WATCH_MS = 4_000;
/** A redial because a peer said it heard nothing: neither the peers nor node 3 may do it. */
const REDIALED_FOR_SILENCE = /Dialing a peer again.*why="the peer hears nothing on it"/;

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test("a node resuming from a pause does not make its peers redial their links to it", async () => {
  await using temp = tempDir("metaq-paused-links-");
  const nodes = await startClusterProcesses({ dataDir: temp.path });
  const clients: MetaqClient[] = [];
  const putThrough = async (index: number): Promise<boolean> => {
    const client = new MetaqClient({ brokers: [nodes[index].address], requestTimeoutMs: 3_000 });
    clients.push(client);
    try {
      await client.put("paused", 0, { payload: new TextEncoder().encode(`via ${index + 1}`) });
      return true;
    } catch {
      return false;
    }
  };
  try {
    await eventually("a put through node 3", () => putThrough(2), 30_000);
    const paused = nodes[2].child!;
    paused.kill("SIGSTOP");
    try {
      await wait(PAUSE_MS);
    } finally {
      paused.kill("SIGCONT");
    }
    await eventually("a put through node 3 after the pause", () => putThrough(2), 20_000);
    // An absence, so watched for a bounded time once the node works again.
    await wait(WATCH_MS);
    // The peers must not act on node 3's first words after the pause, and node 3 must not act
    // on what they said of it while it stood still (waiting in its sockets when it resumed).
    for (const node of nodes) expect(node.stderr).not.toMatch(REDIALED_FOR_SILENCE);
  } finally {
    for (const client of clients) client.close();
    for (const node of nodes) await node.kill();
  }
}, 120_000);
